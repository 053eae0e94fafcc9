package registry

import (
	"context"
	"fmt"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/builder/drv"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// LogicVersion is the registry builder's logic version (drv.Derivation.Version).
const LogicVersion = 1

// UnpackLogic names the unpacking rules in the store fingerprint: a change to Unpack that
// changes any output must change it, so that no path holds two contents.
const UnpackLogic = "zip-1"

// Params are a registry derivation's parameters.
type Params struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	URL     string `json:"url"`
	SHA256  string `json:"sha256"`
}

// CA is the content address recorded in a registry node's metadata: "archive:sha256:<hex>".
func CA(r specs.RegistryLock) string {
	return "archive:sha256:" + strings.TrimPrefix(r.SHA256, "sha256:")
}

// Derivation returns the fixed derivation of the registry node locked by r, stored under
// name. narHash is the NAR hash recorded in the lock ("" when not yet known).
func Derivation(name string, r specs.RegistryLock, narHash string) *drv.Derivation {
	hexSum := strings.TrimPrefix(r.SHA256, "sha256:")
	return &drv.Derivation{
		Kind:    drv.KindRegistry,
		Name:    name,
		Version: LogicVersion,
		Params:  Params{ID: r.ID, Version: r.Version, URL: r.URL, SHA256: r.SHA256},
		Label:   fmt.Sprintf("custom node %q (%s@%s)", name, r.ID, r.Version),
		Fixed: &drv.Fixed{
			Fingerprint: store.ArchiveFingerprint(UnpackLogic, hexSum, name),
			CA:          CA(r),
			NarHash:     narHash,
		},
	}
}

// Builder builds registry derivations: the archive fetched (or taken from the cache) and
// checked against the lock's sha256, then unpacked.
type Builder struct {
	Fetcher *Fetcher
	Limits  Limits
}

var _ drv.Builder = (*Builder)(nil)

// Build unpacks the derivation's archive into out.
func (b *Builder) Build(ctx context.Context, bc *drv.BuildContext, d *drv.Derivation, out string) error {
	p, ok := d.Params.(Params)
	if !ok {
		return fmt.Errorf("registry builder: %s has params of type %T", d, d.Params)
	}
	if !strings.HasPrefix(p.SHA256, "sha256:") {
		return fmt.Errorf("%s: the lock pins no sha256 for the archive: resolve again", d)
	}
	bc.Task.Status("fetch " + p.ID + "@" + p.Version)
	archive, _, err := b.Fetcher.Fetch(ctx, p.URL, p.SHA256)
	if err != nil {
		return fmt.Errorf("%s: %w", p.ID+"@"+p.Version, err)
	}
	bc.Task.Status("unpack")
	if err := Unpack(archive, out, b.Limits); err != nil {
		return fmt.Errorf("%s: %w", p.ID+"@"+p.Version, err)
	}
	return nil
}
