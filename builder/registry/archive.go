package registry

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/internal/atomicfile"
	"github.com/runpod-comfy/runpod-comfy/internal/filehash"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// DefaultMaxArchive is the largest archive downloaded (a registry node is source code).
const DefaultMaxArchive = 512 << 20

// Fetcher downloads archives into a cache directory named by their sha256.
type Fetcher struct {
	// Dir is the cache, ROOT/cache/runpod-comfy/registry.
	Dir string
	// MaxArchive bounds a download (0 = DefaultMaxArchive).
	MaxArchive int64
	http       *http.Client
}

// NewFetcher returns a fetcher caching archives in dir.
func NewFetcher(dir string) *Fetcher {
	return &Fetcher{Dir: dir, http: newHTTPClient(0)}
}

// HashMismatchError is an archive whose sha256 is not the lock's.
type HashMismatchError struct {
	URL       string
	Want, Got string
}

func (e *HashMismatchError) Error() string {
	return fmt.Sprintf("archive %s has sha256:%s, the lock pins sha256:%s: the registry's archive changed (or was tampered with); `runpod-comfy resolve --update <node>` trusts the new one", e.URL, e.Got, e.Want)
}

// Fetch returns the path of the archive at url in the cache and its sha256 (hex). With want
// (hex) set, an archive already cached under that hash is used after its hash is checked
// again; a download whose hash differs is an error (*HashMismatchError) and is not kept.
// Without want (resolving), the archive is downloaded and its hash computed.
func (f *Fetcher) Fetch(ctx context.Context, url, want string) (string, string, error) {
	want = strings.ToLower(strings.TrimPrefix(want, "sha256:"))
	if want != "" {
		// want names a file in the cache (and a damaged one is removed): only a digest may.
		if err := specs.CheckChecksum("sha256:" + want); err != nil {
			return "", "", err
		}
		p := f.path(want)
		got, err := filehash.SHA256Hex(p)
		switch {
		case err == nil && got == want:
			return p, want, nil
		case err == nil:
			// A damaged cache entry: fetch it again.
			_ = os.Remove(p)
		case !errors.Is(err, fs.ErrNotExist):
			return "", "", err
		}
	}
	if err := checkURL(url); err != nil {
		return "", "", fmt.Errorf("download URL %w", err)
	}
	if err := os.MkdirAll(f.Dir, 0o755); err != nil {
		return "", "", err
	}
	tmp, err := os.CreateTemp(f.Dir, ".download-*")
	if err != nil {
		return "", "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	got, err := f.download(ctx, url, tmp)
	if err != nil {
		return "", "", err
	}
	if want != "" && got != want {
		return "", "", &HashMismatchError{URL: redact(url), Want: want, Got: got}
	}
	if err := tmp.Sync(); err != nil {
		return "", "", err
	}
	if err := tmp.Close(); err != nil {
		return "", "", err
	}
	p := f.path(got)
	if err := os.Rename(tmp.Name(), p); err != nil {
		return "", "", err
	}
	_ = atomicfile.SyncDir(f.Dir)
	return p, got, nil
}

func (f *Fetcher) path(hexSum string) string { return filepath.Join(f.Dir, hexSum+".zip") }

// download writes url's body to w, hashing it, at most MaxArchive bytes. No credentials are
// sent: the download host (a bucket of the registry's) needs none.
func (f *Fetcher) download(ctx context.Context, url string, w io.Writer) (string, error) {
	limit := f.MaxArchive
	if limit <= 0 {
		limit = DefaultMaxArchive
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("download %s: %v", redact(url), err)
	}
	hc := f.http
	if hc == nil {
		hc = newHTTPClient(0)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("download %s: %w", redact(url), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("download %s: HTTP %d", redact(url), resp.StatusCode)
	}
	if resp.ContentLength > limit {
		return "", fmt.Errorf("download %s: %d bytes is more than the %d allowed for a node archive", redact(url), resp.ContentLength, limit)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return "", fmt.Errorf("download %s: %w", redact(url), err)
	}
	if n > limit {
		return "", fmt.Errorf("download %s: more than the %d bytes allowed for a node archive", redact(url), limit)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// maxReadFile bounds a file read from an archive without unpacking it (requirements files).
const maxReadFile = 4 << 20

// ReadFile reads the file name (slash-separated, relative to the node's top) from the archive
// at path, as Unpack would place it; a missing file is an error matching fs.ErrNotExist.
func ReadFile(archive, name string) ([]byte, error) {
	r, err := zip.OpenReader(archive)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return nil, fmt.Errorf("reading archive: %w", err)
	}
	defer r.Close()
	want := path.Clean(name)
	for _, f := range r.File {
		key, _, err := entryPath(f.Name)
		if err != nil || key != want || !f.Mode().IsRegular() {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("%s in the archive: %w", name, err)
		}
		defer rc.Close()
		data, err := io.ReadAll(io.LimitReader(rc, maxReadFile+1))
		if err != nil {
			return nil, fmt.Errorf("%s in the archive: %w", name, err)
		}
		if len(data) > maxReadFile {
			return nil, fmt.Errorf("%s in the archive is larger than %d bytes", name, maxReadFile)
		}
		return data, nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}
