package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

// TestBuiltRootsStartInEveryEra builds roots with and without custom nodes and models (and
// with a writable node) and starts each, for every era of ComfyUI's yaml loader, through the
// root's bin/comfyui run from an unrelated working directory and through the runner (as
// run-ui, run-handler and serve do): the stand-in lists every custom_nodes path as ComfyUI
// does and dies on a missing one, and takes relative paths as the era does.
func TestBuiltRootsStartInEveryEra(t *testing.T) {
	work := t.TempDir()
	ctx := context.Background()
	if _, err := standin.WriteRepo(ctx, filepath.Join(work, "comfy")); err != nil {
		t.Fatal(err)
	}
	gitRepo(t, filepath.Join(work, "node"), map[string]string{"__init__.py": `
class Hello:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    def run(self):
        return {"ui": {"text": ["hello"]}}

NODE_CLASS_MAPPINGS = {"Hello": Hello}
`})
	model := filepath.Join(work, "tiny.safetensors")
	if err := os.WriteFile(model, []byte("tiny model\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("tiny model\n"))
	root := filepath.Join(work, "ROOT")
	comfy := specs.Comfy{Repo: filepath.Join(work, "comfy"), Ref: "main"}
	node := func(writable bool) []specs.CustomNode {
		return []specs.CustomNode{{Name: "hello", Repo: filepath.Join(work, "node"), Ref: "main", Writable: writable}}
	}
	models := []specs.Model{{Source: model, TargetSubdir: "checkpoints", Checksum: "sha256:" + hex.EncodeToString(sum[:])}}
	// Each version is started in the eras where it can break (every start takes seconds): the
	// runner's working directory is the state dir, which only legacy eras read paths against.
	versions := []struct {
		spec            *specs.Spec
		node, mdl       bool
		runner, launchr []string // eras to start it in through each way
	}{
		{spec: &specs.Spec{VersionID: "bare", Comfy: comfy}, runner: []string{"legacy"}, launchr: []string{"legacy"}},
		{spec: &specs.Spec{VersionID: "nodes", Comfy: comfy, CustomNodes: node(false)}, node: true, launchr: []string{"pre-b9d9bcb"}},
		{spec: &specs.Spec{VersionID: "models", Comfy: comfy, Models: models}, mdl: true, launchr: []string{"current"}},
		{spec: &specs.Spec{VersionID: "both", Comfy: comfy, CustomNodes: node(false), Models: models}, node: true, mdl: true,
			runner: []string{"pre-b9d9bcb"}, launchr: []string{"legacy"}},
		{spec: &specs.Spec{VersionID: "writable", Comfy: comfy, CustomNodes: node(true), Models: models}, node: true, mdl: true,
			runner: []string{"legacy"}},
	}
	elsewhere := t.TempDir() // the working directory of bin/comfyui: nothing of the root's
	for _, v := range versions {
		v.spec.SchemaVersion = specs.SchemaVersion
		res, err := builder.Build(ctx, builder.BuildOptions{Root: root, Spec: v.spec, Environ: os.Environ()})
		if err != nil {
			t.Fatalf("%s: %v", v.spec.VersionID, err)
		}
		// Every folder the root's yaml names exists; nothing else is named.
		y, err := os.ReadFile(filepath.Join(res.Dir, "extra_model_paths.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(y), `"custom_nodes"`) != v.node || isDir(filepath.Join(res.Dir, "custom_nodes")) != v.node {
			t.Errorf("%s: custom_nodes in the yaml or the root, want %v:\n%s", v.spec.VersionID, v.node, y)
		}
		if strings.Contains(string(y), `"models/checkpoints"`) != v.mdl || isDir(filepath.Join(res.Dir, "models", "checkpoints")) != v.mdl {
			t.Errorf("%s: models/checkpoints in the yaml or the root, want %v:\n%s", v.spec.VersionID, v.mdl, y)
		}
		check := func(how string, c *Client) {
			t.Helper()
			var info map[string]json.RawMessage
			if err := getJSON(ctx, c, "/object_info", &info); err != nil {
				t.Fatalf("%s: %v", how, err)
			}
			if _, ok := info["Hello"]; ok != v.node {
				t.Errorf("%s: node Hello loaded %v, want %v", how, ok, v.node)
			}
			var files []string
			if err := getJSON(ctx, c, "/models/checkpoints", &files); err != nil {
				t.Fatalf("%s: %v", how, err)
			}
			if got := strings.Join(files, ","); (got == "tiny.safetensors") != v.mdl {
				t.Errorf("%s: checkpoints %q (want the model: %v)", how, got, v.mdl)
			}
		}
		for _, era := range v.runner {
			how := v.spec.VersionID + "/" + era + " (runner)"
			p, err := Start(ctx, StartOptions{RuntimeRoot: RootDir(root, v.spec.VersionID), StateDir: StateDir(root, v.spec.VersionID),
				Env: map[string]string{"STANDIN_COMFY_ERA": era}, ReadyTimeout: time.Minute})
			if err != nil {
				t.Fatalf("%s: %v", how, err)
			}
			check(how, p.Client())
			p.Stop(ctx)
		}
		for _, era := range v.launchr {
			// Through the builds/ link, from an unrelated working directory.
			how := v.spec.VersionID + "/" + era + " (bin/comfyui)"
			c, stop := startLauncher(t, filepath.Join(RootDir(root, v.spec.VersionID), "bin", "comfyui"), elsewhere, era)
			check(how, c)
			stop()
		}
	}
}

// startLauncher runs a root's bin/comfyui with working directory dir and the stand-in's era,
// its writable directories in a temporary directory; it returns a client once the stand-in
// answers, and a function that kills it (also called when the test ends).
func startLauncher(t *testing.T, launcher, dir, era string) (*Client, func()) {
	t.Helper()
	port, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	if err := os.Mkdir(filepath.Join(tmp, "user"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(launcher, "--listen", "127.0.0.1", "--port", strconv.Itoa(port),
		"--output-directory", filepath.Join(tmp, "out"), "--input-directory", filepath.Join(tmp, "in"),
		"--temp-directory", tmp, "--user-directory", filepath.Join(tmp, "user"),
		"--database-url", "sqlite:///"+filepath.Join(tmp, "user", "db"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "STANDIN_COMFY_ERA="+era, "COMFY_PYTHON=python3", "PYTHONUNBUFFERED=1")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() { cmd.Process.Kill(); <-exited }
	t.Cleanup(stop)
	c := NewClient("http://127.0.0.1:" + strconv.Itoa(port))
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(time.Minute)
	for {
		if c.Ready(context.Background()) == nil {
			return c, stop
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before it was ready:\n%s", launcher, out.String())
		case <-deadline:
			t.Fatalf("%s did not answer:\n%s", launcher, out.String())
		case <-tick.C:
		}
	}
}

// getJSON decodes the JSON answer of GET p.
func getJSON(ctx context.Context, c *Client, p string, v any) error {
	resp, err := c.get(ctx, p, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", p, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
