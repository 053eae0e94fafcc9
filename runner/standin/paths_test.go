package standin

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/runpod-comfy/runpod-comfy/internal/comfypaths"
)

// runPy runs a Python snippet with the stand-in's modules importable (as ComfyUI's main.py
// has them), in working directory cwd with STANDIN_COMFY_ERA=era, and returns its stdout.
func runPy(t *testing.T, cwd, era, code string, args ...string) (string, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "comfyui")
	if err := WriteTree(dir); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("python3", append([]string{"-c", "import sys; sys.path.insert(0, sys.argv[1]); del sys.argv[1]\n" + code, dir}, args...)...)
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), "STANDIN_COMFY_ERA="+era, "PYTHONDONTWRITEBYTECODE=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

// TestExtraConfigEras: the stand-in reads relative paths as each era of ComfyUI's
// load_extra_path_config does.
func TestExtraConfigEras(t *testing.T) {
	base := t.TempDir()
	cwd := filepath.Join(base, "cwd")
	ydir := filepath.Join(base, "conf")
	for _, d := range []string{cwd, ydir} {
		os.MkdirAll(d, 0o755)
	}
	yml := filepath.Join(ydir, "extra.yaml")
	os.WriteFile(yml, []byte(`# as people write them
with_base:
  base_path: rel
  checkpoints: models/checkpoints/
  loras: |
    a
    b
without_base:
  vae: v
absolute:
  upscale_models: /abs/up
`), 0o644)
	code := `import json, folder_paths
folder_paths.load_extra_path_config(sys.argv[1], lambda m: None)
print(json.dumps({k: folder_paths.folder_names_and_paths[k][-2 if k == "loras" else -1:] for k in ("checkpoints", "loras", "vae", "upscale_models")}))`
	for era, want := range map[string]map[string][]string{
		"current": {"checkpoints": {ydir + "/rel/models/checkpoints"}, "loras": {ydir + "/rel/a", ydir + "/rel/b"},
			"vae": {ydir + "/v"}, "upscale_models": {"/abs/up"}},
		"pre-b9d9bcb": {"checkpoints": {"rel/models/checkpoints/"}, "loras": {"rel/a", "rel/b"},
			"vae": {ydir + "/v"}, "upscale_models": {"/abs/up"}},
		"legacy": {"checkpoints": {"rel/models/checkpoints/"}, "loras": {"rel/a", "rel/b"},
			"vae": {"v"}, "upscale_models": {"/abs/up"}},
	} {
		out, err := runPy(t, cwd, era, code, yml)
		if err != nil {
			t.Fatalf("%s: %v\n%s", era, err, out)
		}
		var got map[string][]string
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%s: %v: %s", era, err, out)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", era, d)
		}
	}
}

// TestMissingCustomNodesFolderIsFatal: as ComfyUI's main.py and nodes.py, the stand-in lists
// each custom_nodes path and fails on a missing one; a relative one is found against the
// working directory in legacy eras.
func TestMissingCustomNodesFolderIsFatal(t *testing.T) {
	base := t.TempDir()
	yml := filepath.Join(base, "extra.yaml")
	os.WriteFile(yml, []byte("s:\n  custom_nodes: nodes\n"), 0o644)
	code := `import folder_paths, nodes
folder_paths.load_extra_path_config(sys.argv[1], lambda m: None)
nodes.load_custom_nodes(print)
print("loaded")`
	if out, err := runPy(t, base, "current", code, yml); err == nil || !strings.Contains(out, "FileNotFoundError") {
		t.Errorf("missing folder: %v\n%s", err, out)
	}
	os.MkdirAll(filepath.Join(base, "nodes"), 0o755)
	if out, err := runPy(t, base, "legacy", code, yml); err != nil || !strings.Contains(out, "loaded") {
		t.Errorf("legacy, cwd with the folder: %v\n%s", err, out)
	}
	if out, err := runPy(t, t.TempDir(), "legacy", code, yml); err == nil || !strings.Contains(out, "FileNotFoundError") {
		t.Errorf("legacy, another cwd: %v\n%s", err, out)
	}
}

// TestYAMLSubsetAgreesWithPyYAML: the stand-in's YAML reader gives what PyYAML's safe_load
// gives, for the files runpod-comfy writes (hostile names included) and for hand-written ones;
// it refuses what it does not read rather than guess. The comparison with PyYAML runs where
// PyYAML is installed.
func TestYAMLSubsetAgreesWithPyYAML(t *testing.T) {
	var docs []string
	for _, name := range []string{"checkpoints", "ckpt #1", "x: y", `q"d`, "s'q", "- i", "{f}", "ünï", "null", "true", "a\\b", "$HOME", "~"} {
		b, err := comfypaths.YAML("comment\nlines", "/r o'o/t", []comfypaths.Entry{{Folder: name, Path: "models/" + name}, {Folder: "custom_nodes", Path: "/abs/" + name}})
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	empty, _ := comfypaths.YAML("c", "", nil)
	sh, _ := comfypaths.Launcher("v", comfypaths.RootEntries([]string{"loras"}, true))
	launcherDoc := sh[strings.Index(sh, "<<RUNPOD_COMFY_YAML\n")+len("<<RUNPOD_COMFY_YAML\n") : strings.LastIndex(sh, "RUNPOD_COMFY_YAML")]
	launcherDoc = strings.ReplaceAll(launcherDoc, "${yroot}", "'/work''s root'")
	docs = append(docs, string(empty), launcherDoc,
		"a111:\n    base_path: path/to/stable-diffusion-webui/\n\n    checkpoints: models/Stable-diffusion\n    upscale_models: |\n                  models/ESRGAN\n                  models/RealESRGAN\n    is_default: true\n    n: 12\n#comfyui:\n#     base_path: x\n",
		"other: \n  a: 'it''s' # c\n  b: \"\\u00e9\\t\\x41\"\n  c: ~\n  d: No\nnone:\n")
	bad := []string{"a:\n  b: [x]\n", "a:\n  b: \"x\n", "a:\n  b: c\n   d: e\n", "a:\n  b: \"\x01\"\n", "a:\n\tb: c\n"}
	js, _ := json.Marshal([][]string{docs, bad})
	f := filepath.Join(t.TempDir(), "docs.json")
	os.WriteFile(f, js, 0o644)
	out, err := runPy(t, t.TempDir(), "current", `import json, yaml_subset
try:
    import yaml
except ImportError:
    yaml = None
docs, bad = json.load(open(sys.argv[1]))
res = []
for doc in docs:
    mine = yaml_subset.safe_load(doc)
    theirs = yaml.safe_load(doc) if yaml else mine
    res.append([mine == theirs, repr(mine), repr(theirs)])
refused = []
for doc in bad:
    try:
        yaml_subset.safe_load(doc)
        refused.append(False)
    except yaml_subset.YAMLError:
        refused.append(True)
print(json.dumps({"pyyaml": yaml is not None, "res": res, "refused": refused}))`, f)
	if err != nil {
		t.Fatal(err, out)
	}
	var got struct {
		PyYAML  bool
		Res     [][3]any
		Refused []bool
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err, out)
	}
	for i, r := range got.Res {
		if r[0] != true {
			t.Errorf("doc %d:\n%s\nstand-in: %v\nPyYAML:   %v", i, docs[i], r[1], r[2])
		}
	}
	// Each generated document has exactly its one section with its keys.
	if !strings.Contains(got.Res[1][1].(string), `'ckpt #1': 'models/ckpt #1'`) {
		t.Errorf("doc 1 read as %v", got.Res[1][1])
	}
	if !got.PyYAML {
		t.Log("PyYAML is not installed: the stand-in's reader was not compared with it")
	}
	// What the reader does not know is refused, as PyYAML refuses a broken file.
	for i, ok := range got.Refused {
		if !ok {
			t.Errorf("%q was not refused", bad[i])
		}
	}
}
