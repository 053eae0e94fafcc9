package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"cloud.google.com/go/storage"
)

// Backend is the storage under a cache. Keys are slash-separated names relative to the cache:
// "nix-cache-info", "<digest>.narinfo", "nar/<file hash>.nar.zst". Every write is atomic:
// a reader sees a whole blob or none.
type Backend interface {
	// URL names the cache: "file:///srv/cache" or "gs://bucket/prefix".
	URL() string
	// Get opens key for reading. A missing key gives an error matching fs.ErrNotExist.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Exists reports whether key exists.
	Exists(ctx context.Context, key string) (bool, error)
	// Put writes key from r unless it exists already; created reports which happened.
	Put(ctx context.Context, key string, r io.Reader) (created bool, err error)
	// Create starts an upload whose key is known only once it is written (a NAR file is
	// named by its own hash).
	Create(ctx context.Context) (Upload, error)
}

// Upload is a blob being written to a Backend, invisible to readers until Commit.
type Upload interface {
	io.Writer
	// Commit makes the written bytes visible under key atomically. When key exists already
	// the upload is discarded and created is false.
	Commit(ctx context.Context, key string) (created bool, err error)
	// Abort discards the upload; it is a no-op after Commit.
	Abort()
}

// OpenBackend returns the backend for a cache URL: "file:///abs/path" (or an absolute path)
// for a folder, "gs://bucket[/prefix]" for Google Cloud Storage through client (required
// only for gs:// URLs).
func OpenBackend(url string, client *storage.Client) (Backend, error) {
	switch {
	case strings.HasPrefix(url, "file://"):
		p := strings.TrimPrefix(url, "file://")
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("cache URL %q: want file:///absolute/path", url)
		}
		return NewFileBackend(p), nil
	case filepath.IsAbs(url):
		return NewFileBackend(url), nil
	case strings.HasPrefix(url, "gs://"):
		rest := strings.TrimPrefix(url, "gs://")
		bucket, prefix, _ := strings.Cut(rest, "/")
		if bucket == "" {
			return nil, fmt.Errorf("cache URL %q: want gs://bucket[/prefix]", url)
		}
		if client == nil {
			return nil, fmt.Errorf("cache URL %q: no GCS client", url)
		}
		return NewGCSBackend(client, bucket, strings.Trim(prefix, "/")), nil
	default:
		return nil, fmt.Errorf("cache URL %q: want file:///path or gs://bucket/prefix", url)
	}
}

// getAll reads a small blob whole, refusing more than max bytes.
func getAll(ctx context.Context, b Backend, key string, max int64) ([]byte, error) {
	rc, err := b.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s/%s: %w", b.URL(), key, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("reading %s/%s: larger than %d bytes", b.URL(), key, max)
	}
	return data, nil
}

func putBytes(ctx context.Context, b Backend, key string, data []byte) (bool, error) {
	return b.Put(ctx, key, bytes.NewReader(data))
}
