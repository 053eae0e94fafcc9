package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// TestTokensNeverLeak sets every token variable to a marker and builds a version whose models
// come from a Hugging Face stand-in (redirecting to a CDN on another host), a Civitai stand-in
// and a URL with credentials in it; then it searches the command's output, the lock, the
// metadata, the store and an external models directory for the marker.
func TestTokensNeverLeak(t *testing.T) {
	const marker = "SECRET-MARKER-7f3a"
	hfData := bytes.Repeat([]byte("hf model "), 10000)
	civData := bytes.Repeat([]byte("civitai model "), 5000)
	plainData := []byte("plain model with credentials in its URL")

	var mu sync.Mutex
	seen := map[string][]string{} // server -> Authorization headers
	record := func(name string, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen[name] = append(seen[name], r.Header.Get("Authorization"))
	}
	serve := func(w http.ResponseWriter, r *http.Request, data []byte) {
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("cdn", r)
		serve(w, r, hfData)
	}))
	defer cdn.Close()
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("hub", r)
		w.Header().Set("X-Linked-Etag", fmt.Sprintf(`"%x"`, sha256.Sum256(hfData)))
		w.Header().Set("X-Linked-Size", fmt.Sprint(len(hfData)))
		http.Redirect(w, r, cdn.URL+"/blob?Signature=abc", http.StatusFound)
	}))
	defer hub.Close()
	var civURL string
	civ := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("civitai", r)
		if r.URL.Path == "/api/v1/model-versions/42" {
			fmt.Fprintf(w, `{"files":[{"name":"dream.safetensors","primary":true,"downloadUrl":%q,"hashes":{"SHA256":"%X"}}]}`,
				civURL+"/api/download/models/42", sha256.Sum256(civData))
			return
		}
		serve(w, r, civData)
	}))
	defer civ.Close()
	civURL = civ.URL
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("plain", r)
		serve(w, r, plainData)
	}))
	defer plain.Close()

	for _, v := range []string{"HF_TOKEN", "CIVITAI_API_TOKEN", "GIT_TOKEN", "GITHUB_TOKEN"} {
		t.Setenv(v, marker+"-"+v)
	}
	t.Setenv("HF_ENDPOINT", hub.URL)
	t.Setenv("CIVITAI_ENDPOINT", civ.URL)
	t.Setenv("NO_COLOR", "1")

	work := t.TempDir()
	comfy := filepath.Join(work, "comfy")
	os.MkdirAll(filepath.Join(comfy, "comfy"), 0o755)
	os.WriteFile(filepath.Join(comfy, "main.py"), []byte("print(1)\n"), 0o644)
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "init"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = comfy
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	commit, err := exec.Command("git", "-C", comfy, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	credURL := strings.Replace(plain.URL, "http://", "http://user:"+marker+"@", 1) + "/files/plain.bin?token=" + marker
	spec := fmt.Sprintf(`{
  "schema_version": 2,
  "version_id": "sec",
  "comfy": {"repo": %q, "commit": %q},
  "models": [
    {"source": "hf://org/repo/unet/flux.safetensors", "target_subdir": "unet"},
    {"source": "civitai://42", "target_subdir": "checkpoints", "name": "dream.safetensors"},
    {"source": %q, "target_subdir": "misc"}
  ]
}`, comfy, strings.TrimSpace(string(commit)), credURL)
	vdir := filepath.Join(work, "versions")
	os.MkdirAll(vdir, 0o755)
	if err := os.WriteFile(filepath.Join(vdir, "sec.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(work, "root")
	ext := filepath.Join(work, "ext")

	var output strings.Builder
	for _, args := range [][]string{
		{"build", "sec", "--download-jobs", "2", "--download-connections", "3"},
		{"-v", "verify-models", "sec"},
		{"verify-models", "sec", "--models-dir", ext},
		{"--json", "resolve", "sec", "--update"},
	} {
		out, code := runCaptured(t, append([]string{"--root", root, "--versions-dir", vdir}, args...))
		output.WriteString(out)
		if code != 0 {
			t.Fatalf("runpod-comfy %v: exit %d\n%s", args, code, out)
		}
	}

	// The tokens were used, on their own hosts only.
	mu.Lock()
	for name, want := range map[string]string{"hub": "Bearer " + marker + "-HF_TOKEN", "civitai": "Bearer " + marker + "-CIVITAI_API_TOKEN"} {
		for _, got := range seen[name] {
			if got != want {
				t.Errorf("%s saw Authorization %q, want %q", name, got, want)
			}
		}
		if len(seen[name]) == 0 {
			t.Errorf("%s saw no request", name)
		}
	}
	for _, got := range seen["cdn"] {
		if got != "" {
			t.Errorf("the redirect target on another host got Authorization %q", got)
		}
	}
	if len(seen["cdn"]) == 0 {
		t.Error("the CDN saw no request")
	}
	mu.Unlock()

	if strings.Contains(output.String(), marker) {
		t.Errorf("the marker is in the command output:\n%s", output.String())
	}
	for _, dir := range []string{root, ext} {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				t.Errorf("walking %s: %v", p, err)
				return nil
			}
			if strings.Contains(p, marker) {
				t.Errorf("the marker is in a path: %s", p)
			}
			if d.Type().IsRegular() {
				if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(marker)) {
					t.Errorf("the marker is in %s", p)
				}
			}
			if d.Type()&fs.ModeSymlink != 0 {
				if target, _ := os.Readlink(p); strings.Contains(target, marker) {
					t.Errorf("the marker is in the link %s", p)
				}
			}
			return nil
		})
	}
	lock, err := os.ReadFile(filepath.Join(root, "cache", "runpod-comfy", "resolved", "sec.lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(lock, []byte(`"source": "`+plain.URL+`/files/plain.bin"`)) {
		t.Errorf("the credentials were not stripped from the locked source:\n%s", lock)
	}
	if got, _ := os.ReadFile(filepath.Join(ext, "misc", "plain.bin")); !bytes.Equal(got, plainData) {
		t.Errorf("the external models directory lacks misc/plain.bin")
	}
}

// runCaptured runs the command line in-process with stdout and stderr captured.
func runCaptured(t *testing.T, args []string) (string, int) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stdout, stderr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = f, f
	code := run(context.Background(), args)
	os.Stdout, os.Stderr = stdout, stderr
	b, _ := os.ReadFile(f.Name())
	return string(b), code
}

// TestDownloadConnectionsFlag: --download-connections out of 1..64 is a usage error naming
// the flag, before anything is read.
func TestDownloadConnectionsFlag(t *testing.T) {
	for _, cmd := range []string{"build", "verify-models"} {
		for _, n := range []string{"-1", "65"} {
			out, code := runCaptured(t, []string{"--root", t.TempDir(), cmd, "nosuch", "--download-connections", n})
			if code == 0 || !strings.Contains(out, "--download-connections "+n+": must be from 1 to 64") {
				t.Fatalf("%s --download-connections %s: exit %d\n%s", cmd, n, code, out)
			}
		}
	}
}

// TestDownloadConnectionsFromSpec: the spec's options.download_connections reaches the model
// download options.
func TestDownloadConnectionsFromSpec(t *testing.T) {
	o, done, err := modelOptions(context.Background(), &specs.Spec{Options: specs.Options{DownloadConnections: 5}})
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if o.Connections != 5 {
		t.Fatalf("Connections %d, want 5", o.Connections)
	}
}
