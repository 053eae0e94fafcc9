package builder

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/runpod-comfy/runpod-comfy/builder/drv"
	"github.com/runpod-comfy/runpod-comfy/builder/python"
	"github.com/runpod-comfy/runpod-comfy/internal/filehash"
	"github.com/runpod-comfy/runpod-comfy/internal/layout"
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
	Files []FileDiff `json:"files,omitempty"`
}

// FileDiff is one file that differs between the stored object and its rebuild.
type FileDiff struct {
	Path string `json:"path"`
	// Change is "content", "type" (file, symlink, directory or executable bit),
	// "only-in-store" or "only-in-rebuild".
	Change        string `json:"change"`
	StoreSize     int64  `json:"store_size"`
	RebuiltSize   int64  `json:"rebuilt_size"`
	StoreSHA256   string `json:"store_sha256,omitempty"`
	RebuiltSHA256 string `json:"rebuilt_sha256,omitempty"`
	// Lines are the first differing lines of a text file.
	Lines []LineDiff `json:"lines,omitempty"`
}

// LineDiff is a differing line of a text file (1-based).
type LineDiff struct {
	Line    int    `json:"line"`
	Store   string `json:"store"`
	Rebuilt string `json:"rebuilt"`
}

// maxLineDiffs is how many differing lines of one text file a report shows.
const maxLineDiffs = 5

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
			if o.Files, err = diffTrees(s.Abs(d.Path), scratch.Abs(d.Path)); err != nil {
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
		if err := copyFile(src, out); err != nil {
			return err
		}
	}
	bc.KnownNar = store.KnownNar{Hash: m.NarHash, Size: m.NarSize}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// entry is one file of a tree, for diffTrees.
type entry struct {
	kind   string // "file", "exec", "symlink", "dir"
	size   int64
	target string
}

func listTree(root string) (map[string]entry, error) {
	out := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			rel = ""
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = entry{kind: "symlink", target: t}
		case d.IsDir():
			out[rel] = entry{kind: "dir"}
		case info.Mode()&0o100 != 0:
			out[rel] = entry{kind: "exec", size: info.Size()}
		default:
			out[rel] = entry{kind: "file", size: info.Size()}
		}
		return nil
	})
	return out, err
}

// diffTrees names the files that differ between two trees (or two single files).
func diffTrees(a, b string) ([]FileDiff, error) {
	ta, err := listTree(a)
	if err != nil {
		return nil, err
	}
	tb, err := listTree(b)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for n := range ta {
		names[n] = true
	}
	for n := range tb {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	var diffs []FileDiff
	for _, n := range sorted {
		ea, inA := ta[n]
		eb, inB := tb[n]
		fd := FileDiff{Path: n, StoreSize: ea.size, RebuiltSize: eb.size}
		switch {
		case !inA:
			fd.Change = "only-in-rebuild"
		case !inB:
			fd.Change = "only-in-store"
		case ea.kind != eb.kind:
			fd.Change = "type"
		case ea.kind == "symlink":
			if ea.target == eb.target {
				continue
			}
			fd.Change = "content"
			fd.Lines = []LineDiff{{Line: 1, Store: ea.target, Rebuilt: eb.target}}
		case ea.kind == "dir":
			continue
		default:
			pa, pb := filepath.Join(a, n), filepath.Join(b, n)
			ha, err := filehash.SHA256Hex(pa)
			if err != nil {
				return nil, err
			}
			hb, err := filehash.SHA256Hex(pb)
			if err != nil {
				return nil, err
			}
			if ha == hb {
				continue
			}
			fd.Change, fd.StoreSHA256, fd.RebuiltSHA256 = "content", ha, hb
			if fd.Lines, err = lineDiff(pa, pb); err != nil {
				return nil, err
			}
		}
		diffs = append(diffs, fd)
	}
	return diffs, nil
}

// maxTextSize bounds the files lineDiff reads.
const maxTextSize = 4 << 20

// lineDiff returns the first differing lines of two text files, or nothing when either is
// binary (a NUL byte) or large.
func lineDiff(a, b string) ([]LineDiff, error) {
	da, err := readText(a)
	if err != nil || da == nil {
		return nil, err
	}
	db, err := readText(b)
	if err != nil || db == nil {
		return nil, err
	}
	la, lb := splitLines(da), splitLines(db)
	var out []LineDiff
	for i := 0; i < max(len(la), len(lb)) && len(out) < maxLineDiffs; i++ {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y || (i >= len(la)) != (i >= len(lb)) {
			out = append(out, LineDiff{Line: i + 1, Store: x, Rebuilt: y})
		}
	}
	return out, nil
}

func readText(p string) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxTextSize {
		return nil, nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, nil
	}
	return data, nil
}

func splitLines(data []byte) []string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), maxTextSize)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}
