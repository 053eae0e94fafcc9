package model

import (
	"context"
	"crypto/md5"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/api/option"
)

// TestGCSSource reads a gs:// model through the real GCS client from fake-gcs-server running
// in-process: Resolve takes the object's MD5 as the checksum, Fetch downloads and checks it.
func TestGCSSource(t *testing.T) {
	data := testData(3<<20 + 5)
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "127.0.0.1", Port: 0, PublicHost: "127.0.0.1",
		InitialObjects: []fakestorage.Object{{
			ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "models", Name: "sdxl/vae.safetensors"},
			Content:     data,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	ctx := context.Background()
	client, err := storage.NewClient(ctx, option.WithEndpoint(srv.URL()+"/storage/v1/"), option.WithoutAuthentication(), storage.WithJSONReads())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	f, _ := newTestFetcher(t, Options{GCS: client})
	src := mustSource(t, "gs://models/sdxl/vae.safetensors")
	rem, err := f.Resolve(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	want := Checksum{Algo: MD5, Hex: fmt.Sprintf("%x", md5.Sum(data))}
	if rem.Checksum != want || rem.Size != int64(len(data)) || rem.FileName != "vae.safetensors" {
		t.Fatalf("remote %+v, want checksum %s", rem, want)
	}
	dst := filepath.Join(t.TempDir(), "vae")
	res, err := f.Fetch(ctx, src, Want{Checksum: rem.Checksum, Size: rem.Size}, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	if res.Checksum != want || res.NarHash == "" {
		t.Fatalf("result %+v", res)
	}
	if _, err := f.Resolve(ctx, mustSource(t, "gs://models/missing.bin")); err == nil {
		t.Fatal("a missing object resolved")
	}
}

// rangeCounter is an http.RoundTripper that counts the requests carrying a bounded Range.
type rangeCounter struct {
	base   http.RoundTripper
	ranged atomic.Int32
}

func (c *rangeCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if _, _, ok := boundedRange(r); ok {
		c.ranged.Add(1)
	}
	return c.base.RoundTrip(r)
}

// TestGCSRanged reads a gs:// object in parallel ranged reads (the client library's
// NewRangeReader, pinned to the object's generation) from fake-gcs-server.
func TestGCSRanged(t *testing.T) {
	data := testData(1<<20 + 17)
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "127.0.0.1", Port: 0, PublicHost: "127.0.0.1",
		InitialObjects: []fakestorage.Object{{
			ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "models", Name: "big.safetensors"},
			Content:     data,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	ctx := context.Background()
	rc := &rangeCounter{base: http.DefaultTransport}
	client, err := storage.NewClient(ctx, option.WithEndpoint(srv.URL()+"/storage/v1/"), option.WithHTTPClient(&http.Client{Transport: rc}), storage.WithJSONReads())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	f, warn := newTestFetcher(t, rangedOpts(Options{GCS: client}))
	dst := filepath.Join(t.TempDir(), "big")
	res, err := f.Fetch(ctx, mustSource(t, "gs://models/big.safetensors"), Want{Checksum: sha256Of(data)}, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	if wantNar, _ := narOf(t, data); res.NarHash != wantNar {
		t.Fatalf("nar %s", res.NarHash)
	}
	if rc.ranged.Load() < 10 {
		t.Fatalf("%d ranged reads, want the object read in pieces", rc.ranged.Load())
	}
	if warn.String() != "" {
		t.Fatalf("warnings: %s", warn)
	}
}
