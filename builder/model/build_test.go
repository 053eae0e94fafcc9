package model_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/builder"
	"github.com/runpod-comfy/runpod-comfy/builder/model"
	"github.com/runpod-comfy/runpod-comfy/internal/progress"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

// comfyRepo makes a tiny ComfyUI stand-in git repository and returns its path.
func comfyRepo(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ComfyUI")
	files := map[string]string{
		"main.py":           "print('comfy')\n",
		"comfy/cli_args.py": "parser.add_argument(\"--output-directory\", type=str)\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-q", "-m", "init"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return dir
}

// modelServer serves files by path with Range support and counts GETs per path. Paths under
// /hub/<repo>/resolve/<rev>/<file> answer like Hugging Face: a redirect to /cdn/<file> with
// X-Linked-Etag and X-Linked-Size.
type modelServer struct {
	*httptest.Server
	files map[string][]byte
	mu    sync.Mutex
	gets  map[string]int
	auth  []string // Authorization headers seen, by request
}

func newModelServer(t *testing.T, files map[string][]byte) *modelServer {
	ms := &modelServer{files: files, gets: map[string]int{}}
	ms.Server = httptest.NewServer(http.HandlerFunc(ms.serve))
	t.Cleanup(ms.Close)
	return ms
}

func (ms *modelServer) serve(w http.ResponseWriter, r *http.Request) {
	ms.mu.Lock()
	if r.Method == http.MethodGet {
		ms.gets[r.URL.Path]++
	}
	ms.auth = append(ms.auth, r.Header.Get("Authorization"))
	ms.mu.Unlock()
	if rest, ok := strings.CutPrefix(r.URL.Path, "/hub/"); ok {
		i := strings.Index(rest, "/resolve/")
		file := rest[i+len("/resolve/"):]
		file = file[strings.Index(file, "/")+1:]
		data, ok := ms.files["/cdn/"+file]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Linked-Etag", fmt.Sprintf(`"%x"`, sha256.Sum256(data)))
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(data)))
		http.Redirect(w, r, "/cdn/"+file, http.StatusFound)
		return
	}
	data, ok := ms.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

func (ms *modelServer) getCount(path string) int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.gets[path]
}

func sum(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

func newSpec(id, comfy string, models ...specs.Model) *specs.Spec {
	for i := range models {
		models[i].Pos = specs.Pos{File: "versions/" + id + ".json", Line: 10 + i, Col: 5}
	}
	return &specs.Spec{
		SchemaVersion: 2, VersionID: id,
		Comfy:  specs.Comfy{Repo: comfy, Ref: "main", Pos: specs.Pos{File: "versions/" + id + ".json", Line: 3, Col: 3}},
		Models: models,
		Pos:    specs.Pos{File: "versions/" + id + ".json"},
	}
}

// storeEntries lists ROOT/store entries whose name ends in suffix.
func storeEntries(t *testing.T, root, suffix string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), suffix) {
			out = append(out, e.Name())
		}
	}
	return out
}

func build(t *testing.T, root string, spec *specs.Spec, opts model.Options, skip bool) (*builder.BuildResult, string, error) {
	t.Helper()
	var log bytes.Buffer
	pr := progress.New(context.Background(), &syncWriter{w: &log}, progress.Options{})
	res, err := builder.Build(context.Background(), builder.BuildOptions{
		Root: root, Spec: spec, Jobs: 2, SkipModels: skip, Models: opts, DownloadJobs: 2, Progress: pr,
	})
	pr.Close()
	return res, log.String(), err
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestTwoVersionsOneObject(t *testing.T) {
	data := append(bytes.Repeat([]byte("model bytes "), 50000), "odd"...)
	srv := newModelServer(t, map[string][]byte{"/m/sd_base.safetensors": data})
	comfy := comfyRepo(t)
	root := t.TempDir()
	a := newSpec("a", comfy, specs.Model{Source: srv.URL + "/m/sd_base.safetensors", TargetSubdir: "checkpoints", Checksum: sum(data)})
	b := newSpec("b", comfy, specs.Model{Source: srv.URL + "/m/sd_base.safetensors", TargetPath: "$MODELS_DIR/unet/renamed.safetensors", Checksum: sum(data)})
	for _, s := range []*specs.Spec{a, b} {
		if _, log, err := build(t, root, s, model.Options{}, false); err != nil {
			t.Fatalf("build %s: %v\n%s", s.VersionID, err, log)
		}
	}
	objs := storeEntries(t, root, "-sd_base.safetensors")
	if len(objs) != 1 {
		t.Fatalf("want one model object, got %v", objs)
	}
	if n := srv.getCount("/m/sd_base.safetensors"); n != 1 {
		t.Fatalf("the model was downloaded %d times", n)
	}
	for _, link := range []string{"builds/comfy-a/models/checkpoints/sd_base.safetensors", "builds/comfy-b/models/unet/renamed.safetensors"} {
		p := filepath.Join(root, link)
		target, err := os.Readlink(p)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(target) != objs[0] || strings.HasPrefix(target, "/") {
			t.Fatalf("%s -> %s, want a relative link to %s", link, target, objs[0])
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: wrong content (%v)", link, err)
		}
	}
	fi, err := os.Stat(filepath.Join(root, "store", objs[0]))
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o444 {
		t.Fatalf("model object: %v %v", fi.Mode(), err)
	}
	s, _ := store.Open(root)
	m, err := s.Meta(store.MustParsePath(objs[0]))
	if err != nil || m.Kind != "model" || m.CA != "fixed:"+sum(data) {
		t.Fatalf("meta %+v %v", m, err)
	}
	// The NAR hash computed during the download is the one the store would compute.
	narHash, narSize, err := nar.Hash(filepath.Join(root, "store", objs[0]))
	if err != nil || m.NarHash != narHash || m.NarSize != narSize {
		t.Fatalf("meta NAR %s %d, the file's NAR %s %d (%v)", m.NarHash, m.NarSize, narHash, narSize, err)
	}
	lock, err := specs.ReadLock(builder.LockPath(root, "b"))
	if err != nil {
		t.Fatal(err)
	}
	if ml := lock.Models[0]; ml.Target != "unet/renamed.safetensors" || ml.ChecksumFrom != model.FromSpec || ml.StorePath != objs[0] {
		t.Fatalf("lock entry %+v", ml)
	}
}

func TestWrongChecksumLeavesStoreClean(t *testing.T) {
	data := []byte("the real model")
	srv := newModelServer(t, map[string][]byte{"/m/x.safetensors": data})
	root := t.TempDir()
	wrong := sum([]byte("something else"))
	spec := newSpec("w", comfyRepo(t), specs.Model{Source: srv.URL + "/m/x.safetensors", TargetSubdir: "loras", Checksum: wrong})
	_, log, err := build(t, root, spec, model.Options{}, false)
	var mm *model.MismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("err = %v, want a *MismatchError\n%s", err, log)
	}
	msg := err.Error()
	for _, want := range []string{"loras/x.safetensors", "versions/w.json:10:5", "expected " + wrong, "got " + sum(data)} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if objs := storeEntries(t, root, "x.safetensors"); len(objs) != 0 {
		t.Fatalf("bytes entered the store: %v", objs)
	}
	p, _ := model.PathFor(model.Checksum{Algo: "sha256", Hex: strings.TrimPrefix(wrong, "sha256:")}, "x.safetensors")
	if _, err := os.Stat(filepath.Join(root, "store", ".meta", p.Digest().String()+".json")); !os.IsNotExist(err) {
		t.Fatalf("metadata written for a mismatched model: %v", err)
	}
	tmp, _ := os.ReadDir(filepath.Join(root, "store", ".tmp"))
	if len(tmp) != 0 {
		t.Fatalf("staging left behind: %v", tmp)
	}
	parts, _ := os.ReadDir(model.DownloadDir(root))
	if len(parts) != 0 {
		t.Fatalf("partial download kept after a mismatch: %v", parts)
	}
}

func TestChecksumFromSourceAndFirstDownload(t *testing.T) {
	hfData := bytes.Repeat([]byte{7}, 300000)
	plain := []byte("a model without any published checksum")
	srv := newModelServer(t, map[string][]byte{"/cdn/vae/ae.safetensors": hfData, "/files/tofu.pt": plain})
	root := t.TempDir()
	spec := newSpec("s", comfyRepo(t),
		specs.Model{Source: "hf://black/flux/vae/ae.safetensors", TargetSubdir: "vae"},
		specs.Model{Source: srv.URL + "/files/tofu.pt", TargetSubdir: "upscale_models"},
	)
	opts := model.Options{HFEndpoint: srv.URL + "/hub"}
	res, log, err := build(t, root, spec, opts, false)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	byTarget := map[string]specs.ModelLock{}
	for _, m := range res.Lock.Models {
		byTarget[m.Target] = m
	}
	if m := byTarget["vae/ae.safetensors"]; m.ChecksumFrom != model.FromSource || m.Checksum != sum(hfData) || m.Size != int64(len(hfData)) {
		t.Fatalf("hf lock entry %+v", m)
	}
	if m := byTarget["upscale_models/tofu.pt"]; m.ChecksumFrom != model.FromFirstDownload || m.Checksum != sum(plain) {
		t.Fatalf("first-download lock entry %+v", m)
	}
	if !strings.Contains(log, "trusted on first use") || !strings.Contains(log, "versions/s.json:11:5") {
		t.Fatalf("no trust-on-first-use warning naming the spec line:\n%s", log)
	}
	// Downloaded once each: the first download went straight into the store.
	if n := srv.getCount("/files/tofu.pt"); n != 1 {
		t.Fatalf("tofu.pt downloaded %d times", n)
	}
	if n := srv.getCount("/cdn/vae/ae.safetensors"); n != 1 {
		t.Fatalf("ae.safetensors downloaded %d times", n)
	}
	// A second build touches metadata only.
	first := res.Root
	res, log, err = build(t, root, spec, opts, false)
	if err != nil || res.Built != 0 {
		m1, _ := os.ReadFile(filepath.Join(root, "store", first.String(), "manifest.json"))
		m2, _ := os.ReadFile(filepath.Join(res.Dir, "manifest.json"))
		t.Fatalf("second build: built %d (root %s, was %s), err %v\n%s\n%s\n%s", res.Built, res.Root, first, err, log, m1, m2)
	}
	if n := srv.getCount("/files/tofu.pt") + srv.getCount("/cdn/vae/ae.safetensors"); n != 2 {
		t.Fatalf("the second build downloaded again (%d GETs in all)", n)
	}
}

func TestSkipModels(t *testing.T) {
	data := []byte("skipped model")
	srv := newModelServer(t, map[string][]byte{"/m/s.safetensors": data})
	root := t.TempDir()
	spec := newSpec("k", comfyRepo(t), specs.Model{Source: srv.URL + "/m/s.safetensors", TargetSubdir: "checkpoints", Checksum: sum(data)})
	res, log, err := build(t, root, spec, model.Options{}, true)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if _, err := os.Lstat(filepath.Join(res.Dir, "models")); !os.IsNotExist(err) {
		t.Fatalf("models/ in a root built with skip_models: %v", err)
	}
	man, err := os.ReadFile(filepath.Join(res.Dir, "manifest.json"))
	if err != nil || !strings.Contains(string(man), `"models_skipped": true`) {
		t.Fatalf("manifest: %s %v", man, err)
	}
	if n := srv.getCount("/m/s.safetensors"); n != 0 {
		t.Fatalf("a skipped model was downloaded")
	}
	if res.Lock.Models[0].Checksum != sum(data) {
		t.Fatalf("the lock still pins skipped models: %+v", res.Lock.Models)
	}
}
