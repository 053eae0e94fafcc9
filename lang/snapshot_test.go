package lang

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

func TestImportSnapshot(t *testing.T) {
	snap := `{
  "comfyui": "E2A1F8B7C6D5403F9B8A7E6D5C4B3A29180F7E6D",
  "git_custom_nodes": {
    "https://github.com/ltdrdata/ComfyUI-Impact-Pack": {"hash": "4a9c1e0f6b7d8e2f3a5b6c7d8e9f0a1b2c3d4e5f", "disabled": false},
    "https://github.com/cubiq/ComfyUI_IPAdapter_plus.git": {"hash": "main", "disabled": false},
    "https://github.com/old/Disabled-Node": {"hash": "9b3e7f5a1c2d4e6f8a0b1c3d5e7f9a2b4c6d8e0f", "disabled": true},
    "git://example.com/x/Old-Proto": {"hash": "9b3e7f5a1c2d4e6f8a0b1c3d5e7f9a2b4c6d8e0f", "disabled": false}
  },
  "cnr_custom_nodes": {"comfyui-kjnodes": "1.0.5"},
  "file_custom_nodes": [{"filename": "my_node.py", "disabled": true}],
  "pips": {
    "torch==2.5.1+cu124": "",
    "torchvision==0.20.1": "",
    "nvidia-cudnn-cu12==9.1.0.70": "",
    "numpy==1.26.4": "",
    "opencv-python-headless==4.10.0.84": "",
    "segment_anything": "git+https://github.com/facebookresearch/segment-anything@6fdee8f",
    "-e /home/me/dev/thing": ""
  },
  "extra_field": 1
}`
	s, notes, err := ImportSnapshot([]byte(snap), "imported", DefaultComfyRepo)
	if err != nil {
		t.Fatal(err)
	}
	want := &specs.Spec{
		SchemaVersion: 2, VersionID: "imported",
		Comfy: specs.Comfy{Repo: DefaultComfyRepo, Commit: "e2a1f8b7c6d5403f9b8a7e6d5c4b3a29180f7e6d"},
		CustomNodes: []specs.CustomNode{
			{Name: "ComfyUI_IPAdapter_plus", Repo: "https://github.com/cubiq/ComfyUI_IPAdapter_plus.git", Ref: "main"},
			{Name: "ComfyUI-Impact-Pack", Repo: "https://github.com/ltdrdata/ComfyUI-Impact-Pack", Commit: "4a9c1e0f6b7d8e2f3a5b6c7d8e9f0a1b2c3d4e5f"},
			{Name: "comfyui-kjnodes", Registry: "comfyui-kjnodes", Version: "1.0.5"},
		},
		Python: &specs.Python{Packages: []string{"numpy==1.26.4", "opencv-python-headless==4.10.0.84",
			"segment_anything @ git+https://github.com/facebookresearch/segment-anything@6fdee8f"}},
	}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
	wantNotes := []string{
		`snapshot field "extra_field": not carried (unknown to this importer)`,
		`git node git://example.com/x/Old-Proto: not carried: git URL "git://example.com/x/Old-Proto": scheme "git" is not accepted: use https://, ssh:// (or git@host:path), file:// or an absolute path`,
		`git node https://github.com/cubiq/ComfyUI_IPAdapter_plus.git: "main" is not a full commit: taken as a ref to resolve`,
		`git node https://github.com/old/Disabled-Node: not carried: it is disabled in the snapshot`,
		`file node my_node.py (disabled): not carried: single-file nodes have no repository`,
		`pip -e /home/me/dev/thing: not carried: a local or editable install`,
		`pip: left to the base image (torch family and nvidia-*): nvidia-cudnn-cu12, torch, torchvision`,
	}
	if diff := cmp.Diff(wantNotes, notes); diff != "" {
		t.Errorf("notes (-want +got):\n%s", diff)
	}
	// The imported spec is valid as written.
	data, err := FormatJSON(s)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "imported.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadFile(context.Background(), p, Options{}); err != nil {
		t.Errorf("imported spec does not load: %v\n%s", err, data)
	}
}

func TestImportSnapshotRejects(t *testing.T) {
	for in, want := range map[string]string{
		"custom_nodes:\n  x: 1\n": "not a ComfyUI-Manager snapshot: none of comfyui, git_custom_nodes, cnr_custom_nodes, file_custom_nodes, pips",
		"- a\n- b\n":              "not a ComfyUI-Manager snapshot: the YAML document is a []interface {}, not a mapping",
		"a: [\n":                  "neither a JSON nor a YAML snapshot: yaml: line 1: did not find expected node content",
		`{"file_custom_nodes": [{"filename": "b.py", "disabled": false}, {"filename": "a.py", "disabled": false}, {"filename": "c.py", "disabled": true}]}`: "file node(s) a.py, b.py: a single-file node has no repository or registry id to build it from: put it in a git repository (or publish it to the registry) and add it as a custom node, or remove it from the snapshot",
		`{"nodes": []}`:   "not a ComfyUI-Manager snapshot: none of comfyui, git_custom_nodes, cnr_custom_nodes, file_custom_nodes, pips",
		`{"comfyui": 12}`: "reading snapshot: json: cannot unmarshal number into Go struct field Snapshot.comfyui of type string",
	} {
		_, _, err := ImportSnapshot([]byte(in), "x", DefaultComfyRepo)
		if err == nil || err.Error() != want {
			t.Errorf("ImportSnapshot(%q) = %v, want %s", in, err, want)
		}
	}
}

// A snapshot as ComfyUI-Manager's yaml.dump writes it (generated with PyYAML 6: the snapshot
// under custom_nodes, keys sorted, a commit of digits quoted), and the same with the quotes
// lost: both import like the JSON form.
func TestImportSnapshotYAML(t *testing.T) {
	manager := `custom_nodes:
  cnr_custom_nodes:
    comfyui-kjnodes: 1.0.5
    rgthree-comfy: 1.0.0
  comfyui: e2a1f8b7c6d5403f9b8a7e6d5c4b3a29180f7e6d
  file_custom_nodes:
  - disabled: true
    filename: off.py
  git_custom_nodes:
    https://github.com/digits/only:
      disabled: false
      hash: '1234567890123456789012345678901234567890'
    https://github.com/ltdrdata/ComfyUI-Impact-Pack:
      disabled: false
      hash: 4a9c1e0f6b7d8e2f3a5b6c7d8e9f0a1b2c3d4e5f
  pips:
    numpy==1.26.4: ''
    segment_anything: git+https://github.com/facebookresearch/segment-anything@6fdee8f
    torch==2.5.1: ''
`
	want := &specs.Spec{
		SchemaVersion: 2, VersionID: "y",
		Comfy: specs.Comfy{Repo: DefaultComfyRepo, Commit: "e2a1f8b7c6d5403f9b8a7e6d5c4b3a29180f7e6d"},
		CustomNodes: []specs.CustomNode{
			{Name: "only", Repo: "https://github.com/digits/only", Commit: "1234567890123456789012345678901234567890"},
			{Name: "ComfyUI-Impact-Pack", Repo: "https://github.com/ltdrdata/ComfyUI-Impact-Pack", Commit: "4a9c1e0f6b7d8e2f3a5b6c7d8e9f0a1b2c3d4e5f"},
			{Name: "comfyui-kjnodes", Registry: "comfyui-kjnodes", Version: "1.0.5"},
			{Name: "rgthree-comfy", Registry: "rgthree-comfy", Version: "1.0.0"},
		},
		Python: &specs.Python{Packages: []string{"numpy==1.26.4", "segment_anything @ git+https://github.com/facebookresearch/segment-anything@6fdee8f"}},
	}
	for name, in := range map[string]string{"manager": manager, "unquoted": strings.Replace(manager, "'1234567890123456789012345678901234567890'", "1234567890123456789012345678901234567890", 1)} {
		s, _, err := ImportSnapshot([]byte(in), "y", DefaultComfyRepo)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(want, s); diff != "" {
			t.Errorf("%s: spec (-want +got):\n%s", name, diff)
		}
	}
	// Aliases may not blow up.
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
	if _, _, err := ImportSnapshot([]byte(bomb), "y", DefaultComfyRepo); err == nil {
		t.Error("an alias bomb was read")
	}
}

// ExportSnapshot writes what Manager's restore reads; importing it gives back the nodes and
// packages, in JSON and in YAML.
func TestExportSnapshot(t *testing.T) {
	l := &specs.Lock{LockVersion: 1, VersionID: "v",
		Comfy: specs.GitLock{Repo: DefaultComfyRepo, Commit: "e2a1f8b7c6d5403f9b8a7e6d5c4b3a29180f7e6d"},
		CustomNodes: []specs.NodeLock{
			{Name: "ComfyUI-Impact-Pack", GitLock: specs.GitLock{Repo: "https://github.com/ltdrdata/ComfyUI-Impact-Pack", Commit: "1234567890123456789012345678901234567890"}, InstallRequirements: true},
			{Name: "kj", Registry: &specs.RegistryLock{ID: "comfyui-kjnodes", Request: "^1.0.0", Version: "1.0.5", URL: "https://cdn/x.zip", SHA256: "sha256:" + strings.Repeat("a", 64)}},
		},
		Python: &specs.PythonLock{Packages: []specs.PackageLock{{Name: "numpy", Version: "1.26.4"}, {Name: "alpha", Version: "1.0"}}},
	}
	snap, notes := ExportSnapshot(l)
	wantNotes := []string{
		`custom node "kj": Manager installs it as custom_nodes/comfyui-kjnodes`,
		`custom node "kj": install_requirements = false is not carried (Manager installs a node's requirements)`,
	}
	if diff := cmp.Diff(wantNotes, notes); diff != "" {
		t.Errorf("notes (-want +got):\n%s", diff)
	}
	js, err := snap.MarshalManagerJSON()
	if err != nil {
		t.Fatal(err)
	}
	ys, err := snap.MarshalManagerYAML()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(ys), "custom_nodes:\n  cnr_custom_nodes:\n    comfyui-kjnodes: 1.0.5\n") ||
		!strings.Contains(string(ys), `hash: "1234567890123456789012345678901234567890"`) {
		t.Errorf("YAML:\n%s", ys)
	}
	for name, data := range map[string][]byte{"json": js, "yaml": ys} {
		s, notes, err := ImportSnapshot(data, "v", DefaultComfyRepo)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(notes) != 0 {
			t.Errorf("%s: notes %q", name, notes)
		}
		want := []specs.CustomNode{
			{Name: "ComfyUI-Impact-Pack", Repo: "https://github.com/ltdrdata/ComfyUI-Impact-Pack", Commit: "1234567890123456789012345678901234567890"},
			{Name: "comfyui-kjnodes", Registry: "comfyui-kjnodes", Version: "1.0.5"},
		}
		if diff := cmp.Diff(want, s.CustomNodes); diff != "" {
			t.Errorf("%s: nodes (-want +got):\n%s", name, diff)
		}
		if s.Comfy.Commit != l.Comfy.Commit || s.Python == nil || strings.Join(s.Python.Packages, " ") != "alpha==1.0 numpy==1.26.4" {
			t.Errorf("%s: %+v %+v", name, s.Comfy, s.Python)
		}
	}
}
