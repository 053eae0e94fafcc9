package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/runpod-comfy/runpod-comfy/internal/atomicfile"
	"github.com/runpod-comfy/runpod-comfy/internal/layout"
)

// ErrNoRoot is wrapped when a version has no root (never built) or no such generation.
var ErrNoRoot = errors.New("no such root")

// RootPrefix is the prefix of every runtime root link under ROOT/builds.
const RootPrefix = layout.RootPrefix

// Generation is one numbered earlier (or current) root of a version:
// ROOT/builds/.generations/comfy-<id>-<n>.
type Generation struct {
	ID      string `json:"id"`
	N       int    `json:"n"`
	Path    Path   `json:"path"`
	Current bool   `json:"current"`
}

// ValidateRootID checks a version id used in a root name: layout.CheckVersionID, the same
// rule specs apply, so a spec that validates never fails at the root.
func ValidateRootID(id string) error {
	if err := layout.CheckVersionID(id); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	return nil
}

// RootLink returns ROOT/builds/comfy-<id>.
func (s *Store) RootLink(id string) string { return layout.New(s.root).RootLink(id) }

func (s *Store) generationLink(id string, n int) string {
	return layout.New(s.root).Generation(id, n)
}

// swapLink points link at target atomically: a temporary symlink renamed over it.
func swapLink(link, target string) error {
	tmp := filepath.Join(filepath.Dir(link), ".tmp-"+filepath.Base(link)+"-"+randHex(6))
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(link))
}

// readRootLink parses a link whose target ends in a store path base name.
func readRootLink(link string) (Path, error) {
	t, err := os.Readlink(link)
	if err != nil {
		return Path{}, err
	}
	p, err := ParsePath(filepath.Base(t))
	if err != nil {
		return Path{}, fmt.Errorf("root %s -> %s: %w", link, t, err)
	}
	return p, nil
}

// SetRoot points ROOT/builds/comfy-<id> at p (which must be valid), atomically, and records
// it as a new generation builds/.generations/comfy-<id>-<n>; earlier generations are kept for
// Rollback. Setting the root to the object it already names makes no new generation. It
// returns the generation number.
func (s *Store) SetRoot(id string, p Path) (int, error) {
	if err := ValidateRootID(id); err != nil {
		return 0, err
	}
	if !s.Valid(p) {
		return 0, fmt.Errorf("setting root of %s: %s: %w", id, p, ErrNotValid)
	}
	gens, err := s.Generations(id)
	if err != nil {
		return 0, err
	}
	for _, g := range gens {
		if g.Current && g.Path == p {
			return g.N, nil
		}
	}
	n := 1
	if len(gens) > 0 {
		n = gens[len(gens)-1].N + 1
	}
	for ; ; n++ {
		err := os.Symlink(filepath.Join("..", "..", "store", p.String()), s.generationLink(id, n))
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return 0, fmt.Errorf("setting root of %s: %w", id, err)
		}
	}
	if err := swapLink(s.RootLink(id), filepath.Join("..", "store", p.String())); err != nil {
		return 0, fmt.Errorf("setting root of %s: %w", id, err)
	}
	return n, nil
}

// RemoveRoot removes ROOT/builds/comfy-<id> and every generation of id
// (builds/.generations/comfy-<id>-<n>), so that GC can collect what only they kept. It
// returns the links it removed; a real directory at builds/comfy-<id> (not a root link) is
// left alone.
func (s *Store) RemoveRoot(id string) ([]string, error) {
	if err := ValidateRootID(id); err != nil {
		return nil, err
	}
	gens, err := s.Generations(id)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var removed []string
	link := s.RootLink(id)
	if fi, err := os.Lstat(link); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if err := os.Remove(link); err != nil {
			return removed, fmt.Errorf("removing root of %s: %w", id, err)
		}
		removed = append(removed, link)
	}
	for _, g := range gens {
		p := s.generationLink(id, g.N)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("removing generation %d of %s: %w", g.N, id, err)
		}
		removed = append(removed, p)
	}
	return removed, nil
}

// RootOf returns the object ROOT/builds/comfy-<id> points at.
func (s *Store) RootOf(id string) (Path, error) {
	if err := ValidateRootID(id); err != nil {
		return Path{}, err
	}
	p, err := readRootLink(s.RootLink(id))
	if errors.Is(err, fs.ErrNotExist) {
		return Path{}, fmt.Errorf("root of %s: %w", id, ErrNoRoot)
	}
	return p, err
}

// Generations lists the generations of a version, oldest first, marking the current one
// (the newest generation naming the object the root points at).
func (s *Store) Generations(id string) ([]Generation, error) {
	if err := ValidateRootID(id); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(s.generationsDir())
	if err != nil {
		return nil, fmt.Errorf("listing generations: %w", err)
	}
	prefix := RootPrefix + id + "-"
	var out []Generation
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		n, err := strconv.Atoi(name[len(prefix):])
		if err != nil || n <= 0 {
			continue
		}
		p, err := readRootLink(filepath.Join(s.generationsDir(), name))
		if err != nil {
			continue
		}
		out = append(out, Generation{ID: id, N: n, Path: p})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].N < out[j].N })
	if cur, err := readRootLink(s.RootLink(id)); err == nil {
		for i := len(out) - 1; i >= 0; i-- {
			if out[i].Path == cur {
				out[i].Current = true
				break
			}
		}
	}
	return out, nil
}

// Rollback points the root of id at generation to, or with to == 0 at the generation before
// the current one. It returns the object the root now names.
func (s *Store) Rollback(id string, to int) (Path, error) {
	gens, err := s.Generations(id)
	if err != nil {
		return Path{}, err
	}
	cur := -1
	for i, g := range gens {
		if g.Current {
			cur = i
		}
	}
	var target *Generation
	if to == 0 {
		if cur <= 0 {
			return Path{}, fmt.Errorf("rolling back %s: no generation before the current one: %w", id, ErrNoRoot)
		}
		target = &gens[cur-1]
	} else {
		for i := range gens {
			if gens[i].N == to {
				target = &gens[i]
			}
		}
		if target == nil {
			return Path{}, fmt.Errorf("rolling back %s: generation %d: %w", id, to, ErrNoRoot)
		}
	}
	if !s.Valid(target.Path) {
		return Path{}, fmt.Errorf("rolling back %s to generation %d: %s: %w", id, target.N, target.Path, ErrNotValid)
	}
	if err := swapLink(s.RootLink(id), filepath.Join("..", "store", target.Path.String())); err != nil {
		return Path{}, fmt.Errorf("rolling back %s: %w", id, err)
	}
	return target.Path, nil
}

// RootIDs lists the versions that have a root under ROOT/builds, sorted.
func (s *Store) RootIDs() ([]string, error) {
	ents, err := os.ReadDir(s.buildsDir)
	if err != nil {
		return nil, fmt.Errorf("listing roots: %w", err)
	}
	var out []string
	for _, e := range ents {
		if name := e.Name(); strings.HasPrefix(name, RootPrefix) && e.Type()&fs.ModeSymlink != 0 {
			out = append(out, strings.TrimPrefix(name, RootPrefix))
		}
	}
	sort.Strings(out)
	return out, nil
}

// TempRoot is a temporary GC root: ROOT/store/.roots/<host>-<pid>-<rand>.json listing the
// objects a running build or worker uses, with an expiry refreshed by a goroutine until
// Close or until the context given to AddTempRoot ends.
type TempRoot struct {
	s       *Store
	file    string
	mu      sync.Mutex // guards rec
	writeMu sync.Mutex // serialises writes of the file
	rec     tempRootRecord
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	err     error
}

type tempRootRecord struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// Paths are base names; a reader parses each on its own, so that one bad entry in a
	// damaged file does not release the others (liveTempRoots).
	Paths []string `json:"paths"`
}

// AddTempRoot writes a temporary root holding paths (which need not be valid yet: a build
// roots its outputs before making them). After rooting an object that already exists, check
// Valid: GC may have removed it just before the root was written, never after.
func (s *Store) AddTempRoot(ctx context.Context, paths []Path) (*TempRoot, error) {
	now := s.now().UTC()
	t := &TempRoot{
		s:    s,
		file: filepath.Join(s.rootsDir(), fmt.Sprintf("%s-%d-%s.json", SanitizeName(s.host), s.pid, randHex(6))),
		rec:  tempRootRecord{Host: s.host, PID: s.pid, Created: now, Expires: now.Add(s.leaseTTL), Paths: []string{}},
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for _, p := range paths {
		t.rec.Paths = append(t.rec.Paths, p.String())
	}
	if err := t.write(); err != nil {
		return nil, err
	}
	go t.refresh(ctx)
	return t, nil
}

// write rewrites the root file. Writes are serialised and each marshals the latest state, so
// a refresh can never put back an older list over a newer one.
func (t *TempRoot) write() error {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	t.mu.Lock()
	b, _ := json.Marshal(t.rec)
	t.mu.Unlock()
	if err := atomicfile.WriteFile(t.file, b, 0o644); err != nil {
		return fmt.Errorf("writing temporary root: %w", err)
	}
	return nil
}

// Add adds paths to the root and rewrites its file.
func (t *TempRoot) Add(paths ...Path) error {
	t.mu.Lock()
	for _, p := range paths {
		t.rec.Paths = append(t.rec.Paths, p.String())
	}
	t.rec.Expires = t.s.now().UTC().Add(t.s.leaseTTL)
	t.mu.Unlock()
	return t.write()
}

// Paths returns the paths the root holds.
func (t *TempRoot) Paths() []Path {
	t.mu.Lock()
	defer t.mu.Unlock()
	return parsePaths(t.rec.Paths)
}

// parsePaths parses base names, leaving out any that is not a store path.
func parsePaths(names []string) []Path {
	out := make([]Path, 0, len(names))
	for _, n := range names {
		if p, err := ParsePath(n); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func (t *TempRoot) refresh(ctx context.Context) {
	defer close(t.done)
	tick := time.NewTicker(t.s.leaseTTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
			t.mu.Lock()
			t.rec.Expires = t.s.now().UTC().Add(t.s.leaseTTL)
			t.mu.Unlock()
			t.write()
		}
	}
}

// Close stops refreshing and removes the root file.
func (t *TempRoot) Close() error {
	t.once.Do(func() {
		close(t.stop)
		<-t.done
		if err := os.Remove(t.file); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.err = fmt.Errorf("removing temporary root: %w", err)
		}
	})
	return t.err
}

// liveTempRoots returns the paths held by every temporary root that is not stale.
func (s *Store) liveTempRoots() ([]Path, error) {
	ents, err := os.ReadDir(s.rootsDir())
	if err != nil {
		return nil, fmt.Errorf("listing temporary roots: %w", err)
	}
	var out []Path
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.rootsDir(), e.Name()))
		if err != nil {
			continue
		}
		var r tempRootRecord
		if json.Unmarshal(b, &r) != nil || s.stale(r.Host, r.PID, r.Expires) {
			continue
		}
		out = append(out, parsePaths(r.Paths)...)
	}
	return out, nil
}
