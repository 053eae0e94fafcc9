package standin

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

func TestFlags(t *testing.T) {
	flags := Flags()
	for _, want := range []string{"--listen", "--port", "--output-directory", "--input-directory", "--temp-directory", "--user-directory", "--database-url", "--extra-model-paths-config", "--disable-auto-launch", "--disable-metadata", "--cpu", "--verbose", "--log-stdout"} {
		if !slices.Contains(flags, want) {
			t.Errorf("cli_args.py lacks %s", want)
		}
	}
}

func TestWriteRepoIsDeterministic(t *testing.T) {
	ctx := context.Background()
	a, err := WriteRepo(ctx, filepath.Join(t.TempDir(), "a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := WriteRepo(ctx, filepath.Join(t.TempDir(), "b"))
	if err != nil {
		t.Fatal(err)
	}
	if a != b || len(a) != 40 {
		t.Errorf("commits %s and %s", a, b)
	}
}

func TestWriteRoot(t *testing.T) {
	dir := t.TempDir()
	err := WriteRoot(dir, RootOptions{VersionID: "v", CustomNodes: map[string]map[string]string{"n": {"__init__.py": "NODE_CLASS_MAPPINGS = {}\n"}}, Writable: []string{"n"}, Models: map[string]string{"loras/a.safetensors": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m specs.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.VersionID != "v" || len(m.CustomNodes) != 1 || !m.CustomNodes[0].Writable || m.Models[0].Target != "loras/a.safetensors" || !slices.Contains(m.Comfy.Flags, "--user-directory") {
		t.Errorf("manifest %+v", m)
	}
	y, _ := os.ReadFile(filepath.Join(dir, "extra_model_paths.yaml"))
	if !strings.HasSuffix(string(y), "\n\"runpod_comfy\":\n  \"loras\": \"models/loras\"\n  \"custom_nodes\": \"custom_nodes\"\n") {
		t.Errorf("yaml %q", y)
	}
	if fi, err := os.Stat(filepath.Join(dir, "bin", "comfyui")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("launcher: %v", err)
	}
}
