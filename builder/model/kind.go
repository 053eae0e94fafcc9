package model

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/runpod-comfy/runpod-comfy/builder/drv"
	"github.com/runpod-comfy/runpod-comfy/internal/layout"
	"github.com/runpod-comfy/runpod-comfy/internal/progress"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// LogicVersion is the model builder's logic version.
const LogicVersion = 1

// Params are a model derivation's parameters, recorded in the object's metadata. Source is
// redacted: credentials never reach the store.
type Params struct {
	Source   string `json:"source"`
	Checksum string `json:"checksum"`
	Size     int64  `json:"size,omitempty"`
}

// ObjectName is the store name of a locked model: the name part of its recorded store path,
// else the file name of its source (sanitised for the store), else the target's file name.
func ObjectName(m specs.ModelLock) string {
	if p, err := store.ParsePath(m.StorePath); err == nil {
		return p.Name()
	}
	name := ""
	if src, err := ParseSource(m.Source, ""); err == nil {
		name = src.FileName()
	}
	if name == "" || name == "." || name == "/" {
		name = filepath.Base(m.Target)
	}
	return store.SanitizeName(name)
}

// PathFor is the store path of a model file with checksum c and store name name:
// store.FixedFingerprint(algo, hex, name). It depends on neither the target nor the source
// URL, so a renamed target, another version or a mirror of the same file share the object.
func PathFor(c Checksum, name string) (store.Path, error) {
	return store.PathFor(store.FixedFingerprint(c.Algo, c.Hex, name), name)
}

// Derivation is the fixed derivation of one locked model. pos is the model's spec position
// (for messages); the label names its target.
func Derivation(m specs.ModelLock, pos specs.Pos) (*drv.Derivation, error) {
	c, err := ParseChecksum(m.Checksum)
	if err != nil {
		return nil, fmt.Errorf("model %s: lock: %w", m.Target, err)
	}
	name := ObjectName(m)
	d := &drv.Derivation{
		Kind:    drv.KindModel,
		Name:    name,
		Version: LogicVersion,
		Params:  &Params{Source: Redact(m.Source), Checksum: c.String(), Size: m.Size},
		Fixed: &drv.Fixed{
			Fingerprint: store.FixedFingerprint(c.Algo, c.Hex, name),
			CA:          "fixed:" + c.String(),
		},
		Label: "model " + m.Target,
		Pos:   pos,
	}
	if err := d.Seal(); err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Target, err)
	}
	return d, nil
}

// SpecModel returns the spec model whose target is target, and whether there is one.
func SpecModel(spec *specs.Spec, target string) (specs.Model, bool) {
	for _, m := range spec.Models {
		if t, err := specs.ModelTarget(m); err == nil && t == target {
			return m, true
		}
	}
	return specs.Model{}, false
}

// BaseDir is the directory relative local model paths of spec are read from: the spec
// file's directory.
func BaseDir(spec *specs.Spec) string {
	if spec == nil || spec.Pos.File == "" {
		return "."
	}
	return filepath.Dir(spec.Pos.File)
}

// Builder builds model derivations: it downloads the file (resuming a partial download),
// checks it against the locked checksum and size while it streams, and leaves it at out; the
// store then registers it. Sources are taken from the spec when it names the same (redacted)
// source, so that credentials written in a source URL are used but never recorded.
type Builder struct {
	fetcher *Fetcher
	err     error
	raw     map[string]string // redacted source -> source as written
	baseDir string
}

var _ drv.Builder = (*Builder)(nil)

// NewBuilder returns the model builder for the models of spec (may be nil), downloading for
// the store under root. An error in opts (a bad endpoint) is reported by every Build.
func NewBuilder(opts Options, root string, spec *specs.Spec, display *progress.Display) *Builder {
	f, err := New(opts.ForRoot(root, display))
	b := &Builder{fetcher: f, err: err, raw: map[string]string{}, baseDir: BaseDir(spec)}
	if spec != nil {
		for _, m := range spec.Models {
			b.raw[Redact(m.Source)] = m.Source
		}
	}
	return b
}

// Build downloads d's file to out.
func (b *Builder) Build(ctx context.Context, bc *drv.BuildContext, d *drv.Derivation, out string) error {
	if b.err != nil {
		return b.err
	}
	p, ok := d.Params.(*Params)
	if !ok {
		return fmt.Errorf("model builder: %s has params of type %T", d, d.Params)
	}
	raw := p.Source
	if r, ok := b.raw[p.Source]; ok {
		raw = r
	}
	src, err := ParseSource(raw, b.baseDir)
	if err != nil {
		return err
	}
	c, err := ParseChecksum(p.Checksum)
	if err != nil {
		return err
	}
	bc.Task.Status("fetching " + src.Redacted())
	// Errors are wrapped by the scheduler with d.Where(): the model's target and spec line.
	res, err := b.fetcher.Fetch(ctx, src, Want{Checksum: c, Size: p.Size}, out, bc.Task)
	if err != nil {
		return err
	}
	bc.KnownNar = store.KnownNar{Hash: res.NarHash, Size: res.NarSize}
	return os.Chmod(out, 0o444)
}

// DownloadDir is where partial downloads and their checkpoints live under ROOT:
// ROOT/cache/runpod-comfy/downloads (on the volume, beside the store, so a finished download
// is renamed into the store, and an interrupted one resumes from any pod).
func DownloadDir(root string) string {
	return layout.New(root).Downloads()
}

// ForRoot returns opts with the defaults that depend on ROOT and the display filled in: the
// partial directory (DownloadDir) and warnings printed as permanent progress lines.
func (o Options) ForRoot(root string, display *progress.Display) Options {
	if o.PartialDir == "" {
		o.PartialDir = DownloadDir(root)
	}
	if o.Warnf == nil && display != nil {
		o.Warnf = display.Logf
	}
	return o
}

// NewResolver returns the Resolver the builder uses for the store under root: downloads of
// models trusted on first use go straight into that store.
func NewResolver(root string, opts Options, jobs int, display *progress.Display) (*Resolver, error) {
	opts = opts.ForRoot(root, display)
	f, err := New(opts)
	if err != nil {
		return nil, err
	}
	s, err := store.Open(root)
	if err != nil {
		return nil, err
	}
	return &Resolver{Fetcher: f, Store: s, Jobs: jobs, Progress: display, Warnf: opts.Warnf, AdoptDirs: opts.AdoptDirs}, nil
}
