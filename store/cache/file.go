package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// FileBackend keeps a cache in a local folder (or a mounted volume). Uploads are written to
// <dir>/.tmp/ and linked (or renamed) into place after an fsync, so a crash leaves at worst
// debris under .tmp/, never a torn blob.
type FileBackend struct {
	dir string
}

var _ Backend = (*FileBackend)(nil)

// NewFileBackend returns the backend of the cache folder dir (an absolute path).
func NewFileBackend(dir string) *FileBackend { return &FileBackend{dir: filepath.Clean(dir)} }

// URL returns "file://<dir>".
func (f *FileBackend) URL() string { return "file://" + f.dir }

func (f *FileBackend) path(key string) string { return filepath.Join(f.dir, filepath.FromSlash(key)) }

// Get opens key.
func (f *FileBackend) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, err := os.Open(f.path(key))
	if err != nil {
		return nil, fmt.Errorf("reading %s/%s: %w", f.URL(), key, err)
	}
	return r, nil
}

// Exists reports whether key exists.
func (f *FileBackend) Exists(ctx context.Context, key string) (bool, error) {
	_, err := os.Stat(f.path(key))
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, fmt.Errorf("checking %s/%s: %w", f.URL(), key, err)
}

// Put writes key from r atomically unless it exists.
func (f *FileBackend) Put(ctx context.Context, key string, r io.Reader) (bool, error) {
	u, err := f.Create(ctx)
	if err != nil {
		return false, err
	}
	defer u.Abort()
	if _, err := io.Copy(u, r); err != nil {
		return false, fmt.Errorf("writing %s/%s: %w", f.URL(), key, err)
	}
	return u.Commit(ctx, key)
}

// Create starts an upload in <dir>/.tmp/.
func (f *FileBackend) Create(ctx context.Context) (Upload, error) {
	tmpDir := filepath.Join(f.dir, ".tmp")
	if err := os.MkdirAll(tmpDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating cache folder %s: %w", f.dir, err)
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	file, err := os.OpenFile(filepath.Join(tmpDir, "upload-"+hex.EncodeToString(rnd[:])), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating upload in %s: %w", f.dir, err)
	}
	return &fileUpload{f: f, file: file}, nil
}

type fileUpload struct {
	f    *FileBackend
	file *os.File
	done bool
}

func (u *fileUpload) Write(p []byte) (int, error) { return u.file.Write(p) }

func (u *fileUpload) Commit(ctx context.Context, key string) (bool, error) {
	if u.done {
		return false, fmt.Errorf("upload to %s committed twice", key)
	}
	defer u.Abort()
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := u.file.Sync(); err != nil {
		return false, fmt.Errorf("writing %s/%s: %w", u.f.URL(), key, err)
	}
	if err := u.file.Close(); err != nil {
		return false, fmt.Errorf("writing %s/%s: %w", u.f.URL(), key, err)
	}
	dst := u.f.path(key)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return false, fmt.Errorf("writing %s/%s: %w", u.f.URL(), key, err)
	}
	// A hard link never replaces an existing key, so two pushers racing on one key both
	// succeed and the first blob stays. Where links are not supported, fall back to rename
	// (blobs under one key have identical meaning, so replacing one is harmless).
	created := true
	err := os.Link(u.file.Name(), dst)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrExist):
		created = false
	default:
		if _, serr := os.Stat(dst); serr == nil {
			created = false
		} else if err := os.Rename(u.file.Name(), dst); err != nil {
			return false, fmt.Errorf("writing %s/%s: %w", u.f.URL(), key, err)
		}
	}
	if created {
		if err := syncDir(filepath.Dir(dst)); err != nil {
			return false, err
		}
	}
	return created, nil
}

func (u *fileUpload) Abort() {
	if u.done {
		return
	}
	u.done = true
	u.file.Close()
	os.Remove(u.file.Name())
}

// syncDir fsyncs a directory so a link or rename in it is durable; filesystems that cannot
// fsync a directory are tolerated.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
