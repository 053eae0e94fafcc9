package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
)

// GCSBackend keeps a cache under a prefix of a Google Cloud Storage bucket. Object writes are
// atomic in GCS; writes use a DoesNotExist precondition so a racing pusher never replaces a
// blob. Uploads whose name is known only at the end go to <prefix>/.tmp/ and are copied into
// place server-side.
type GCSBackend struct {
	client *storage.Client
	bucket string
	prefix string // without leading or trailing slash; "" for the bucket's top
}

var _ Backend = (*GCSBackend)(nil)

// NewGCSBackend returns the backend of gs://bucket/prefix using client.
func NewGCSBackend(client *storage.Client, bucket, prefix string) *GCSBackend {
	return &GCSBackend{client: client, bucket: bucket, prefix: prefix}
}

// URL returns "gs://bucket/prefix".
func (g *GCSBackend) URL() string {
	if g.prefix == "" {
		return "gs://" + g.bucket
	}
	return "gs://" + g.bucket + "/" + g.prefix
}

func (g *GCSBackend) obj(key string) *storage.ObjectHandle {
	name := key
	if g.prefix != "" {
		name = g.prefix + "/" + key
	}
	return g.client.Bucket(g.bucket).Object(name)
}

// Get opens key.
func (g *GCSBackend) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	r, err := g.obj(key).NewReader(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return nil, fmt.Errorf("reading %s/%s: %w", g.URL(), key, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s/%s: %w", g.URL(), key, err)
	}
	return r, nil
}

// Exists reports whether key exists.
func (g *GCSBackend) Exists(ctx context.Context, key string) (bool, error) {
	_, err := g.obj(key).Attrs(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking %s/%s: %w", g.URL(), key, err)
	}
	return true, nil
}

func isPreconditionFailed(err error) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == http.StatusPreconditionFailed
}

// Put writes key from r unless it exists (DoesNotExist precondition).
func (g *GCSBackend) Put(ctx context.Context, key string, r io.Reader) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // cancelling before Close aborts a failed upload
	w := g.obj(key).If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
	if _, err := io.Copy(w, r); err != nil {
		cancel()
		w.Close()
		return false, fmt.Errorf("writing %s/%s: %w", g.URL(), key, err)
	}
	if err := w.Close(); err != nil {
		if isPreconditionFailed(err) {
			return false, nil
		}
		return false, fmt.Errorf("writing %s/%s: %w", g.URL(), key, err)
	}
	return true, nil
}

// Create starts an upload to <prefix>/.tmp/upload-<random>.
func (g *GCSBackend) Create(ctx context.Context) (Upload, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	key := ".tmp/upload-" + hex.EncodeToString(rnd[:])
	uctx, cancel := context.WithCancel(ctx)
	w := g.obj(key).If(storage.Conditions{DoesNotExist: true}).NewWriter(uctx)
	return &gcsUpload{g: g, tmp: key, w: w, cancel: cancel}, nil
}

type gcsUpload struct {
	g      *GCSBackend
	tmp    string
	w      *storage.Writer
	cancel context.CancelFunc
	closed bool
	done   bool
}

func (u *gcsUpload) Write(p []byte) (int, error) { return u.w.Write(p) }

func (u *gcsUpload) Commit(ctx context.Context, key string) (bool, error) {
	if u.done {
		return false, fmt.Errorf("upload to %s committed twice", key)
	}
	defer u.Abort()
	u.closed = true
	if err := u.w.Close(); err != nil {
		return false, fmt.Errorf("writing %s/%s: %w", u.g.URL(), key, err)
	}
	// Skip the copy when key exists; the precondition on the copy closes the remaining race
	// on real GCS (fake-gcs-server ignores preconditions on rewrites).
	if ok, err := u.g.Exists(ctx, key); err != nil || ok {
		return false, err
	}
	dst := u.g.obj(key).If(storage.Conditions{DoesNotExist: true})
	_, err := dst.CopierFrom(u.g.obj(u.tmp)).Run(ctx)
	if isPreconditionFailed(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("writing %s/%s: %w", u.g.URL(), key, err)
	}
	return true, nil
}

func (u *gcsUpload) Abort() {
	if u.done {
		return
	}
	u.done = true
	if !u.closed {
		u.cancel() // aborts the resumable upload
		u.w.Close()
	}
	u.cancel()
	// Delete the temporary object even when the caller's context is gone.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u.g.obj(u.tmp).Delete(ctx)
}
