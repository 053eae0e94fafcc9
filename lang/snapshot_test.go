package lang

import (
	"context"
	"os"
	"path/filepath"
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
  "file_custom_nodes": [{"filename": "my_node.py", "disabled": false}],
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
		`registry node comfyui-kjnodes@1.0.5: not carried: Comfy Registry packages are not git sources; add it as a custom node with its repository and commit`,
		`file node my_node.py: not carried: single-file nodes have no repository; put it in a git repository and add it as a custom node`,
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
		"custom_nodes:\n  x: 1\n": "not a JSON snapshot: save it from ComfyUI-Manager as JSON (YAML snapshots are not read)",
		`{"nodes": []}`:           "not a ComfyUI-Manager snapshot: none of comfyui, git_custom_nodes, cnr_custom_nodes, file_custom_nodes, pips",
		`{"comfyui": 12}`:         "reading snapshot: json: cannot unmarshal number into Go struct field Snapshot.comfyui of type string",
	} {
		_, _, err := ImportSnapshot([]byte(in), "x", DefaultComfyRepo)
		if err == nil || err.Error() != want {
			t.Errorf("ImportSnapshot(%q) = %v, want %s", in, err, want)
		}
	}
}
