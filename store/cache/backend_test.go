package cache

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
)

// newFakeGCS starts fake-gcs-server in-process with bucket "cache" and returns a real GCS
// client pointed at it.
func newFakeGCS(t *testing.T) *storage.Client {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "127.0.0.1", Port: 0, PublicHost: "127.0.0.1", NoListener: false,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "cache"})
	c, err := storage.NewClient(context.Background(), option.WithEndpoint(srv.URL()+"/storage/v1/"),
		option.WithoutAuthentication(), storage.WithJSONReads())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// gcsKeys lists every object name in bucket "cache".
func gcsKeys(t *testing.T, c *storage.Client) []string {
	t.Helper()
	var names []string
	it := c.Bucket("cache").Objects(context.Background(), &storage.Query{})
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, a.Name)
	}
	return names
}

func testBackend(t *testing.T, b Backend) {
	ctx := context.Background()
	if _, err := b.Get(ctx, "missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Get(missing) = %v, want fs.ErrNotExist", err)
	}
	if ok, err := b.Exists(ctx, "missing"); ok || err != nil {
		t.Fatalf("Exists(missing) = %v, %v", ok, err)
	}
	created, err := b.Put(ctx, "a.narinfo", strings.NewReader("first"))
	if err != nil || !created {
		t.Fatalf("Put = %v, %v", created, err)
	}
	created, err = b.Put(ctx, "a.narinfo", strings.NewReader("second"))
	if err != nil || created {
		t.Fatalf("Put over an existing key = %v, %v; want false, nil", created, err)
	}
	if got := read(t, b, "a.narinfo"); got != "first" {
		t.Fatalf("existing key replaced: %q", got)
	}
	u, err := b.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(u, "nar bytes")
	if ok, _ := b.Exists(ctx, "nar/x.nar"); ok {
		t.Fatal("upload visible before commit")
	}
	if created, err := u.Commit(ctx, "nar/x.nar"); err != nil || !created {
		t.Fatalf("Commit = %v, %v", created, err)
	}
	if got := read(t, b, "nar/x.nar"); got != "nar bytes" {
		t.Fatalf("committed blob = %q", got)
	}
	u, _ = b.Create(ctx)
	io.WriteString(u, "other")
	if created, err := u.Commit(ctx, "nar/x.nar"); err != nil || created {
		t.Fatalf("Commit over an existing key = %v, %v", created, err)
	}
	u, _ = b.Create(ctx)
	io.WriteString(u, "aborted")
	u.Abort()
	if got := read(t, b, "nar/x.nar"); got != "nar bytes" {
		t.Fatalf("blob changed: %q", got)
	}
}

func read(t *testing.T, b Backend, key string) string {
	t.Helper()
	rc, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestFileBackend(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenBackend("file://"+dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	testBackend(t, b)
	// Every upload is committed or removed: nothing left in .tmp.
	left, _ := os.ReadDir(filepath.Join(dir, ".tmp"))
	if len(left) != 0 {
		t.Fatalf("debris left in .tmp: %v", left)
	}
}

func TestGCSBackend(t *testing.T) {
	c := newFakeGCS(t)
	b, err := OpenBackend("gs://cache/team/prefix/", c)
	if err != nil {
		t.Fatal(err)
	}
	if b.URL() != "gs://cache/team/prefix" {
		t.Fatalf("URL = %s", b.URL())
	}
	testBackend(t, b)
	got := strings.Join(gcsKeys(t, c), " ")
	if got != "team/prefix/a.narinfo team/prefix/nar/x.nar" {
		t.Fatalf("objects in the bucket: %s", got)
	}
}

func TestOpenBackendErrors(t *testing.T) {
	for _, u := range []string{"file://rel", "gs://", "http://x", "relative", "gs://b/p"} {
		if _, err := OpenBackend(u, nil); err == nil {
			t.Errorf("OpenBackend(%q) accepted", u)
		}
	}
}
