package model_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/api/option"

	"github.com/runpod-comfy/runpod-comfy/builder/model"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// TestVersionWithEverySource builds one version whose models come from http (checksum in the
// spec), hf:// (checksum from X-Linked-Etag), civitai:// (checksum from the API), a local file
// (trusted on first use) and gs:// (fake-gcs-server with the real client; checksum from the
// object's MD5), and checks every link of the root and where each checksum came from.
func TestVersionWithEverySource(t *testing.T) {
	files := map[string][]byte{
		"http":    bytes.Repeat([]byte("h"), 100001),
		"hf":      bytes.Repeat([]byte("f"), 200003),
		"civitai": bytes.Repeat([]byte("c"), 50005),
		"file":    bytes.Repeat([]byte("l"), 7007),
		"gs":      bytes.Repeat([]byte("g"), 3<<20+9),
	}
	srv := newModelServer(t, map[string][]byte{
		"/http/upscale.pth":        files["http"],
		"/cdn/text/t5.safetensors": files["hf"],
		"/api/download/models/55":  files["civitai"],
	})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/model-versions/55" {
			fmt.Fprintf(w, `{"files":[{"name":"style.safetensors","primary":true,"downloadUrl":%q,"hashes":{"SHA256":"%X"}}]}`,
				srv.URL+"/api/download/models/55", sha256.Sum256(files["civitai"]))
			return
		}
		http.Redirect(w, r, srv.URL+r.URL.Path, http.StatusFound)
	}))
	defer api.Close()
	gcs, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "127.0.0.1", Port: 0, PublicHost: "127.0.0.1",
		InitialObjects: []fakestorage.Object{{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "b", Name: "vae/ae.safetensors"}, Content: files["gs"]}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer gcs.Stop()
	client, err := storage.NewClient(context.Background(), option.WithEndpoint(gcs.URL()+"/storage/v1/"), option.WithoutAuthentication(), storage.WithJSONReads())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	local := filepath.Join(t.TempDir(), "embedding.pt")
	if err := os.WriteFile(local, files["file"], 0o644); err != nil {
		t.Fatal(err)
	}

	spec := newSpec("all", comfyRepo(t),
		specs.Model{Source: srv.URL + "/http/upscale.pth", TargetSubdir: "upscale_models", Checksum: sum(files["http"])},
		specs.Model{Source: "hf://google/t5/text/t5.safetensors@main", TargetSubdir: "text_encoders"},
		specs.Model{Source: "civitai://55", TargetSubdir: "loras", Name: "style.safetensors"},
		specs.Model{Source: local, TargetSubdir: "embeddings"},
		specs.Model{Source: "gs://b/vae/ae.safetensors", TargetSubdir: "vae"},
	)
	opts := model.Options{HFEndpoint: srv.URL + "/hub", CivitaiEndpoint: api.URL, GCS: client, Retry: model.Retry{Base: time.Millisecond}}
	res, log, err := build(t, t.TempDir(), spec, opts, false)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	want := map[string]struct {
		data []byte
		from string
		sum  string
	}{
		"upscale_models/upscale.pth":   {files["http"], model.FromSpec, sum(files["http"])},
		"text_encoders/t5.safetensors": {files["hf"], model.FromSource, sum(files["hf"])},
		"loras/style.safetensors":      {files["civitai"], model.FromSource, sum(files["civitai"])},
		"embeddings/embedding.pt":      {files["file"], model.FromFirstDownload, sum(files["file"])},
		"vae/ae.safetensors":           {files["gs"], model.FromSource, fmt.Sprintf("md5:%x", md5.Sum(files["gs"]))},
	}
	if len(res.Lock.Models) != len(want) {
		t.Fatalf("lock has %d models", len(res.Lock.Models))
	}
	for _, m := range res.Lock.Models {
		w, ok := want[m.Target]
		if !ok {
			t.Errorf("unexpected target %s", m.Target)
			continue
		}
		if m.ChecksumFrom != w.from || m.Checksum != w.sum {
			t.Errorf("%s: checksum %s from %s, want %s from %s", m.Target, m.Checksum, m.ChecksumFrom, w.sum, w.from)
		}
		got, err := os.ReadFile(filepath.Join(res.Dir, "models", m.Target))
		if err != nil || !bytes.Equal(got, w.data) {
			t.Errorf("%s: wrong content in the root (%v)", m.Target, err)
		}
	}
}
