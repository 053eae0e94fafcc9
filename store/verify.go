package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

// Repairer makes a broken object again. The builder implements it (it knows how each kind of
// object is made, from the derivation recorded in the metadata); the CLI wires it in. When
// Repair is called the object is no longer valid (its metadata is removed and the broken tree
// moved to .trash), so Repair can simply Add p again. m is the metadata it had.
type Repairer interface {
	Repair(ctx context.Context, p Path, m *Meta) error
}

// VerifyOptions control Verify.
type VerifyOptions struct {
	// Workers hash objects in parallel (default: the number of CPUs).
	Workers int
	// Paths limits verification to these objects (default: every valid object).
	Paths []Path
	// Repair, when set, is asked to make every broken object again.
	Repair Repairer
}

// Problem is one thing Verify found wrong with an object.
type Problem struct {
	// Path is the object's store path, or for metadata that cannot be read what is known of
	// the object (MetaError.What: its store entry's name, else its digest), so it is a string.
	Path string `json:"path"`
	// Kind is "hash-mismatch" (the NAR hash differs from the metadata), "missing" (metadata
	// without an object), "absolute-symlink" (a symlink into the store by an absolute path),
	// "missing-reference" (a reference without metadata), "unreadable", "corrupt-metadata"
	// (the metadata file cannot be read: the object is not valid) or "content-address" (a
	// fixed object whose content is not what its fingerprint names).
	Kind string `json:"kind"`
	// Files are the files inside the object that changed, appeared or disappeared, relative
	// to the object ("" is the object itself).
	Files       []string `json:"files,omitempty"`
	Detail      string   `json:"detail"`
	Repaired    bool     `json:"repaired,omitempty"`
	RepairError string   `json:"repair_error,omitempty"`
}

// VerifyReport is the result of Verify.
type VerifyReport struct {
	Checked  int       `json:"checked"`
	Problems []Problem `json:"problems"`
	// Unregistered lists store entries without metadata (crash debris or a build in progress):
	// not valid, never used, removed by GC.
	Unregistered []Path `json:"unregistered"`
}

// OK reports whether every problem found was repaired.
func (r *VerifyReport) OK() bool {
	for _, p := range r.Problems {
		if !p.Repaired {
			return false
		}
	}
	return true
}

// Verify recomputes the NAR hash of every valid object (in parallel) and compares it with the
// metadata, naming the changed files from the file listing; it also reports absolute
// symlinks into the store, references without metadata and store entries without metadata.
// With opts.Repair, broken objects are made again.
func (s *Store) Verify(ctx context.Context, opts VerifyOptions) (*VerifyReport, error) {
	metas, bad, err := s.allMeta()
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	nameBad(bad, ents)
	var todo []*Meta
	if len(opts.Paths) > 0 {
		badOf := map[Digest]*MetaError{}
		for _, b := range bad {
			badOf[b.Digest] = b
		}
		bad = nil
		for _, p := range opts.Paths {
			m, err := s.Meta(p)
			var me *MetaError
			if errors.As(err, &me) {
				me.Name = p.String()
				bad = append(bad, me)
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("verify: %w", err)
			}
			todo = append(todo, m)
		}
	} else {
		for _, m := range metas {
			todo = append(todo, m)
		}
	}
	sort.Slice(todo, func(i, j int) bool { return todo[i].Path.String() < todo[j].Path.String() })
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	results := make([][]Problem, len(todo))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				results[i] = s.verifyOne(ctx, todo[i], metas)
			}
		}()
	}
feed:
	for i := range todo {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep := &VerifyReport{Checked: len(todo) + len(bad), Problems: []Problem{}, Unregistered: []Path{}}
	for _, b := range bad {
		// The metadata is the commit record: without it nothing can be checked, and the
		// object is not valid. A build that needs it makes it again; --repair does it now.
		p := Problem{Path: b.What(), Kind: "corrupt-metadata",
			Detail: fmt.Sprintf("%v; the object is not valid (a build that needs it makes it again; gc keeps it)", b)}
		if opts.Repair != nil {
			if bp, err := ParsePath(b.Name); err == nil {
				s.repair(ctx, opts.Repair, &Meta{Path: bp}, &p)
			} else {
				p.RepairError = "no store entry has this digest: remove the metadata file"
			}
		}
		rep.Problems = append(rep.Problems, p)
	}
	repairable := func(kind string) bool {
		return kind == "hash-mismatch" || kind == "missing" || kind == "content-address"
	}
	for _, i := range referencesFirst(todo, results, repairable) {
		ps := results[i]
		var fix *Problem // the object is made again once, whatever number of problems it has
		for j := range ps {
			if opts.Repair != nil && repairable(ps[j].Kind) {
				if fix == nil {
					fix = &ps[j]
					s.repair(ctx, opts.Repair, todo[i], fix)
				} else {
					ps[j].Repaired, ps[j].RepairError = fix.Repaired, fix.RepairError
				}
			}
		}
	}
	for _, ps := range results {
		rep.Problems = append(rep.Problems, ps...)
	}
	if len(opts.Paths) == 0 {
		valid := map[Digest]bool{}
		for p := range metas {
			valid[p.Digest()] = true
		}
		for _, b := range bad {
			valid[b.Digest] = true // reported above
		}
		for _, e := range ents {
			if p, err := ParsePath(e.Name()); err == nil && !valid[p.Digest()] && !s.Valid(p) {
				rep.Unregistered = append(rep.Unregistered, p)
			}
		}
	}
	return rep, nil
}

func (s *Store) verifyOne(ctx context.Context, m *Meta, metas map[Path]*Meta) []Problem {
	var out []Problem
	abs := s.Abs(m.Path)
	fi, err := os.Lstat(abs)
	if err != nil {
		return []Problem{{Path: m.Path.String(), Kind: "missing", Detail: fmt.Sprintf("metadata exists but the object does not: %v", err)}}
	}
	for _, r := range m.References {
		if metas[r] == nil && !s.Valid(r) {
			out = append(out, Problem{Path: m.Path.String(), Kind: "missing-reference", Detail: fmt.Sprintf("reference %s has no metadata", r)})
		}
	}
	// A fixed object (a model) is checked against its content address too: a NAR hash that
	// matches metadata written from a cache's narinfo proves nothing about the bytes, the
	// store path (the hash of the fingerprint) does.
	var (
		narHash string
		files   []nar.File
		addr    fixedAddr
		fixed   bool
	)
	fp, claimed := fixedFingerprintOf(m)
	if fp != "" {
		var ferr error
		if addr, fixed, ferr = parseFixed(m.Path, fp); ferr != nil {
			out = append(out, Problem{Path: m.Path.String(), Kind: "content-address", Detail: ferr.Error()})
			fixed = false
		}
	} else if claimed {
		out = append(out, Problem{Path: m.Path.String(), Kind: "content-address",
			Detail: fmt.Sprintf("the metadata claims a fixed content address (ca %q) that does not name this store path", m.CA)})
	}
	switch {
	case !fixed && !claimed && m.Kind == "model" && fi.Mode().IsRegular():
		// A model always lives at its content address; metadata without one (from an older
		// substitution) is checked against the path itself.
		var ok bool
		narHash, ok, err = modelAddressed(ctx, m.Path, abs)
		if err == nil && !ok {
			out = append(out, Problem{Path: m.Path.String(), Kind: "content-address", Files: []string{""},
				Detail: "a model whose sha256 and md5 both differ from the checksum its store path addresses"})
		}
	case fixed && fi.Mode().IsRegular():
		var h fileHashes
		h, err = hashFile(ctx, abs, true, addr.algo)
		narHash = h.narHash
		if err == nil && h.content[0] != addr.hex {
			out = append(out, Problem{Path: m.Path.String(), Kind: "content-address", Files: []string{""},
				Detail: (&ContentAddressError{Path: m.Path, Algo: addr.algo, Want: addr.hex, Got: h.content[0]}).Error()})
		}
	case fi.IsDir():
		if fixed {
			out = append(out, Problem{Path: m.Path.String(), Kind: "content-address",
				Detail: (&ContentAddressError{Path: m.Path, Algo: addr.algo, Want: addr.hex}).Error()})
		}
		narHash, _, files, err = nar.HashFiles(abs)
	default:
		if fixed {
			out = append(out, Problem{Path: m.Path.String(), Kind: "content-address",
				Detail: (&ContentAddressError{Path: m.Path, Algo: addr.algo, Want: addr.hex}).Error()})
		}
		narHash, _, err = nar.Hash(abs)
	}
	if err != nil {
		return append(out, Problem{Path: m.Path.String(), Kind: "unreadable", Detail: err.Error()})
	}
	if narHash != m.NarHash {
		p := Problem{Path: m.Path.String(), Kind: "hash-mismatch"}
		if fi.IsDir() {
			recorded, err := s.readFiles(m.Path.Digest())
			if err != nil {
				p.Detail = fmt.Sprintf("NAR hash %s, metadata says %s; no file listing to name the file (%v; an object composed of its references' files, such as a venv, keeps none: verify its references)", narHash, m.NarHash, err)
			} else {
				p.Files = diffFiles(recorded, files)
				p.Detail = fmt.Sprintf("NAR hash %s, metadata says %s; changed: %s", narHash, m.NarHash, strings.Join(p.Files, ", "))
			}
		} else {
			p.Files = []string{""}
			p.Detail = fmt.Sprintf("NAR hash %s, metadata says %s; the file's content changed", narHash, m.NarHash)
		}
		out = append(out, p)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		t, _ := os.Readlink(abs)
		files = []nar.File{{Path: "", Type: "symlink", Target: t}}
	}
	for _, f := range files {
		if f.Type == "symlink" && s.checkLink(filepath.Join(m.Path.String(), f.Path), f.Target) != nil && filepath.IsAbs(f.Target) {
			out = append(out, Problem{Path: m.Path.String(), Kind: "absolute-symlink", Files: []string{f.Path},
				Detail: fmt.Sprintf("%s -> %s points into the store by an absolute path (breaks when the volume is mounted elsewhere)", f.Path, f.Target)})
		}
	}
	return out
}

// diffFiles names the nodes that differ between the recorded listing and the current one.
func diffFiles(recorded, current []nar.File) []string {
	cur := map[string]nar.File{}
	for _, f := range current {
		cur[f.Path] = f
	}
	seen := map[string]bool{}
	var out []string
	for _, r := range recorded {
		seen[r.Path] = true
		c, ok := cur[r.Path]
		switch {
		case !ok:
			out = append(out, r.Path+" (missing)")
		case c != r:
			out = append(out, r.Path)
		}
	}
	for _, c := range current {
		if !seen[c.Path] {
			out = append(out, c.Path+" (added)")
		}
	}
	if len(out) == 0 {
		out = []string{"(no file differs: the listing itself may be stale)"}
	}
	return out
}

// RepairChecker is optionally implemented by a Repairer that can tell beforehand whether it
// knows how to make an object again; a broken object it cannot make is left in place (still
// reported) rather than removed.
type RepairChecker interface {
	CanRepair(p Path) bool
}

// referencesFirst orders the indices of todo so that an object with a repairable problem comes
// after every broken object it references: an object made of its references' files
// (AddOptions.LinksFromReferences) shares their inodes, so both break at once, and made
// first it would link the damaged files again.
func referencesFirst(todo []*Meta, results [][]Problem, repairable func(string) bool) []int {
	broken := map[Path]bool{}
	for i, ps := range results {
		for _, p := range ps {
			if repairable(p.Kind) {
				broken[todo[i].Path] = true
			}
		}
	}
	order := make([]int, 0, len(todo))
	placed := make([]bool, len(todo))
	for len(order) < len(todo) {
		n := len(order)
		for i, m := range todo {
			if placed[i] {
				continue
			}
			ready := true
			for _, r := range m.References {
				if r != m.Path && broken[r] {
					ready = false
					break
				}
			}
			if ready {
				order, placed[i] = append(order, i), true
			}
		}
		for i, m := range todo { // this pass's objects are repaired before the next pass's
			if placed[i] {
				delete(broken, m.Path)
			}
		}
		if len(order) == n { // a cycle, which the store cannot hold: keep the path order
			for i := range todo {
				if !placed[i] {
					order, placed[i] = append(order, i), true
				}
			}
		}
	}
	return order
}

func (s *Store) repair(ctx context.Context, r Repairer, m *Meta, p *Problem) {
	if c, ok := r.(RepairChecker); ok && !c.CanRepair(m.Path) {
		p.RepairError = "no known version makes this object: left as it is"
		return
	}
	os.Remove(s.metaFile(m.Path.Digest()))
	os.Remove(s.filesFile(m.Path.Digest()))
	if err := s.trash(s.Abs(m.Path)); err != nil {
		p.RepairError = err.Error()
		return
	}
	if err := r.Repair(ctx, m.Path, m); err != nil {
		p.RepairError = err.Error()
		return
	}
	nm, err := s.Meta(m.Path)
	if err != nil {
		p.RepairError = fmt.Sprintf("repair registered nothing: %v", err)
		return
	}
	if m.CA != "" && nm.NarHash != m.NarHash && p.Kind != "content-address" {
		p.RepairError = fmt.Sprintf("repaired object has NAR hash %s, expected %s", nm.NarHash, m.NarHash)
		return
	}
	p.Repaired = true
}
