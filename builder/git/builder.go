package git

import (
	"context"
	"fmt"

	"github.com/runpod-comfy/runpod-comfy/builder/drv"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// LogicVersion is the git builder's logic version (drv.Derivation.Version).
const LogicVersion = 1

// Params are a git derivation's parameters.
type Params struct {
	// Repo is the remote URL without credentials.
	Repo       string `json:"repo"`
	Commit     string `json:"commit"`
	Submodules bool   `json:"submodules"`
}

// Derivation returns the fixed derivation of repo at commit, stored under name. narHash is
// the NAR hash recorded in the lock ("" when not yet known).
func Derivation(name, repo, commit string, submodules bool, narHash string) *drv.Derivation {
	return &drv.Derivation{
		Kind:    drv.KindGit,
		Name:    name,
		Version: LogicVersion,
		Params:  Params{Repo: CleanURL(repo), Commit: commit, Submodules: submodules},
		Fixed: &drv.Fixed{
			Fingerprint: store.GitFingerprint(commit, submodules, name),
			CA:          "git:" + commit,
			NarHash:     narHash,
		},
	}
}

// Builder builds git derivations by exporting from the mirrors.
type Builder struct {
	Mirrors *Mirrors
}

var _ drv.Builder = (*Builder)(nil)

// Build exports the derivation's commit into out.
func (b *Builder) Build(ctx context.Context, bc *drv.BuildContext, d *drv.Derivation, out string) error {
	p, ok := d.Params.(Params)
	if !ok {
		return fmt.Errorf("git builder: %s has params of type %T", d, d.Params)
	}
	return b.Mirrors.Export(ctx, p.Repo, p.Commit, out, ExportOptions{Submodules: p.Submodules, Status: bc.Task.Status})
}
