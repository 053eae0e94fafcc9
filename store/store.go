package store

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/runpod-comfy/runpod-comfy/internal/atomicfile"
	"github.com/runpod-comfy/runpod-comfy/internal/layout"
)

// ErrNotValid is wrapped by errors about an object that has no metadata (not registered), or
// whose metadata cannot be read (then ErrCorruptMeta is wrapped too).
var ErrNotValid = errors.New("not a valid store object")

// ErrCorruptMeta is wrapped, beside ErrNotValid, by errors about a metadata file that exists
// but cannot be used: truncated, not JSON, naming another object, or unreadable.
var ErrCorruptMeta = errors.New("corrupt metadata")

// MetaError is a metadata file that exists but cannot be used. The object it describes is not
// valid: a build that needs it makes it again (the new metadata replaces the bad file); verify
// reports it as "corrupt-metadata"; gc keeps the object, since it cannot judge it.
type MetaError struct {
	Digest Digest
	// Name is the store entry "<digest>-<name>" with this digest when there is one (filled
	// by the listings of verify and gc), else "".
	Name string
	File string
	Err  error
}

func (e *MetaError) Error() string {
	return fmt.Sprintf("metadata %s cannot be read: %v", e.File, e.Err)
}

// Unwrap returns ErrCorruptMeta, ErrNotValid and the cause.
func (e *MetaError) Unwrap() []error { return []error{ErrCorruptMeta, ErrNotValid, e.Err} }

// What returns the store entry name, else the digest.
func (e *MetaError) What() string {
	if e.Name != "" {
		return e.Name
	}
	return e.Digest.String()
}

// Store is a content-addressed store under ROOT/store, with runtime roots under ROOT/builds.
// It is safe for concurrent use by goroutines and by processes on several hosts sharing the
// volume.
type Store struct {
	root      string // ROOT
	dir       string // ROOT/store
	buildsDir string // ROOT/builds
	host      string
	pid       int
	leaseTTL  time.Duration
	skew      time.Duration
	poll      time.Duration
	now       func() time.Time
}

// Option configures a Store opened by Open.
type Option func(*Store)

// WithLeaseTTL sets how long a lease or temporary root lives without renewal (default 2
// minutes). Holders renew every third of it.
func WithLeaseTTL(d time.Duration) Option { return func(s *Store) { s.leaseTTL = d } }

// WithClockSkew sets the margin added to an expiry before a lease from another host counts as
// stale (default 30 seconds): clocks of different hosts differ.
func WithClockSkew(d time.Duration) Option { return func(s *Store) { s.skew = d } }

// WithPollInterval sets how often a waiter checks for another holder's result (default 250ms).
func WithPollInterval(d time.Duration) Option { return func(s *Store) { s.poll = d } }

// WithHost sets the host name written into leases and temporary roots (default os.Hostname).
func WithHost(h string) Option { return func(s *Store) { s.host = h } }

// Open opens (creating when missing) the store under root (ROOT): ROOT/store with its .meta,
// .locks, .roots, .trash and .tmp directories, and ROOT/builds with .generations.
func Open(root string, opts ...Option) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("opening store: %w", err)
	}
	s := &Store{
		root:      abs,
		dir:       layout.New(abs).Store(),
		buildsDir: layout.New(abs).Builds(),
		pid:       os.Getpid(),
		leaseTTL:  2 * time.Minute,
		skew:      30 * time.Second,
		poll:      250 * time.Millisecond,
		now:       time.Now,
	}
	s.host, _ = os.Hostname()
	for _, o := range opts {
		o(s)
	}
	if s.host == "" {
		s.host = "localhost"
	}
	for _, d := range []string{s.dir, s.metaDir(), s.locksDir(), s.rootsDir(), s.trashDir(), s.tmpDir(), s.buildsDir, s.generationsDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("opening store: %w", err)
		}
	}
	return s, nil
}

// Root returns ROOT.
func (s *Store) Root() string { return s.root }

// Dir returns the store directory, ROOT/store.
func (s *Store) Dir() string { return s.dir }

// BuildsDir returns ROOT/builds, where the runtime roots live.
func (s *Store) BuildsDir() string { return s.buildsDir }

// Abs returns the absolute path of an object: ROOT/store/<digest>-<name>.
func (s *Store) Abs(p Path) string { return filepath.Join(s.dir, p.String()) }

func (s *Store) metaDir() string        { return filepath.Join(s.dir, ".meta") }
func (s *Store) locksDir() string       { return filepath.Join(s.dir, ".locks") }
func (s *Store) rootsDir() string       { return filepath.Join(s.dir, ".roots") }
func (s *Store) trashDir() string       { return filepath.Join(s.dir, ".trash") }
func (s *Store) tmpDir() string         { return filepath.Join(s.dir, ".tmp") }
func (s *Store) generationsDir() string { return layout.New(s.root).Generations() }

func (s *Store) metaFile(d Digest) string  { return filepath.Join(s.metaDir(), d.String()+".json") }
func (s *Store) filesFile(d Digest) string { return filepath.Join(s.metaDir(), d.String()+".files") }

// Meta is an object's metadata, stored as ROOT/store/.meta/<digest>.json: a superset of a
// narinfo in JSON. Writing it is the commit point of adding an object.
type Meta struct {
	Path       Path            `json:"path"`
	NarHash    string          `json:"nar_hash"` // "sha256:<nix32>"
	NarSize    int64           `json:"nar_size"`
	References []Path          `json:"references"` // sorted by base name
	Kind       string          `json:"kind"`
	Derivation json.RawMessage `json:"derivation,omitempty"`
	CA         string          `json:"ca,omitempty"`
	Source     string          `json:"source"` // "built" or "substituted:<cache url>"
	CreatedAt  time.Time       `json:"created_at"`
}

// Meta returns the metadata of p. Without metadata the object is not valid and the error
// wraps ErrNotValid.
func (s *Store) Meta(p Path) (*Meta, error) {
	m, err := s.readMeta(p.Digest())
	if err != nil {
		return nil, err
	}
	if m.Path != p {
		return nil, fmt.Errorf("metadata %s names %s, not %s: %w", s.metaFile(p.Digest()), m.Path, p, ErrNotValid)
	}
	return m, nil
}

// readSmall reads a small file with raw syscalls: os.ReadFile also fstats and registers the
// descriptor with the poller, which doubles the system calls when GC reads 10,000 of them.
func readSmall(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 2048)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// readMeta reads the metadata of digest d. A missing file wraps ErrNotValid; a file that
// exists but cannot be used is a *MetaError (wrapping ErrCorruptMeta and ErrNotValid).
func (s *Store) readMeta(d Digest) (*Meta, error) {
	file := s.metaFile(d)
	b, err := readSmall(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", d, ErrNotValid)
		}
		return nil, &MetaError{Digest: d, File: file, Err: err}
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, &MetaError{Digest: d, File: file, Err: err}
	}
	switch {
	case m.Path.IsZero():
		return nil, &MetaError{Digest: d, File: file, Err: errors.New("no path")}
	case m.Path.Digest() != d:
		return nil, &MetaError{Digest: d, File: file, Err: fmt.Errorf("path %s has another digest", m.Path)}
	case !validNarHash(m.NarHash):
		return nil, &MetaError{Digest: d, File: file, Err: fmt.Errorf("nar_hash %q is not sha256:<nix32>", m.NarHash)}
	}
	return &m, nil
}

// validNarHash reports whether h is "sha256:" and 52 nix32 characters.
func validNarHash(h string) bool {
	v, ok := strings.CutPrefix(h, "sha256:")
	if !ok {
		return false
	}
	_, err := ParseNix32(v, 32)
	return err == nil
}

// Valid reports whether p is a registered object (its metadata exists).
func (s *Store) Valid(p Path) bool {
	_, err := s.Meta(p)
	return err == nil
}

func (s *Store) writeMeta(m *Meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.metaFile(m.Path.Digest()), append(b, '\n'), 0o444)
}

// metaReaders is how many metadata files allMeta reads at once: on a network volume each
// read is a round trip, so reading in parallel matters more than CPU count.
const metaReaders = 16

// allMeta reads every metadata file, in parallel. A file that cannot be used does not stop
// it: it is returned in bad (sorted by digest) and its object is left out of metas.
func (s *Store) allMeta() (metas map[Path]*Meta, bad []*MetaError, err error) {
	ents, err := os.ReadDir(s.metaDir())
	if err != nil {
		return nil, nil, fmt.Errorf("listing metadata: %w", err)
	}
	var digests []Digest
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".json") {
			continue
		}
		if d, err := ParseDigest(strings.TrimSuffix(name, ".json")); err == nil {
			digests = append(digests, d)
		}
	}
	all := make([]*Meta, len(digests))
	errs := make([]error, len(digests))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < metaReaders && w < len(digests); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				all[i], errs[i] = s.readMeta(digests[i])
			}
		}()
	}
	for i := range digests {
		next <- i
	}
	close(next)
	wg.Wait()
	out := make(map[Path]*Meta, len(digests))
	for i, m := range all {
		if err := errs[i]; err != nil {
			var me *MetaError
			if errors.As(err, &me) {
				bad = append(bad, me)
			}
			continue // a *MetaError, or removed meanwhile
		}
		out[m.Path] = m
	}
	sort.Slice(bad, func(i, j int) bool { return bad[i].Digest.String() < bad[j].Digest.String() })
	return out, bad, nil
}

// nameBad fills the Name of each bad metadata entry from the store listing ents.
func nameBad(bad []*MetaError, ents []os.DirEntry) {
	if len(bad) == 0 {
		return
	}
	byDigest := map[Digest]*MetaError{}
	for _, b := range bad {
		byDigest[b.Digest] = b
	}
	for _, e := range ents {
		if p, err := ParsePath(e.Name()); err == nil {
			if b := byDigest[p.Digest()]; b != nil {
				b.Name = p.String()
			}
		}
	}
}

// List returns every valid object, sorted by name then digest, and every metadata file that
// cannot be read (its object is not listed: it is not valid).
func (s *Store) List() ([]*Meta, []*MetaError, error) {
	all, bad, err := s.allMeta()
	if err != nil {
		return nil, nil, err
	}
	if len(bad) > 0 {
		if ents, err := os.ReadDir(s.dir); err == nil {
			nameBad(bad, ents)
		}
	}
	out := make([]*Meta, 0, len(all))
	for _, m := range all {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path.Name() != out[j].Path.Name() {
			return out[i].Path.Name() < out[j].Path.Name()
		}
		return out[i].Path.String() < out[j].Path.String()
	})
	return out, bad, nil
}

// Closure returns paths and everything they reference, transitively, sorted. Every object
// must be valid.
func (s *Store) Closure(paths ...Path) ([]Path, error) {
	seen := map[Path]bool{}
	queue := append([]Path(nil), paths...)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		m, err := s.Meta(p)
		if err != nil {
			return nil, fmt.Errorf("closure of %s: %w", p, err)
		}
		queue = append(queue, m.References...)
	}
	out := make([]Path, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sortPaths(out)
	return out, nil
}

// sortPaths sorts by the base name string, encoding each digest once.
func sortPaths(ps []Path) {
	if len(ps) < 2 {
		return
	}
	type keyed struct {
		key string
		p   Path
	}
	ks := make([]keyed, len(ps))
	for i, p := range ps {
		ks[i] = keyed{p.String(), p}
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].key < ks[j].key })
	for i := range ks {
		ps[i] = ks[i].p
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// trash moves path into .trash and deletes it there. Once renamed, the object is gone from the
// store even if the deletion is interrupted; GC empties .trash later.
func (s *Store) trash(path string) error {
	dst := filepath.Join(s.trashDir(), filepath.Base(path)+"-"+randHex(6))
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		os.Chmod(path, 0o755) // moving a directory to another parent rewrites its ".."
	}
	if err := os.Rename(path, dst); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("moving %s to trash: %w", path, err)
	}
	return removeAll(dst)
}

// removeAll removes a read-only tree, making directories writable first (chmod u+w) as
// Nix's own delete does.
func removeAll(path string) error {
	err := os.RemoveAll(path)
	if err == nil {
		return nil
	}
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		} else if err != nil && d == nil {
			return nil
		}
		return nil
	})
	// WalkDir cannot descend into unreadable (0555 is readable) or unwritable dirs before the
	// chmod of their parent; the loop above walks top-down, so parents are chmodded first.
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// processAlive reports whether pid runs on this host.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
