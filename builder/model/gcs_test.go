package model

import (
	"context"
	"crypto/md5"
	"fmt"
	"path/filepath"
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
