package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/runpod-comfy/runpod-comfy/internal/atomicfile"
	"github.com/runpod-comfy/runpod-comfy/internal/rawfile"
	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

// AddOptions describe an object for Add and AddKnown.
type AddOptions struct {
	// Kind names the builder kind ("git", "model", "python", "venv", "root", ...).
	Kind string
	// References are the objects this one refers to (symlinks into them, paths in files).
	// Each must be valid; GC keeps them while the object lives.
	References []Path
	// Derivation is a JSON summary of how the object was made, recorded in the metadata.
	Derivation json.RawMessage
	// CA is the content address for fixed objects, e.g. "fixed:sha256:<nix32>" (flat) or
	// "fixed:r:sha256:<nix32>" (NAR).
	CA string
	// ExpectNarHash, when set ("sha256:<nix32>"), must equal the NAR hash of what the MakeFunc made;
	// otherwise nothing is registered.
	ExpectNarHash string
	// Source is "built" (the default) or "substituted:<cache url>".
	Source string
	// Fingerprint, when set, is the object's fingerprint, checked before anything is
	// registered: it must hash to p's digest and, for a fixed fingerprint (a content-addressed
	// file), the object must be a single regular file whose content has the hash it names
	// (a *ContentAddressError otherwise). A binary cache sets it for what it substitutes; a
	// builder that checks the content while making it need not.
	Fingerprint string
	// AtFinalPath makes the MakeFunc write at the object's final path (for objects that must know
	// where they live, such as a venv) under the lease, instead of in a staging directory.
	AtFinalPath bool
	// Waiting, when set, is called once if another process holds the lease and Add waits
	// for its result (for a progress line such as "waiting for host X pid N").
	Waiting func(holder LeaseRecord)
	// KeepHardLink keeps a single-file output that the MakeFunc hard-linked to a file outside the
	// store (a model adopted from a directory the user filled) instead of copying it to
	// break the link: the bytes are shared and the user's file is left as it is (its mode and
	// mtime are not canonicalised). An executable file is canonicalised (copied) as usual.
	KeepHardLink bool
	// LinksFromReferences keeps the hard links build made from files of the references (a
	// venv linking its packages' files), so those bytes are stored once: a regular file with
	// more than one link is kept when it is the same inode as the file at the same relative
	// path in one of References and already canonical (mode 0444 or 0555, mtime 1). Any other
	// hard link is broken (copied) as usual.
	LinksFromReferences bool
}

// NarHashMismatchError is an object whose NAR hash, as made by its MakeFunc, differs from
// AddOptions.ExpectNarHash. Nothing was registered.
type NarHashMismatchError struct {
	Path          Path
	Expected, Got string
}

func (e *NarHashMismatchError) Error() string {
	return fmt.Sprintf("building %s: NAR hash mismatch: expected %s, got %s", e.Path, e.Expected, e.Got)
}

// MakeFunc makes an object's content at out, a path that does not exist yet: a regular
// file, a symlink or a directory tree. It may leave any modes and times: the store
// canonicalises. A builder's output, a NAR restored from a binary cache or a linked model are
// all made by a MakeFunc.
type MakeFunc func(ctx context.Context, out string) error

// KnownNar is the NAR hash ("sha256:<nix32>") and size of an object that its MakeKnownFunc
// computed while writing it: a model hashed during its download (nar.FileHasher),
// or linked from another store whose metadata holds it. The zero KnownNar means unknown.
type KnownNar struct {
	Hash string
	Size int64
}

// MakeKnownFunc is a MakeFunc that also returns what it knows of the NAR it made.
type MakeKnownFunc func(ctx context.Context, out string) (KnownNar, error)

// Add makes p valid exactly once across processes and hosts: it is how every object enters
// the store. If p is valid it returns its metadata. Otherwise it takes the lease
// .locks/<digest>.lease (or waits until another holder's result appears or its lease goes
// stale), calls mk with the path to create (a fresh staging path
// under .tmp, or the final path when opts.AtFinalPath), canonicalises, hashes, checks
// opts.ExpectNarHash, fsyncs, renames into place and writes the metadata last, the commit
// point. On any error nothing is registered.
//
// A binary cache registers a substituted object with a MakeFunc that restores a NAR into
// out (nar.Restore), ExpectNarHash set to the narinfo's NarHash and Source
// "substituted:<url>".
func (s *Store) Add(ctx context.Context, p Path, opts AddOptions, mk MakeFunc) (*Meta, error) {
	return s.AddKnown(ctx, p, opts, func(ctx context.Context, out string) (KnownNar, error) {
		return KnownNar{}, mk(ctx, out)
	})
}

// AddKnown is Add with a MakeKnownFunc, which may return the NAR hash of what it made. When
// the object is a single non-executable regular file of the returned size, and p is not
// content-addressed (that check reads the file anyway), the store registers the returned hash
// instead of reading the file a second time.
func (s *Store) AddKnown(ctx context.Context, p Path, opts AddOptions, mk MakeKnownFunc) (*Meta, error) {
	if p.IsZero() {
		return nil, errors.New("build: empty store path")
	}
	refs := make([]Path, 0, len(opts.References))
	for _, r := range opts.References {
		if r != p && !s.Valid(r) {
			return nil, fmt.Errorf("building %s: reference %s is not a valid store object", p, r)
		}
		refs = append(refs, r)
	}
	sortPaths(refs)
	refs = slices.Compact(refs)
	waited := false
	for {
		if m, err := s.Meta(p); err == nil {
			return m, nil
		} else if !errors.Is(err, ErrNotValid) {
			return nil, err
		}
		l, holder, err := s.tryLease(p.Digest().String(), p, refs)
		if err == nil {
			m, err := s.addLeased(ctx, l, p, opts, refs, mk)
			l.Release()
			if errors.Is(err, ErrLeaseLost) && ctx.Err() == nil {
				continue // another process took over the object: wait for its result
			}
			return m, err
		}
		if !errors.Is(err, errLeaseHeld) {
			return nil, fmt.Errorf("building %s: %w", p, err)
		}
		if !waited && opts.Waiting != nil && holder != nil {
			opts.Waiting(*holder)
		}
		waited = true
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("building %s: waiting for another builder: %w", p, ctx.Err())
		case <-time.After(s.poll):
		}
	}
}

func (s *Store) addLeased(ctx context.Context, l *Lease, p Path, opts AddOptions, refs []Path, mk MakeKnownFunc) (_ *Meta, err error) {
	if m, err := s.Meta(p); err == nil {
		return m, nil // finished by the previous holder after we looked
	}
	final := s.Abs(p)
	var out string
	if opts.AtFinalPath {
		if err := s.trash(final); err != nil { // debris of a crashed build: no metadata
			return nil, fmt.Errorf("building %s: %w", p, err)
		}
		out = final
		defer func() {
			if err != nil {
				s.trash(final)
			}
		}()
	} else {
		stage, err := os.MkdirTemp(s.tmpDir(), p.Digest().String()+"-")
		if err != nil {
			return nil, fmt.Errorf("building %s: staging: %w", p, err)
		}
		defer removeAll(stage)
		out = filepath.Join(stage, p.Name())
	}
	known, err := mk(ctx, out)
	if err != nil {
		return nil, fmt.Errorf("building %s: %w", p, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("building %s: %w", p, err)
	}
	if _, err := os.Lstat(out); err != nil {
		return nil, fmt.Errorf("building %s: the builder made nothing: %w", p, err)
	}
	canon := s.canonicalise
	if opts.KeepHardLink {
		canon = s.canonicaliseKeepLink
	}
	if opts.LinksFromReferences {
		lr := &linkRefs{}
		for _, r := range opts.References {
			if r != p {
				lr.dirs = append(lr.dirs, s.Abs(r))
			}
		}
		canon = func(root, base string) error { return s.canon(root, base, lr) }
	}
	if err := canon(out, p.String()); err != nil {
		return nil, fmt.Errorf("building %s: %w", p, err)
	}
	var (
		narHash string
		narSize int64
		files   []nar.File
	)
	if addr, fixed, err := parseFixed(p, opts.Fingerprint); err != nil {
		return nil, fmt.Errorf("building %s: %w", p, err)
	} else if fixed {
		narHash, narSize, files, err = hashAddressed(ctx, p, out, addr)
		var ce *ContentAddressError
		if errors.As(err, &ce) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("building %s: hashing: %w", p, err)
		}
	} else {
		if opts.Fingerprint != "" && DigestOf(opts.Fingerprint) != p.Digest() {
			return nil, fmt.Errorf("building %s: fingerprint %q is not this path's", p, opts.Fingerprint)
		}
		narHash, narSize, files, err = hashBuilt(out, known)
		if err != nil {
			return nil, fmt.Errorf("building %s: hashing: %w", p, err)
		}
	}
	if opts.ExpectNarHash != "" && opts.ExpectNarHash != narHash {
		return nil, &NarHashMismatchError{Path: p, Expected: opts.ExpectNarHash, Got: narHash}
	}
	if err := syncObject(out); err != nil {
		return nil, fmt.Errorf("building %s: %w", p, err)
	}
	if !opts.AtFinalPath {
		if _, err := os.Lstat(final); err == nil {
			if m, err := s.Meta(p); err == nil {
				return m, nil // registered by a holder that broke our lease: same object
			}
			if err := s.trash(final); err != nil {
				return nil, fmt.Errorf("building %s: %w", p, err)
			}
		}
		if err := os.Rename(out, final); err != nil {
			return nil, fmt.Errorf("building %s: moving into place: %w", p, err)
		}
	}
	if err := atomicfile.SyncDir(s.dir); err != nil {
		return nil, fmt.Errorf("building %s: %w", p, err)
	}
	if err := l.Check(); err != nil {
		return nil, fmt.Errorf("building %s: %w", p, err)
	}
	for _, r := range refs {
		if r == p {
			continue
		}
		if !s.Valid(r) {
			return nil, fmt.Errorf("building %s: reference %s is no longer valid", p, r)
		}
	}
	// An object made of its references' files keeps no listing of its own (for a venv it
	// would cost ~150 bytes per file of every package, each version again): verify names a
	// changed file in the reference that holds it.
	if files != nil && !opts.LinksFromReferences {
		if err := s.writeFiles(p.Digest(), files); err != nil {
			return nil, fmt.Errorf("building %s: %w", p, err)
		}
	}
	src := opts.Source
	if src == "" {
		src = "built"
	}
	m := &Meta{Path: p, NarHash: narHash, NarSize: narSize, References: refs, Kind: opts.Kind,
		Derivation: opts.Derivation, CA: opts.CA, Source: src, CreatedAt: s.now().UTC().Truncate(time.Millisecond)}
	if err := s.writeMeta(m); err != nil {
		return nil, fmt.Errorf("building %s: registering: %w", p, err)
	}
	return m, nil
}

// hashBuilt is hashObject, unless the MakeKnownFunc returned the NAR hash of what it made, a
// single non-executable regular file of the matching NAR size.
func hashBuilt(out string, known KnownNar) (string, int64, []nar.File, error) {
	if known.Hash != "" {
		fi, err := os.Lstat(out)
		if err == nil && fi.Mode().IsRegular() && fi.Mode()&0o100 == 0 && nar.FileNarSize(fi.Size(), false) == known.Size {
			return known.Hash, known.Size, nil, nil
		}
	}
	return hashObject(out)
}

// hashObject returns the NAR hash and size of an object and, for a directory, its file
// listing (a single file is named by the object itself).
func hashObject(path string) (string, int64, []nar.File, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return "", 0, nil, err
	}
	if !fi.IsDir() {
		h, n, err := nar.Hash(path)
		return h, n, nil, err
	}
	return nar.HashFiles(path)
}

// writeFiles stores the per-file listing of a directory object beside its metadata, one JSON
// object per line, so that verify can name the file whose bytes changed.
func (s *Store) writeFiles(d Digest, files []nar.File) error {
	var b []byte
	for _, f := range files {
		line, err := json.Marshal(f)
		if err != nil {
			return err
		}
		b = append(append(b, line...), '\n')
	}
	return atomicfile.WriteFile(s.filesFile(d), b, 0o444)
}

func (s *Store) readFiles(d Digest) ([]nar.File, error) {
	b, err := os.ReadFile(s.filesFile(d))
	if err != nil {
		return nil, err
	}
	var out []nar.File
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var f nar.File
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			return nil, fmt.Errorf("reading %s: %w", s.filesFile(d), err)
		}
		out = append(out, f)
	}
	return out, nil
}

var epochOne = []unix.Timespec{{Sec: 1}, {Sec: 1}}

// canonicalise applies the store's canonical form (docs/design.md section 4) to the tree at root, which will live at
// ROOT/store/<base>: mtime 1, modes 0444/0555, no setuid/setgid/sticky, no xattrs, hard links
// broken, only regular files, directories and symlinks; symlinks must not point into the
// store by an absolute path nor leave the store by a relative one.
func (s *Store) canonicalise(root, base string) error {
	return s.canon(root, base, nil)
}

// linkRefs are the referenced objects whose files an object may share by hard links
// (AddOptions.LinksFromReferences).
type linkRefs struct {
	dirs []string
	last int // the directory that matched last: files of one package come together
}

// shared reports whether fi (at rel inside the object) is the file at rel inside one of the
// referenced objects, already in canonical form.
func (lr *linkRefs) shared(rel string, fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || lr == nil || len(lr.dirs) == 0 {
		return false
	}
	if m := fi.Mode(); m&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0o444 && m&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0o555 {
		return false
	}
	if st.Mtim.Sec != 1 || st.Mtim.Nsec != 0 {
		return false
	}
	for i := range lr.dirs {
		j := (lr.last + i) % len(lr.dirs)
		var ref unix.Stat_t
		if err := unix.Lstat(filepath.Join(lr.dirs[j], rel), &ref); err != nil {
			continue
		}
		if uint64(ref.Dev) == uint64(st.Dev) && ref.Ino == st.Ino {
			lr.last = j
			return true
		}
	}
	return false
}

// canonicaliseKeepLink is canonicalise for a single regular file kept hard-linked to a file
// outside the store (AddOptions.KeepHardLink): that file belongs to the user and is left
// exactly as it is (mode, mtime, xattrs), as long as it is not executable (the NAR would
// differ from the same bytes downloaded); anything else is canonicalised as usual.
func (s *Store) canonicaliseKeepLink(root, base string) error {
	fi, err := os.Lstat(root)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 != 0 {
		return s.canon(root, base, nil)
	}
	return nil
}

func (s *Store) canon(p, rel string, lr *linkRefs) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	switch m := fi.Mode(); {
	case m&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		if err := s.checkLink(rel, target); err != nil {
			return err
		}
	case m.IsRegular():
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			if _, inner, _ := strings.Cut(rel, "/"); lr != nil && inner != "" && lr.shared(inner, fi) {
				return nil // a file of a referenced object, shared as it is
			}
			if err := breakLink(p, m.Perm()); err != nil {
				return fmt.Errorf("breaking hard link %s: %w", p, err)
			}
		}
		mode := os.FileMode(0o444)
		if m&0o100 != 0 {
			mode = 0o555
		}
		if m&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != mode {
			if err := os.Chmod(p, mode); err != nil {
				return err
			}
		}
	case m.IsDir():
		if m.Perm()&0o700 != 0o700 {
			if err := os.Chmod(p, 0o755); err != nil {
				return err
			}
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := s.canon(filepath.Join(p, e.Name()), rel+"/"+e.Name(), lr); err != nil {
				return err
			}
		}
		if err := os.Chmod(p, 0o555); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%s: unsupported file type %s (only regular files, directories and symlinks)", rel, m.Type())
	}
	removeXattrs(p)
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, epochOne, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting mtime of %s: %w", p, err)
	}
	return nil
}

// checkLink enforces relocatability for a symlink at ROOT/store/<rel>: an absolute target
// into the store, or a relative one that leaves the store, is rejected. Absolute targets
// outside the store (a base interpreter such as /usr/bin/python3) are allowed.
func (s *Store) checkLink(rel, target string) error {
	if filepath.IsAbs(target) {
		for _, dir := range s.storeDirs() {
			if target == dir || strings.HasPrefix(target, dir+"/") {
				return fmt.Errorf("symlink %s -> %s: absolute symlink into the store (the store is relocatable: use a relative target)", rel, target)
			}
		}
		return nil
	}
	resolved := path.Join(path.Dir(rel), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return fmt.Errorf("symlink %s -> %s: relative target leaves the store", rel, target)
	}
	return nil
}

// storeDirs returns the store directory as given and with symlinks resolved.
func (s *Store) storeDirs() []string {
	out := []string{s.dir}
	if r, err := filepath.EvalSymlinks(s.dir); err == nil && r != s.dir {
		out = append(out, r)
	}
	return out
}

// breakLink replaces the hard-linked file p by a copy of its own (the other links keep the
// original inode).
func breakLink(p string, perm fs.FileMode) error {
	tmp := p + ".canon-" + randHex(4)
	if err := rawfile.CopyFile(tmp, p, uint32(perm|0o200)); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func removeXattrs(p string) {
	buf := make([]byte, 1024)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n <= 0 {
		return
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name != "" {
			unix.Lremovexattr(p, name)
		}
	}
}

// syncObject makes the object at out (its files, directories and symlinks) durable before it
// is renamed into place. On a local filesystem whose syncfs(2) writes back and commits every
// inode (ext4, XFS, btrfs, tmpfs) one syncfs of the filesystem holding out does that in one
// system call, with the same guarantee as an fsync of each file and directory (Linux 5.8 and
// later report writeback errors from syncfs too). Anywhere else (a network or FUSE
// filesystem, where syncfs may not reach the server) and when syncfs fails, it fsyncs every
// file and directory (syncTree).
func syncObject(out string) error {
	if syncfs(filepath.Dir(out)) {
		return nil
	}
	return syncTree(out)
}

// Filesystems whose syncfs(2) is as durable as an fsync of each of their files (statfs f_type).
var syncfsTypes = map[int64]bool{
	0xEF53:     true, // ext2/3/4
	0x58465342: true, // XFS
	0x9123683E: true, // btrfs
	0x01021994: true, // tmpfs
}

// syncfs runs syncfs(2) on the filesystem holding dir when that filesystem is one of
// syncfsTypes, and reports whether it did so without error.
func syncfs(dir string) bool {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil || !syncfsTypes[int64(st.Type)] {
		return false
	}
	return unix.Syncfs(fd) == nil
}

// syncTree fsyncs every regular file and directory under root, bottom-up.
func syncTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			dirs = append(dirs, p)
		case d.Type().IsRegular():
			return syncPath(p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("syncing %s: %w", root, err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := atomicfile.SyncDir(dirs[i]); err != nil {
			return err
		}
	}
	return nil
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("syncing %s: %w", p, err)
	}
	return nil
}
