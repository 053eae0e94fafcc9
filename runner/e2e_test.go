package runner

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/builder"
	"github.com/runpod-comfy/runpod-comfy/runner/standin"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// gitRepo makes a git repository of files with one commit.
func gitRepo(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "init"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
}

// TestBuiltRootEndToEnd runs the whole path with real components: the stand-in and a writable
// custom node in git repositories, builder.Build making the runtime root in a store, the
// launcher, the process, the API, and outputs delivered to GCS (fake-gcs-server, signed URLs)
// and to files.
func TestBuiltRootEndToEnd(t *testing.T) {
	work := t.TempDir()
	ctx := context.Background()
	if _, err := standin.WriteRepo(ctx, filepath.Join(work, "comfy")); err != nil {
		t.Fatal(err)
	}
	gitRepo(t, filepath.Join(work, "counter"), map[string]string{"__init__.py": `
import os
here = os.path.dirname(os.path.abspath(__file__))
path = os.path.join(here, "runs.txt")
with open(path, "a") as f:   # writes into its own folder at import
    f.write("x")

class Runs:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    def run(self):
        return {"ui": {"text": [str(len(open(path).read()))]}}

NODE_CLASS_MAPPINGS = {"Runs": Runs}
`})
	root := filepath.Join(work, "ROOT")
	spec := &specs.Spec{
		SchemaVersion: specs.SchemaVersion,
		VersionID:     "e2e",
		Comfy:         specs.Comfy{Repo: filepath.Join(work, "comfy"), Ref: "main"},
		CustomNodes:   []specs.CustomNode{{Name: "counter", Repo: filepath.Join(work, "counter"), Ref: "main", Writable: true}},
	}
	res, err := builder.Build(ctx, builder.BuildOptions{Root: root, Spec: spec, Environ: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := ReadManifest(res.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if !contains(m.Comfy.Flags, "--database-url") || !m.CustomNodes[0].Writable {
		t.Fatalf("manifest %+v", m)
	}

	srv := fakeGCS(t)
	u, _ := url.Parse(srv.URL())
	sa, _ := serviceAccount(t)
	gcs, err := NewGCSSink(ctx, GCSOptions{Bucket: "outs", Prefix: "e2e", CredentialsJSON: sa, Endpoint: srv.URL() + "/storage/v1/",
		SignedURLHost: u.Host, SignedURLInsecure: true, Validate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer gcs.Close()
	wf := []byte(`{"1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 255}},
		"2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "e2e"}},
		"3": {"class_type": "Runs", "inputs": {}}}`)
	start := StartOptions{RuntimeRoot: RootDir(root, "e2e"), StateDir: StateDir(root, "e2e"), ReadyTimeout: 30 * time.Second}
	out, err := RunOnce(ctx, OnceOptions{Start: start, Workflow: wf, Sink: gcs, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != "success" || len(out.Outputs) != 2 {
		t.Fatalf("result %+v", out)
	}
	img := out.Outputs[0]
	if !strings.Contains(img.URL, "/outs/e2e/"+out.PromptID+"/e2e_") || !strings.Contains(img.URL, "X-Goog-Signature=") {
		t.Errorf("URL %s", img.URL)
	}
	resp, err := http.Get(img.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if decodePNG(t, body).X != 16 {
		t.Error("the uploaded image is not the 16x16 PNG")
	}
	if out.Outputs[1].Text != "1" {
		t.Errorf("first start: the node ran %q times", out.Outputs[1].Text)
	}
	// Again, to files: the writable copy in the state dir keeps what the node wrote.
	dir := t.TempDir()
	out, err = RunOnce(ctx, OnceOptions{Start: start, Workflow: wf, Sink: FileSink{Dir: dir}})
	if err != nil {
		t.Fatal(err)
	}
	if out.Outputs[1].Text != "2" || !strings.HasPrefix(out.Outputs[0].Path, dir) {
		t.Errorf("second start: %+v", out.Outputs)
	}
	if b, _ := os.ReadFile(out.Outputs[0].Path); decodePNG(t, b).X != 16 {
		t.Error("the file output is not the PNG")
	}
	// The store object was not written to.
	if _, err := os.Stat(filepath.Join(res.Dir, "custom_nodes", "counter", "runs.txt")); !os.IsNotExist(err) {
		t.Errorf("the store copy of the writable node was written: %v", err)
	}
}
