package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/runpod-comfy/runpod-comfy/internal/filehash"
)

// OptimiseResult reports what Optimise did.
type OptimiseResult struct {
	Objects int   `json:"objects"`
	Files   int   `json:"files"`  // regular files examined
	Linked  int   `json:"linked"` // files replaced by a hard link to an identical one
	Saved   int64 `json:"saved"`  // bytes no longer stored twice
	// Unsupported, when set, says why nothing (more) was linked: the filesystem refuses hard
	// links (EXDEV, ENOTSUP, EPERM, EMLINK).
	Unsupported string `json:"unsupported,omitempty"`
}

// linkUnsupported reports errors meaning "this filesystem will not hard-link here".
func linkUnsupported(err error) bool {
	return errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EPERM) ||
		errors.Is(err, syscall.EMLINK) || errors.Is(err, syscall.EOPNOTSUPP)
}

// Optimise hard-links identical regular files (same content and mode) across valid objects,
// so each is stored once. NAR hashes do not change. It holds the GC lease meanwhile. Where
// the filesystem does not support hard links it does nothing and says so in Unsupported.
func (s *Store) Optimise(ctx context.Context) (*OptimiseResult, error) {
	lease, holder, err := s.tryLease("gc", Path{}, nil)
	if errors.Is(err, errLeaseHeld) {
		return nil, fmt.Errorf("optimise: %w (host %s pid %d)", ErrGCRunning, holder.Host, holder.PID)
	}
	if err != nil {
		return nil, fmt.Errorf("optimise: %w", err)
	}
	defer lease.Release()
	res := &OptimiseResult{}
	if err := s.probeLinks(); err != nil {
		res.Unsupported = fmt.Sprintf("hard links are not supported on %s (%v): nothing done", s.dir, err)
		return res, nil
	}
	metas, _, err := s.allMeta()
	if err != nil {
		return nil, fmt.Errorf("optimise: %w", err)
	}
	type fileKey struct {
		size int64
		mode fs.FileMode
	}
	type file struct {
		path string
		ino  uint64
		dev  uint64
	}
	groups := map[fileKey][]file{}
	var keys []fileKey
	paths := make([]Path, 0, len(metas))
	for p := range metas {
		paths = append(paths, p)
	}
	sortPaths(paths)
	for _, p := range paths {
		res.Objects++
		err := filepath.WalkDir(s.Abs(p), func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			res.Files++
			if fi.Size() == 0 {
				return nil
			}
			st := fi.Sys().(*syscall.Stat_t)
			k := fileKey{fi.Size(), fi.Mode().Perm()}
			if _, ok := groups[k]; !ok {
				keys = append(keys, k)
			}
			groups[k] = append(groups[k], file{path: path, ino: st.Ino, dev: uint64(st.Dev)})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("optimise: %w", err)
		}
	}
	for _, k := range keys {
		g := groups[k]
		if len(g) < 2 {
			continue
		}
		byHash := map[[32]byte]file{}
		for _, f := range g {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			sum, err := filehash.SHA256(f.path)
			if err != nil {
				return res, fmt.Errorf("optimise: %w", err)
			}
			first, ok := byHash[sum]
			if !ok {
				byHash[sum] = f
				continue
			}
			if first.ino == f.ino && first.dev == f.dev {
				continue
			}
			if err := s.replaceWithLink(first.path, f.path); err != nil {
				if errors.Is(err, syscall.EMLINK) {
					byHash[sum] = f // first has too many links: use this copy from now on
					continue
				}
				if linkUnsupported(err) {
					res.Unsupported = fmt.Sprintf("hard link refused (%v): stopped; %d files linked so far", err, res.Linked)
					return res, nil
				}
				return res, fmt.Errorf("optimise: %w", err)
			}
			res.Linked++
			res.Saved += k.size
		}
	}
	return res, nil
}

func (s *Store) probeLinks() error {
	dir, err := os.MkdirTemp(s.tmpDir(), "probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	a := filepath.Join(dir, "a")
	if err := os.WriteFile(a, []byte("x"), 0o444); err != nil {
		return err
	}
	return os.Link(a, filepath.Join(dir, "b"))
}

// replaceWithLink replaces dup by a hard link to keep: link to a temporary name in .tmp,
// rename over dup. The temporary name is never inside an object, so a process killed in
// between leaves a stage gc removes, not an extra file that changes an object's NAR hash.
// The (read-only) directory is made writable for the moment and its canonical mode and mtime
// put back.
func (s *Store) replaceWithLink(keep, dup string) error {
	dir := filepath.Dir(dup)
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	defer func() {
		os.Chmod(dir, fi.Mode().Perm())
		if fi.ModTime().Unix() == 1 { // an object's directory, not the store itself
			unix.UtimesNanoAt(unix.AT_FDCWD, dir, epochOne, unix.AT_SYMLINK_NOFOLLOW)
		}
	}()
	tmp := filepath.Join(s.tmpDir(), "optimise-"+randHex(6))
	if err := os.Link(keep, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dup); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
