package builder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/runpod-comfy/runpod-comfy/builder/drv"
	"github.com/runpod-comfy/runpod-comfy/builder/python"
	"github.com/runpod-comfy/runpod-comfy/diff/tree"
	"github.com/runpod-comfy/runpod-comfy/internal/layout"
	"github.com/runpod-comfy/runpod-comfy/internal/rawfile"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// CheckOptions configure Check. The embedded BuildOptions name the version and how to build
// it, exactly as for Build.
type CheckOptions struct {
	BuildOptions
	// Keep leaves the scratch store in place for inspection (CheckReport.Scratch).
	Keep bool
	// WrapBuilder, when set, wraps the builder of each kind used for the rebuild. Tests use it
	// to make a builder non-deterministic on purpose; nothing else should.
	WrapBuilder func(kind string, b drv.Builder) drv.Builder
}

// CheckReport is the outcome of Check.
type CheckReport struct {
	VersionID string `json:"version_id"`
	// Scratch is the scratch store's ROOT when it was kept, else "".
	Scratch string `json:"scratch,omitempty"`
	// Verify is the verification of the version's existing objects, done first.
	Verify *store.VerifyReport `json:"verify"`
	// Objects are the rebuilt objects (every derivation but the models, which are fixed by
	// their content and checked by Verify).
	Objects []CheckedObject `json:"objects"`
}

// OK reports whether every rebuilt object matched and the existing objects verified.
func (r *CheckReport) OK() bool {
	if r.Verify != nil && len(r.Verify.Problems) > 0 {
		return false
	}
	for _, o := range r.Objects {
		if !o.Match {
			return false
		}
	}
	return true
}

// Differing counts the rebuilt objects that differ.
func (r *CheckReport) Differing() int {
	n := 0
	for _, o := range r.Objects {
		if !o.Match {
			n++
		}
	}
	return n
}

// CheckedObject compares one object as stored with its rebuild.
type CheckedObject struct {
	Path string `json:"path"`
	Kind string `json:"kind"`
	// Source is where the stored object came from: "built" or "substituted:<cache url>".
	Source string `json:"source"`
	// StoreNarHash is the stored object's, LockNarHash the lock's (git sources only) and
	// RebuiltNarHash the rebuild's.
	StoreNarHash   string `json:"store_nar_hash"`
	LockNarHash    string `json:"lock_nar_hash,omitempty"`
	RebuiltNarHash string `json:"rebuilt_nar_hash"`
	Match          bool   `json:"match"`
	// Files are the files that differ, relative to the object.
	Files []tree.FileDiff `json:"files,omitempty"`
}

// Check rebuilds every derivation of a version that is not fixed by content (the git
// exports, the python identity, the venv and the runtime root) in a scratch store on the
// same filesystem as ROOT, and compares each NAR hash with the store's and the lock's. It
// first builds the version when it is not built, and verifies its existing objects. Models
// are fixed by their checksum; the scratch store gets them as hard links (a copy where links
// are unsupported), never from the network. The scratch store is removed unless opts.Keep.
func Check(ctx context.Context, opts CheckOptions) (*CheckReport, error) {
	s, err := store.Open(opts.Root)
	if err != nil {
		return nil, err
	}
	lock, _, _, err := EnsureLock(ctx, opts.BuildOptions)
	if err != nil {
		return nil, err
	}
	plan, err := NewPlan(opts.Spec, lock, PlanOptions{SkipModels: opts.SkipModels})
	if err != nil {
		return nil, err
	}
	if !s.Valid(plan.Root.Path) {
		res, err := Build(ctx, opts.BuildOptions)
		if err != nil {
			return nil, fmt.Errorf("building %s before checking it: %w", opts.Spec.VersionID, err)
		}
		lock = res.Lock
		if plan, err = NewPlan(opts.Spec, lock, PlanOptions{SkipModels: opts.SkipModels}); err != nil {
			return nil, err
		}
	}
	rep := &CheckReport{VersionID: opts.Spec.VersionID}
	paths := make([]store.Path, len(plan.All))
	for i, d := range plan.All {
		paths[i] = d.Path
	}
	if rep.Verify, err = s.Verify(ctx, store.VerifyOptions{Paths: paths}); err != nil {
		return nil, err
	}

	scratchRoot, err := newScratch(opts.Root)
	if err != nil {
		return nil, err
	}
	if opts.Keep {
		rep.Scratch = scratchRoot
	} else {
		defer removeTree(scratchRoot)
	}
	scratch, err := store.Open(scratchRoot)
	if err != nil {
		return nil, err
	}
	sopts := opts.BuildOptions
	sopts.Root = scratchRoot
	sopts.Substitute = nil // a rebuild, not a download of what is being checked
	mirrors := newMirrors(opts.BuildOptions)
	bs := builders(sopts, mirrors)
	bs[drv.KindModel] = linkFromStore{from: s}
	if opts.WrapBuilder != nil {
		for k, b := range bs {
			bs[k] = opts.WrapBuilder(k, b)
		}
	}
	real, err := Realise(ctx, plan.All, RealiseOptions{Store: scratch, Builders: bs, Jobs: opts.Jobs, Progress: opts.Progress})
	if err != nil {
		return rep, fmt.Errorf("rebuilding in the scratch store %s: %w", scratchRoot, err)
	}

	lockHashes := map[string]string{lock.Comfy.StorePath: lock.Comfy.NarHash}
	for _, n := range lock.CustomNodes {
		lockHashes[n.StorePath] = n.NarHash
	}
	for _, d := range plan.All {
		if d.Kind == drv.KindModel {
			continue
		}
		orig, err := s.Meta(d.Path)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", d.Where(), err)
		}
		rb := real.Metas[d.Path]
		o := CheckedObject{Path: d.Path.String(), Kind: d.Kind, Source: orig.Source,
			StoreNarHash: orig.NarHash, LockNarHash: lockHashes[d.Path.String()], RebuiltNarHash: rb.NarHash}
		o.Match = o.StoreNarHash == o.RebuiltNarHash && (o.LockNarHash == "" || o.LockNarHash == o.RebuiltNarHash)
		if o.StoreNarHash != o.RebuiltNarHash {
			if o.Files, err = tree.Compare(s.Abs(d.Path), scratch.Abs(d.Path)); err != nil {
				return rep, fmt.Errorf("comparing %s: %w", d.Path, err)
			}
		}
		rep.Objects = append(rep.Objects, o)
	}
	return rep, nil
}

// newScratch makes a fresh scratch ROOT under ROOT/cache/runpod-comfy/check (the same
// filesystem as the store, so hard links and renames work) whose git mirrors and wheel cache
// are the real ones, so a rebuild needs no network.
func newScratch(root string) (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	dir := filepath.Join(layout.New(root).Check(), hex.EncodeToString(b[:]))
	cache := layout.New(dir).Cache()
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("making the scratch store: %w", err)
	}
	for _, link := range []struct{ name, target string }{
		{"git", MirrorDir(root)},
		{"pip", python.CacheDir(root)},
	} {
		if err := os.MkdirAll(link.target, 0o755); err != nil {
			return "", fmt.Errorf("making the scratch store: %w", err)
		}
		if err := os.Symlink(link.target, filepath.Join(cache, link.name)); err != nil {
			return "", fmt.Errorf("making the scratch store: %w", err)
		}
	}
	return dir, nil
}

// removeTree removes a tree whose directories may be read-only (store objects are).
func removeTree(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	os.RemoveAll(dir)
}

// linkFromStore "builds" a model in the scratch store from the real store's object: a hard
// link (a copy where links are unsupported), with its known NAR hash so that a multi-GB file
// is not read again.
type linkFromStore struct{ from *store.Store }

func (l linkFromStore) Build(ctx context.Context, bc *drv.BuildContext, d *drv.Derivation, out string) error {
	m, err := l.from.Meta(d.Path)
	if err != nil {
		return fmt.Errorf("model %s is not in the store: %w", d.Path, err)
	}
	src := l.from.Abs(d.Path)
	if err := os.Link(src, out); err != nil {
		if err := rawfile.CopyFile(out, src, 0o644); err != nil {
			return err
		}
	}
	bc.KnownNar = store.KnownNar{Hash: m.NarHash, Size: m.NarSize}
	return nil
}
