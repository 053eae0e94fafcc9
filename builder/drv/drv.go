// Package drv is the derivation model shared by the builder and every kind of builder (git,
// model, python, venv, root). It sits below package builder so that the kind packages
// (builder/git, builder/model, builder/python) can implement Builder without importing the
// scheduler, and package builder can import them all and wire them in one place.
//
// Words:
//
//   - A Derivation is one node of the build graph: a kind, a store name, the builder's logic
//     version, input derivations and parameters. Sealing it computes its store path.
//   - A fixed derivation (git sources, models) has a path derived from what it must contain:
//     Fixed.Fingerprint is store.GitFingerprint or store.FixedFingerprint.
//   - An input-addressed derivation (python, venv, root) has a path derived from its canonical
//     JSON: store.DrvFingerprint(sha256 hex of CanonicalJSON, name).
//   - A Builder creates the output of one derivation at a path it is given; limits and other
//     policies are wrappers around a Builder (see Limit).
package drv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/runpod-comfy/runpod-comfy/internal/progress"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// Kinds of derivation (docs/design.md section 7).
const (
	KindGit      = "git"
	KindRegistry = "registry"
	KindModel    = "model"
	KindPython   = "python"
	KindVenv     = "venv"
	KindRoot     = "root"
	// KindPythonPackage is one installed distribution (a wheel installed into a prefix); a
	// venv is composed from them.
	KindPythonPackage = "python-package"
)

// Derivation is one node of the build graph. Fill the exported fields, then call Seal (after
// the inputs are sealed) to compute Path. A sealed derivation must not be changed.
type Derivation struct {
	// Kind selects the Builder (KindGit, ...).
	Kind string
	// Name is the store name: the part of the store path after "<digest>-".
	Name string
	// Version is the builder's logic version; bump it when the builder's output for the same
	// inputs and params changes, so input-addressed paths change with it.
	Version int
	// Inputs are the derivations this one reads; they are realised first and become the
	// object's references (for input-addressed derivations).
	Inputs []*Derivation
	// Params are the builder's parameters. They must marshal to the same JSON every time:
	// use structs (fields in declared order) and maps (sorted by encoding/json), no floats
	// that format ambiguously. Never put secrets or absolute ROOT paths here.
	Params any
	// Fixed is set for fixed derivations (git, model); nil for input-addressed ones.
	Fixed *Fixed
	// AtFinalPath builds at the final store path under the lease (venvs embed their path).
	AtFinalPath bool
	// LinksInputs says the output hard-links files of its inputs (a venv links its packages'
	// files): the store keeps those links (store.AddOptions.LinksFromReferences), and the
	// scheduler builds it locally rather than substituting it, since composing it from its
	// inputs costs links, not bytes.
	LinksInputs bool
	// Label names the node for people, e.g. `custom node "ComfyUI-KJNodes"`.
	Label string
	// Pos is the spec position the node comes from, for error messages.
	Pos specs.Pos

	// Path is the store path, set by Seal.
	Path store.Path

	canonical []byte
}

// Fixed describes a fixed derivation's identity.
type Fixed struct {
	// Fingerprint is the store fingerprint, e.g. store.GitFingerprint(commit, subm, name).
	Fingerprint string
	// CA is recorded in the metadata (e.g. "git:<commit>" or "fixed:sha256:<hex>").
	CA string
	// NarHash is the expected NAR hash ("sha256:<nix32>") when known (from the lock); a build
	// producing another NAR hash fails. Empty means "record whatever the build gives".
	NarHash string
}

// canonicalDerivation is the JSON form of a derivation, hashed for input-addressed paths.
type canonicalDerivation struct {
	Kind    string   `json:"kind"`
	Version int      `json:"version"`
	Name    string   `json:"name"`
	Inputs  []string `json:"inputs"`
	Fixed   string   `json:"fixed,omitempty"`
	Params  any      `json:"params"`
}

// Seal computes d.Path and the canonical JSON. Every input must be sealed already.
func (d *Derivation) Seal() error {
	if d.Kind == "" || d.Name == "" {
		return fmt.Errorf("derivation %q: kind and name are required", d.Label)
	}
	c := canonicalDerivation{Kind: d.Kind, Version: d.Version, Name: d.Name, Inputs: []string{}, Params: d.Params}
	for _, in := range d.Inputs {
		if in.canonical == nil {
			return fmt.Errorf("derivation %s: input %s is not sealed", d, in)
		}
		c.Inputs = append(c.Inputs, in.Path.String())
	}
	if d.Fixed != nil {
		c.Fixed = d.Fixed.Fingerprint
	}
	js, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("derivation %s: encoding params: %w", d, err)
	}
	var fp string
	if d.Fixed != nil {
		fp = d.Fixed.Fingerprint
	} else {
		sum := sha256.Sum256(js)
		fp = store.DrvFingerprint(hex.EncodeToString(sum[:]), d.Name)
	}
	p, err := store.PathFor(fp, d.Name)
	if err != nil {
		return fmt.Errorf("derivation %s: %w", d, err)
	}
	d.Path, d.canonical = p, js
	return nil
}

// CanonicalJSON returns the JSON hashed for the derivation's path (nil before Seal). It is
// stored in the object's metadata as the derivation summary.
func (d *Derivation) CanonicalJSON() json.RawMessage { return d.canonical }

// References returns the store paths of d's inputs, the object's references.
func (d *Derivation) References() []store.Path {
	refs := make([]store.Path, 0, len(d.Inputs))
	for _, in := range d.Inputs {
		refs = append(refs, in.Path)
	}
	return refs
}

// String names the derivation for messages: its label, else kind and name.
func (d *Derivation) String() string {
	if d.Label != "" {
		return d.Label
	}
	return d.Kind + " " + d.Name
}

// Where returns the node's name with its spec position, e.g.
// `custom node "x" (versions/demo.json:12:5)`.
func (d *Derivation) Where() string {
	if p := d.Pos.String(); p != "" {
		return d.String() + " (" + p + ")"
	}
	return d.String()
}

// Builder creates the output of derivations of one kind.
type Builder interface {
	// Build creates d's output at out, which does not exist yet: a file or a directory.
	// Inputs are valid store objects (bc.Input). Build must not register anything; the
	// scheduler canonicalises, hashes and registers out when Build returns nil.
	Build(ctx context.Context, bc *BuildContext, d *Derivation, out string) error
}

// BuildContext is what a Builder may use while building one derivation.
type BuildContext struct {
	Store *store.Store
	// Task is the derivation's progress line; never nil (a discarding task when silent).
	Task *progress.Task
	// KnownNar is set by a Builder that computed the NAR hash of its output (a single file)
	// while writing it; the scheduler hands it to the store with the output, which then does
	// not read the file again (store.Store.AddKnown).
	KnownNar store.KnownNar
}

// Input returns the absolute path of a realised input of the derivation being built.
func (bc *BuildContext) Input(in *Derivation) string { return bc.Store.Abs(in.Path) }

// BuilderFunc adapts a function to Builder.
type BuilderFunc func(ctx context.Context, bc *BuildContext, d *Derivation, out string) error

// Build calls f.
func (f BuilderFunc) Build(ctx context.Context, bc *BuildContext, d *Derivation, out string) error {
	return f(ctx, bc, d, out)
}

// Limit wraps b so that at most n builds run at once through it (e.g. downloads). n < 1
// means 1.
func Limit(b Builder, n int) Builder {
	if n < 1 {
		n = 1
	}
	return &limited{b: b, sem: make(chan struct{}, n)}
}

type limited struct {
	b   Builder
	sem chan struct{}
}

func (l *limited) Build(ctx context.Context, bc *BuildContext, d *Derivation, out string) error {
	bc.Task.Status("waiting")
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.sem }()
	return l.b.Build(ctx, bc, d, out)
}

// WriteFileIn writes data to rel under dir, creating parent directories; builders use it to
// fill their output.
func WriteFileIn(dir, rel string, data []byte, perm os.FileMode) error {
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, perm)
}
