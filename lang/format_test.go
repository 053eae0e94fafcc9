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

// TestFormatHCLEscapes: strings that look like HCL templates stay literal through a round trip.
func TestFormatHCLEscapes(t *testing.T) {
	yes := true
	s := &specs.Spec{
		SchemaVersion: 2, VersionID: "esc",
		Comfy:       specs.Comfy{Repo: "https://github.com/comfyanonymous/ComfyUI", Commit: strings.Repeat("a", 40), InstallRequirements: &yes},
		CustomNodes: []specs.CustomNode{{Name: "n.x", Repo: "/srv/git/n x", Ref: "feature/x", Writable: true, Submodules: true}},
		Models:      []specs.Model{{Source: "https://e.com/a%20b.safetensors?x=${y}", TargetSubdir: "loras/sub", Name: "a.safetensors"}},
		Python:      &specs.Python{Packages: []string{"pkg @ https://e.com/p-1.0.whl#sha256=00"}, Constraints: []string{}},
		Env:         map[string]string{"A": "${HOME}", "B": "%{if x}y%{endif}", "C": "quote\" and \\ and \n newline"},
		Options:     specs.Options{Offline: true, Substituters: []string{"file:///cache"}},
	}
	data, err := FormatHCL(s)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "esc.hcl")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	back, _, err := LoadFile(context.Background(), p, Options{})
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if diff := cmp.Diff(specs.CanonicalJSON(s), specs.CanonicalJSON(back)); diff != "" {
		t.Errorf("round trip (-want +got):\n%s\n%s", diff, data)
	}
}

// TestSetVersionID rewrites only version_id, keeping comments and layout.
func TestSetVersionID(t *testing.T) {
	hclSrc := "# comment\nversion_id = \"a\" # trailing\ncomfy {\n  commit = \"main\"\n}\n"
	got, err := SetVersionID("a.hcl", []byte(hclSrc), "b")
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Replace(hclSrc, `"a"`, `"b"`, 1); string(got) != want {
		t.Errorf("HCL:\n%s\nwant\n%s", got, want)
	}
	jsonSrc := "{\n  \"//\": \"c\",\n  \"version_id\":   \"a\",\n  \"schema_version\": 2\n}\n"
	got, err = SetVersionID("a.json", []byte(jsonSrc), "b")
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Replace(jsonSrc, `"a"`, `"b"`, 1); string(got) != want {
		t.Errorf("JSON:\n%s\nwant\n%s", got, want)
	}
	if _, err := SetVersionID("a.json", []byte(`{"schema_version": 2}`), "b"); err == nil {
		t.Error("JSON without version_id: no error")
	}
}
