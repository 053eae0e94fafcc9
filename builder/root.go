package builder

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/builder/drv"
	"github.com/runpod-comfy/runpod-comfy/internal/comfypaths"
	"github.com/runpod-comfy/runpod-comfy/internal/layout"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// RootLogicVersion is the root builder's logic version. 2: extra_model_paths.yaml written
// by a YAML library and naming only directories the root has; bin/comfyui passes ComfyUI
// absolute paths (for ComfyUI before b9d9bcb). 3: the root is a function of the lock's
// canonical form; its manifest has no spec_hash and takes env from the lock.
const RootLogicVersion = 3

// RootParams are the root derivation's parameters.
type RootParams struct {
	VersionID string `json:"version_id"`
	// Links are the root's symlinks, sorted by path.
	Links []RootLink `json:"links"`
	// Manifest is manifest.json without comfy.flags, which the builder reads from the
	// ComfyUI checkout.
	Manifest   specs.Manifest `json:"manifest"`
	SkipModels bool           `json:"skip_models,omitempty"`

	inputs []*drv.Derivation
}

// RootLink is one symlink of a runtime root: Path (slash-separated, relative to the root)
// points at the store object Target (a base name), through a relative link.
type RootLink struct {
	Path   string `json:"path"`
	Target string `json:"target"`
}

// newRootParams starts the root of a canonical lock. Nothing of the spec goes in: the spec
// hash would make a new root of every edit that changes no pin (a comment moved to a field,
// a ref spelt as a commit), and env is in the lock.
func newRootParams(lock *specs.Lock) *RootParams {
	return &RootParams{
		VersionID: lock.VersionID,
		Manifest: specs.Manifest{
			ManifestVersion: specs.ManifestVersion,
			VersionID:       lock.VersionID,
			CustomNodes:     []specs.ManifestNode{},
			Models:          []specs.ManifestModel{},
			Env:             lock.Env,
		},
	}
}

// Link adds the symlink rel (e.g. "custom_nodes/x", "models/checkpoints/a.safetensors",
// "venv") pointing at d's object, and makes d an input of the root. d must be sealed.
func (r *RootParams) Link(rel string, d *drv.Derivation) {
	r.Links = append(r.Links, RootLink{Path: rel, Target: d.Path.String()})
	for _, in := range r.inputs {
		if in == d {
			return
		}
	}
	r.inputs = append(r.inputs, d)
}

func (r *RootParams) derivation() (*drv.Derivation, error) {
	sort.Slice(r.Links, func(i, j int) bool { return r.Links[i].Path < r.Links[j].Path })
	seen := map[string]bool{}
	for _, l := range r.Links {
		c := path.Clean(l.Path)
		if c != l.Path || c == "." || strings.HasPrefix(c, "../") || c == ".." || path.IsAbs(c) {
			return nil, fmt.Errorf("runtime root: invalid link path %q", l.Path)
		}
		switch strings.SplitN(c, "/", 2)[0] {
		case "bin", "manifest.json", "extra_model_paths.yaml":
			return nil, fmt.Errorf("runtime root: link %q collides with a generated file", l.Path)
		}
		if seen[c] {
			return nil, fmt.Errorf("runtime root: two entries want %q", l.Path)
		}
		seen[c] = true
	}
	// A link may not sit inside another link (e.g. "models/a" and "models/a/b").
	for _, l := range r.Links {
		for p := path.Dir(l.Path); p != "."; p = path.Dir(p) {
			if seen[p] {
				return nil, fmt.Errorf("runtime root: %q is inside the link %q", l.Path, p)
			}
		}
	}
	sort.Slice(r.inputs, func(i, j int) bool { return r.inputs[i].Path.String() < r.inputs[j].Path.String() })
	name := layout.RootPrefix + r.VersionID
	if err := store.ValidateName(name); err != nil {
		return nil, fmt.Errorf("runtime root: %w", err)
	}
	return &drv.Derivation{
		Kind:    drv.KindRoot,
		Name:    name,
		Version: RootLogicVersion,
		Inputs:  r.inputs,
		Params:  r,
		Label:   "runtime root " + name,
	}, nil
}

// rootBuilder builds runtime roots.
type rootBuilder struct{}

var _ drv.Builder = rootBuilder{}

// Build writes the runtime root: links, extra_model_paths.yaml, bin/comfyui, manifest.json.
func (rootBuilder) Build(ctx context.Context, bc *drv.BuildContext, d *drv.Derivation, out string) error {
	r, ok := d.Params.(*RootParams)
	if !ok {
		return fmt.Errorf("root builder: %s has params of type %T", d, d.Params)
	}
	bc.Task.Status("linking")
	if err := os.Mkdir(out, 0o755); err != nil {
		return err
	}
	for _, l := range r.Links {
		p := filepath.Join(out, filepath.FromSlash(l.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		depth := strings.Count(l.Path, "/") + 1
		target := strings.Repeat("../", depth) + l.Target
		if err := os.Symlink(target, p); err != nil {
			return err
		}
	}
	entries, err := rootEntries(r)
	if err != nil {
		return err
	}
	yml, err := comfypaths.RootYAML(r.VersionID, entries)
	if err != nil {
		return fmt.Errorf("runtime root: %w", err)
	}
	if err := drv.WriteFileIn(out, "extra_model_paths.yaml", yml, 0o644); err != nil {
		return err
	}
	sh, err := comfypaths.Launcher(r.VersionID, entries)
	if err != nil {
		return fmt.Errorf("runtime root: %w", err)
	}
	if err := drv.WriteFileIn(out, "bin/comfyui", []byte(sh), 0o755); err != nil {
		return err
	}
	m := r.Manifest
	cp, err := store.ParsePath(m.Comfy.StorePath)
	if err != nil {
		return fmt.Errorf("manifest: comfy store path: %w", err)
	}
	src, err := os.ReadFile(filepath.Join(bc.Store.Abs(cp), "comfy", "cli_args.py"))
	switch {
	case err == nil:
		m.Comfy.Flags = ComfyFlags(src)
	case os.IsNotExist(err):
		m.Comfy.Flags = []string{}
	default:
		return fmt.Errorf("reading ComfyUI's comfy/cli_args.py: %w", err)
	}
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return drv.WriteFileIn(out, "manifest.json", append(js, '\n'), 0o644)
}

// rootEntries are the yaml entries of r's root (see comfypaths.RootEntries): every
// models/<folder> the root links something into, and custom_nodes when it has a node. The
// root has exactly these directories, so every path its yaml and launcher name exists.
func rootEntries(r *RootParams) ([]comfypaths.Entry, error) {
	folders := map[string]bool{}
	nodes := false
	for _, l := range r.Links {
		parts := strings.Split(l.Path, "/")
		switch {
		case parts[0] == "models" && len(parts) >= 3:
			folders[parts[1]] = true
		case parts[0] == "custom_nodes":
			nodes = true
		}
	}
	names := make([]string, 0, len(folders))
	for f := range folders {
		if err := comfypaths.CheckFolder(f); err != nil {
			return nil, fmt.Errorf("runtime root: %w", err)
		}
		names = append(names, f)
	}
	sort.Strings(names)
	return comfypaths.RootEntries(names, nodes), nil
}

var (
	addArgument = regexp.MustCompile(`add_argument\(`)
	flagLiteral = regexp.MustCompile(`^\s*(?:"(--?[A-Za-z0-9][A-Za-z0-9_-]*)"|'(--?[A-Za-z0-9][A-Za-z0-9_-]*)')\s*,?`)
)

// ComfyFlags returns the long flags declared by add_argument calls in ComfyUI's
// comfy/cli_args.py, sorted and unique (e.g. "--output-directory").
func ComfyFlags(src []byte) []string {
	seen := map[string]bool{}
	s := string(src)
	for _, loc := range addArgument.FindAllStringIndex(s, -1) {
		rest := s[loc[1]:]
		for {
			m := flagLiteral.FindStringSubmatchIndex(rest)
			if m == nil {
				break
			}
			flag := ""
			if m[2] >= 0 {
				flag = rest[m[2]:m[3]]
			} else {
				flag = rest[m[4]:m[5]]
			}
			if strings.HasPrefix(flag, "--") {
				seen[flag] = true
			}
			rest = rest[m[1]:]
		}
	}
	out := make([]string, 0, len(seen))
	for f := range seen {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}
