package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/runpod-comfy/runpod-comfy/internal/atomicfile"
)

// GCOptions control a garbage collection.
type GCOptions struct {
	// Grace keeps every object registered, and every debris entry changed, after the GC's
	// start minus Grace: a build running beside GC may not have rooted its work yet.
	Grace time.Duration
	// MaxFreed stops deleting once this many bytes are freed (0: no limit).
	MaxFreed int64
	// KeepGenerations, when positive, prunes the generations of every version but the newest
	// KeepGenerations and the current one, before marking.
	KeepGenerations int
}

// GCItem is one thing a GC plan deletes.
type GCItem struct {
	// Path is a store path for an object, else a path relative to ROOT.
	Path string `json:"path"`
	// Kind is "object" (registered, unreachable), "debris" (object without metadata),
	// "stage" (.tmp staging), "trash" (.trash entry) or "generation".
	Kind string `json:"kind"`
	Size int64  `json:"size"`
}

// GCPlan is what a GC will delete, computed by PlanGC while holding the GC lease. It is
// printable (--dry-run) and executed by Execute.
type GCPlan struct {
	Start time.Time `json:"start"`
	Grace string    `json:"grace"`
	Live  int       `json:"live"` // objects kept
	// GraceKept and GraceKeptSize count the objects kept only because of the grace window:
	// registered after Start minus Grace, or reached only from such an object. A GC with a
	// shorter grace (--grace 0) collects those no root reaches.
	GraceKept     int      `json:"grace_kept"`
	GraceKeptSize int64    `json:"grace_kept_size"`
	Objects       []GCItem `json:"objects"`     // referrers first
	Debris        []GCItem `json:"debris"`      // objects without metadata, stages, trash
	Generations   []GCItem `json:"generations"` // generation links pruned
	Total         int64    `json:"total"`       // bytes the plan frees (objects by NAR size, debris on disk)
	// Unreadable are objects whose metadata cannot be read: gc keeps them, since it cannot
	// judge them (store verify reports them; a build that needs one makes it again).
	Unreadable []GCKept `json:"unreadable,omitempty"`
	// Held, when set, says why no object is deleted at all: a root reaches an object whose
	// metadata cannot be read, so what that object references is unknown.
	Held string `json:"held,omitempty"`

	s     *Store
	opts  GCOptions
	lease *Lease
	metas map[Path]*Meta
}

// GCKept is an object GC keeps without judging it, and why.
type GCKept struct {
	// Path is what is known of an object whose metadata cannot be read (MetaError.What: its
	// store entry's name, else its digest), so it is a string.
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// GCResult reports an executed GC.
type GCResult struct {
	// Unreadable and Held are copied from the plan.
	Unreadable []GCKept `json:"unreadable,omitempty"`
	Held       string   `json:"held,omitempty"`

	Deleted     []GCItem `json:"deleted"`
	Kept        []Path   `json:"kept,omitempty"` // planned objects rooted meanwhile
	Freed       int64    `json:"freed"`
	StoppedAt   bool     `json:"stopped_at_max_freed"`
	Generations []string `json:"generations_pruned,omitempty"`
}

// ErrGCRunning is wrapped when another GC holds the GC lease.
var ErrGCRunning = errors.New("another GC is running")

// PlanGC takes the GC lease and computes what a GC would delete: the roots are builds/*,
// builds/.generations/* (after pruning by KeepGenerations), unexpired temporary roots, live
// leases (the object being built and its references) and objects registered after start
// minus grace; marking follows metadata references. Close the plan (or Execute it) to
// release the lease.
func (s *Store) PlanGC(ctx context.Context, opts GCOptions) (*GCPlan, error) {
	if opts.Grace < 0 || opts.MaxFreed < 0 || opts.KeepGenerations < 0 {
		return nil, errors.New("gc: negative grace, max-freed or keep-generations")
	}
	lease, holder, err := s.tryLease("gc", Path{}, nil)
	if errors.Is(err, errLeaseHeld) {
		who := "unknown holder"
		if holder != nil {
			who = fmt.Sprintf("host %s pid %d since %s", holder.Host, holder.PID, holder.Started.Format(time.RFC3339))
		}
		return nil, fmt.Errorf("gc: %w (%s)", ErrGCRunning, who)
	}
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	p := &GCPlan{Start: s.now().UTC(), Grace: opts.Grace.String(), s: s, opts: opts, lease: lease, Objects: []GCItem{}, Debris: []GCItem{}, Generations: []GCItem{}}
	if err := p.plan(ctx); err != nil {
		lease.Release()
		return nil, err
	}
	return p, nil
}

func (p *GCPlan) cutoff() time.Time { return p.Start.Add(-p.opts.Grace) }

func (p *GCPlan) plan(ctx context.Context) error {
	s := p.s
	metas, bad, err := s.allMeta()
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	p.metas = metas
	badDigests := map[Digest]bool{}
	if len(bad) > 0 {
		if ents, err := os.ReadDir(s.dir); err == nil {
			nameBad(bad, ents)
		}
		for _, b := range bad {
			badDigests[b.Digest] = true
			p.Unreadable = append(p.Unreadable, GCKept{Path: b.What(), Reason: b.Error()})
		}
	}
	prune, err := s.generationsToPrune(p.opts.KeepGenerations)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	pruned := map[string]bool{}
	for _, g := range prune {
		pruned[g] = true
		p.Generations = append(p.Generations, GCItem{Path: filepath.Join("builds", ".generations", g), Kind: "generation"})
	}
	roots, leaseDigests, err := s.gcRoots(pruned)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	cutoff := p.cutoff()
	rooted := slices.Clone(roots)
	for path, m := range metas {
		if leaseDigests[path.Digest()] {
			rooted = append(rooted, path)
			roots = append(roots, path)
		} else if m.CreatedAt.After(cutoff) {
			roots = append(roots, path)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	live := s.mark(roots, metas)
	p.Live = len(live)
	withoutGrace := s.mark(rooted, metas)
	for path := range live {
		if !withoutGrace[path] {
			p.GraceKept++
			p.GraceKeptSize += metas[path].NarSize
		}
	}
	var dead []Path
	for path := range metas {
		if !live[path] {
			dead = append(dead, path)
		}
	}
	for path := range live {
		if badDigests[path.Digest()] {
			// What this object references is unknown: deleting any object could break it.
			p.Held = fmt.Sprintf("%s is reached from a root but its metadata cannot be read, so what it references is unknown: no object is deleted until `store verify --repair` (or a build of its version) makes it again", path)
			dead = nil
			break
		}
	}
	for _, path := range referrersFirst(dead, metas) {
		p.Objects = append(p.Objects, GCItem{Path: path.String(), Kind: "object", Size: metas[path].NarSize})
		p.Total += metas[path].NarSize
	}
	debris, err := s.findDebris(metas, badDigests, leaseDigests, cutoff)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	p.Debris = debris
	for _, d := range debris {
		p.Total += d.Size
	}
	b, _ := json.MarshalIndent(p, "", "  ")
	atomicfile.WriteFile(filepath.Join(s.locksDir(), "gc.plan.json"), b, 0o644) // reviewable copy; best effort
	return nil
}

// gcRoots returns the objects named by builds/*, unpruned generations, live temporary roots
// and live leases, and the digests of live build leases.
func (s *Store) gcRoots(pruned map[string]bool) ([]Path, map[Digest]bool, error) {
	var roots []Path
	add := func(str string) {
		if p, err := ParsePath(str); err == nil {
			roots = append(roots, p)
		}
	}
	for _, dir := range []string{s.buildsDir, s.generationsDir()} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, nil, fmt.Errorf("listing roots: %w", err)
		}
		for _, e := range ents {
			if e.Type()&fs.ModeSymlink == 0 || pruned[e.Name()] {
				continue
			}
			if t, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
				add(filepath.Base(t))
			}
		}
	}
	temp, err := s.liveTempRoots()
	if err != nil {
		return nil, nil, err
	}
	roots = append(roots, temp...)
	leases, err := s.liveLeases()
	if err != nil {
		return nil, nil, err
	}
	digests := map[Digest]bool{}
	for _, l := range leases {
		if d, err := ParseDigest(l.name); err == nil {
			digests[d] = true
		}
		if !l.rec.Path.IsZero() {
			roots = append(roots, l.rec.Path)
		}
		roots = append(roots, l.rec.References...)
	}
	return roots, digests, nil
}

// mark returns everything reachable from roots through references. Objects not in metas
// (registered after the metadata was loaded) are read from disk.
func (s *Store) mark(roots []Path, metas map[Path]*Meta) map[Path]bool {
	live := map[Path]bool{}
	stack := append([]Path(nil), roots...)
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if live[p] {
			continue
		}
		live[p] = true
		m := metas[p]
		if m == nil {
			var err error
			if m, err = s.Meta(p); err != nil {
				continue
			}
		}
		for _, r := range m.References {
			if !live[r] {
				stack = append(stack, r)
			}
		}
	}
	return live
}

// referrersFirst orders dead objects so that every object comes before the objects it
// references (deleting in this order never leaves a registered object with a missing
// reference); ties by name.
func referrersFirst(dead []Path, metas map[Path]*Meta) []Path {
	sortPaths(dead)
	in := map[Path]bool{}
	for _, p := range dead {
		in[p] = true
	}
	referrers := map[Path]int{}
	for _, p := range dead {
		for _, r := range metas[p].References {
			if in[r] && r != p {
				referrers[r]++
			}
		}
	}
	var out, ready []Path
	for _, p := range dead {
		if referrers[p] == 0 {
			ready = append(ready, p)
		}
	}
	done := map[Path]bool{}
	for len(ready) > 0 {
		p := ready[0]
		ready = ready[1:]
		out = append(out, p)
		done[p] = true
		var next []Path
		for _, r := range metas[p].References {
			if in[r] && r != p {
				referrers[r]--
				if referrers[r] == 0 {
					next = append(next, r)
				}
			}
		}
		sortPaths(next)
		ready = append(ready, next...)
	}
	for _, p := range dead { // reference cycles cannot be built, but stay total
		if !done[p] {
			out = append(out, p)
		}
	}
	return out
}

// generationsToPrune returns the generation link names to remove so that each version keeps
// its newest keep generations and its current one.
func (s *Store) generationsToPrune(keep int) ([]string, error) {
	if keep <= 0 {
		return nil, nil
	}
	ents, err := os.ReadDir(s.generationsDir())
	if err != nil {
		return nil, fmt.Errorf("listing generations: %w", err)
	}
	ids := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		if i := strings.LastIndexByte(name, '-'); strings.HasPrefix(name, RootPrefix) && i > len(RootPrefix) {
			ids[name[len(RootPrefix):i]] = true
		}
	}
	var out []string
	for id := range ids {
		if ValidateRootID(id) != nil {
			continue
		}
		gens, err := s.Generations(id)
		if err != nil {
			return nil, err
		}
		for i, g := range gens {
			if i < len(gens)-keep && !g.Current {
				out = append(out, RootPrefix+id+"-"+fmt.Sprint(g.N))
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// changedAt returns the later of a file's mtime and ctime (canonical objects have mtime 1;
// a rename sets ctime).
func changedAt(fi fs.FileInfo) time.Time {
	t := fi.ModTime()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if c := time.Unix(st.Ctim.Sec, st.Ctim.Nsec); c.After(t) {
			t = c
		}
	}
	return t
}

// findDebris lists objects without metadata and .tmp stages, both older than cutoff and not
// under a live lease, and every .trash entry.
func (s *Store) findDebris(metas map[Path]*Meta, bad, leased map[Digest]bool, cutoff time.Time) ([]GCItem, error) {
	valid := map[Digest]bool{}
	for p := range metas {
		valid[p.Digest()] = true
	}
	for d := range bad {
		valid[d] = true // has metadata, unreadable: kept, not debris
	}
	out := []GCItem{}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("listing store: %w", err)
	}
	for _, e := range ents {
		p, err := ParsePath(e.Name())
		if err != nil || valid[p.Digest()] || leased[p.Digest()] {
			continue
		}
		fi, err := os.Lstat(filepath.Join(s.dir, e.Name()))
		if err != nil || changedAt(fi).After(cutoff) {
			continue
		}
		out = append(out, GCItem{Path: p.String(), Kind: "debris", Size: diskUsage(filepath.Join(s.dir, e.Name()))})
	}
	stages, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return nil, fmt.Errorf("listing staging: %w", err)
	}
	for _, e := range stages {
		name := e.Name()
		if len(name) > DigestLen {
			if d, err := ParseDigest(name[:DigestLen]); err == nil && leased[d] {
				continue
			}
		}
		full := filepath.Join(s.tmpDir(), name)
		fi, err := os.Lstat(full)
		if err != nil || changedAt(fi).After(cutoff) {
			continue
		}
		out = append(out, GCItem{Path: filepath.Join("store", ".tmp", name), Kind: "stage", Size: diskUsage(full)})
	}
	trash, err := os.ReadDir(s.trashDir())
	if err != nil {
		return nil, fmt.Errorf("listing trash: %w", err)
	}
	for _, e := range trash {
		full := filepath.Join(s.trashDir(), e.Name())
		out = append(out, GCItem{Path: filepath.Join("store", ".trash", e.Name()), Kind: "trash", Size: diskUsage(full)})
	}
	return out, nil
}

// diskUsage sums the apparent sizes of the regular files under path.
func diskUsage(path string) int64 {
	var n int64
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// Close releases the GC lease without executing.
func (p *GCPlan) Close() {
	if p.lease != nil {
		os.Remove(filepath.Join(p.s.locksDir(), "gc.plan.json"))
		p.lease.Release()
		p.lease = nil
	}
}

// gcBatch is how many objects Execute unregisters before re-scanning the roots.
const gcBatch = 256

type savedMeta struct {
	path  Path
	size  int64
	meta  []byte
	files []byte
}

// Execute carries out the plan and releases the GC lease. It prunes the planned generations,
// then deletes the planned objects in batches, referrers first: it re-checks each object's
// registration time, removes its metadata (the object becomes invalid), re-scans the roots
// and puts back the metadata of any object rooted meanwhile, then moves the rest into .trash
// and removes them. It stops once MaxFreed bytes are freed, and finally removes the debris.
func (p *GCPlan) Execute(ctx context.Context) (*GCResult, error) {
	if p.lease == nil {
		return nil, errors.New("gc: plan already executed or closed")
	}
	defer p.Close()
	s := p.s
	res := &GCResult{Deleted: []GCItem{}, Unreadable: p.Unreadable, Held: p.Held}
	for _, g := range p.Generations {
		if err := os.Remove(filepath.Join(s.root, g.Path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("gc: pruning generation: %w", err)
		}
		res.Generations = append(res.Generations, filepath.Base(g.Path))
	}
	cutoff := p.cutoff()
	items := p.Objects
	for len(items) > 0 {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if p.opts.MaxFreed > 0 && res.Freed >= p.opts.MaxFreed {
			res.StoppedAt = true
			break
		}
		// Roots written since planning: drop what they reach before touching it, then check
		// again after unregistering (a root written in between is caught by the second scan).
		preRoots, preLeased, err := s.gcRoots(nil)
		if err != nil {
			return res, fmt.Errorf("gc: %w", err)
		}
		preLive := s.mark(preRoots, p.metas)
		var batch []savedMeta
		planned := res.Freed
		for len(items) > 0 && len(batch) < gcBatch {
			if p.opts.MaxFreed > 0 && planned >= p.opts.MaxFreed {
				break
			}
			it := items[0]
			items = items[1:]
			path, err := ParsePath(it.Path)
			if err != nil {
				continue
			}
			if preLive[path] || preLeased[path.Digest()] {
				res.Kept = append(res.Kept, path)
				continue
			}
			sm, ok := s.unregister(path, cutoff)
			if !ok {
				continue
			}
			sm.size = it.Size
			planned += it.Size
			batch = append(batch, sm)
		}
		if len(batch) == 0 {
			continue
		}
		roots, leased, err := s.gcRoots(nil)
		if err != nil {
			s.restore(batch)
			return res, fmt.Errorf("gc: %w", err)
		}
		for _, sm := range batch {
			if leased[sm.path.Digest()] {
				roots = append(roots, sm.path)
			}
		}
		live := s.mark(roots, p.metas)
		for _, sm := range batch {
			if live[sm.path] {
				s.restore([]savedMeta{sm})
				res.Kept = append(res.Kept, sm.path)
				continue
			}
			if err := s.trash(s.Abs(sm.path)); err != nil {
				return res, fmt.Errorf("gc: %w", err)
			}
			res.Freed += sm.size
			res.Deleted = append(res.Deleted, GCItem{Path: sm.path.String(), Kind: "object", Size: sm.size})
		}
	}
	if res.StoppedAt {
		return res, nil
	}
	leases, err := s.liveLeases()
	if err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	leased := map[Digest]bool{}
	for _, l := range leases {
		if d, err := ParseDigest(l.name); err == nil {
			leased[d] = true
		}
	}
	for _, d := range p.Debris {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		full := filepath.Join(s.root, d.Path)
		if d.Kind == "debris" {
			path, _ := ParsePath(d.Path)
			if _, err := os.Lstat(s.metaFile(path.Digest())); err == nil || leased[path.Digest()] {
				continue // registered meanwhile (or metadata we cannot read: not ours to judge)
			}
			full = s.Abs(path)
		}
		if d.Kind == "stage" && len(filepath.Base(full)) > DigestLen {
			if dg, err := ParseDigest(filepath.Base(full)[:DigestLen]); err == nil && leased[dg] {
				continue
			}
		}
		if d.Kind == "trash" {
			// Another process may be removing its own trash at the same moment.
			if err := removeAll(full); err != nil {
				continue
			}
		} else if err := s.trash(full); err != nil {
			return res, fmt.Errorf("gc: %w", err)
		}
		res.Freed += d.Size
		res.Deleted = append(res.Deleted, d)
	}
	s.sweepLeftovers(cutoff, leased)
	return res, nil
}

// newFileStale judges a .locks/<name>.new-<rand> file left by createExclusive. It holds the
// record of the process that wrote it: written on this host by a process that no longer
// runs, it is stale at once; otherwise (another host, an unreadable record, or a pid that runs,
// maybe reused) once it is older than a lease's lifetime plus the clock skew, since its
// writer links and removes it within moments. Removing one a live process is about to link
// makes only that process's lease attempt fail with an error; it never breaks a lease.
func (s *Store) newFileStale(file string) bool {
	fi, err := os.Lstat(file)
	if err != nil {
		return false
	}
	if rec, err := readLeaseFile(file); err == nil && rec.Host == s.host && rec.PID > 0 && !processAlive(rec.PID) {
		return true
	}
	return s.now().After(fi.ModTime().Add(s.leaseTTL + s.skew)) // written once: its mtime is its age
}

// unregister re-checks an object planned for deletion and removes its metadata (and file
// listing), returning their bytes so they can be put back.
func (s *Store) unregister(p Path, cutoff time.Time) (savedMeta, bool) {
	sm := savedMeta{path: p}
	b, err := os.ReadFile(s.metaFile(p.Digest()))
	if err != nil {
		return sm, false
	}
	var m Meta
	if json.Unmarshal(b, &m) != nil || m.Path != p || m.CreatedAt.After(cutoff) {
		return sm, false
	}
	sm.meta = b
	sm.files, _ = os.ReadFile(s.filesFile(p.Digest()))
	if err := os.Remove(s.metaFile(p.Digest())); err != nil {
		return sm, false
	}
	os.Remove(s.filesFile(p.Digest()))
	return sm, true
}

// restore puts back metadata removed by unregister: files listing first, metadata last.
func (s *Store) restore(batch []savedMeta) {
	for _, sm := range batch {
		if sm.files != nil {
			atomicfile.WriteFile(s.filesFile(sm.path.Digest()), sm.files, 0o444)
		}
		atomicfile.WriteFile(s.metaFile(sm.path.Digest()), sm.meta, 0o444)
	}
}

// sweepLeftovers removes what crashes leave beside the objects: stale temporary roots,
// lease tombstones and temporary files in .meta, .locks and builds older than cutoff, and
// file listings whose metadata is gone.
func (s *Store) sweepLeftovers(cutoff time.Time, leased map[Digest]bool) {
	// Temporary files may belong to a write in progress: besides the grace window they must
	// be older than a lease's lifetime.
	if c := s.now().Add(-s.leaseTTL - s.skew); c.Before(cutoff) {
		cutoff = c
	}
	old := func(full string) bool {
		fi, err := os.Lstat(full)
		return err == nil && changedAt(fi).Before(cutoff)
	}
	if ents, err := os.ReadDir(s.rootsDir()); err == nil {
		for _, e := range ents {
			full := filepath.Join(s.rootsDir(), e.Name())
			if strings.HasPrefix(e.Name(), ".") {
				if old(full) {
					os.Remove(full)
				}
				continue
			}
			b, err := os.ReadFile(full)
			var r tempRootRecord
			if err == nil && json.Unmarshal(b, &r) == nil {
				if s.stale(r.Host, r.PID, r.Expires) {
					os.Remove(full)
				}
			} else if old(full) {
				os.Remove(full)
			}
		}
	}
	for _, dir := range []string{s.metaDir(), s.locksDir(), s.buildsDir, s.generationsDir()} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			name, full := e.Name(), filepath.Join(dir, e.Name())
			switch {
			case strings.HasPrefix(name, ".tmp-") || strings.Contains(name, ".lease.broken-") || strings.HasSuffix(name, ".lease.break"):
				if old(full) {
					os.Remove(full)
				}
			case dir == s.locksDir() && strings.Contains(name, ".new-"):
				// createExclusive's record, written before it is linked to the lease name and
				// removed right after: one left behind belongs to a process killed in between.
				if s.newFileStale(full) {
					os.Remove(full)
				}
			case dir == s.metaDir() && strings.HasSuffix(name, ".files"):
				if d, err := ParseDigest(strings.TrimSuffix(name, ".files")); err == nil && leased[d] {
					continue
				}
				if _, err := os.Stat(strings.TrimSuffix(full, ".files") + ".json"); errors.Is(err, fs.ErrNotExist) && old(full) {
					os.Remove(full)
				}
			}
		}
	}
}
