package builder

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	yaml "go.yaml.in/yaml/v3"

	"github.com/runpod-comfy/runpod-comfy/internal/comfypaths"
)

// rootYAML renders the root yaml of a root with a model in each of folders and one node.
func rootYAML(t *testing.T, folders ...string) ([]byte, error) {
	t.Helper()
	r := &RootParams{VersionID: "v", Links: []RootLink{{Path: "custom_nodes/n", Target: "x-n"}}}
	for _, f := range folders {
		r.Links = append(r.Links, RootLink{Path: "models/" + f + "/m.safetensors", Target: "x-m"})
	}
	entries, err := rootEntries(r)
	if err != nil {
		return nil, err
	}
	return comfypaths.RootYAML(r.VersionID, entries)
}

// TestRootYAMLHostileFolderNames: whatever a model's target_subdir holds, the root's yaml has
// one section whose keys are exactly the folders, each pointing at models/<folder>, or the
// build is refused; a name can never add a key, a section or a second path.
func TestRootYAMLHostileFolderNames(t *testing.T) {
	for _, name := range []string{
		"ckpt #1", "x: y", `quote"d`, "single'q", "- item", "{flow}", "[seq]", "&anchor", "*alias",
		"!tag", "|", ">", "%d", "@at", "`tick`", "trailing ", " leading", "ünïcode", "~", "null",
		"true", "123", "a\\b", "$HOME", "..."} {
		y, err := rootYAML(t, name, "checkpoints")
		if err != nil {
			t.Errorf("%q: %v", name, err)
			continue
		}
		var doc map[string]map[string]string
		if err := yaml.Unmarshal(y, &doc); err != nil {
			t.Errorf("%q: the yaml does not parse: %v\n%s", name, err, y)
			continue
		}
		want := map[string]map[string]string{"runpod_comfy": {
			name: "models/" + name, "checkpoints": "models/checkpoints", "custom_nodes": "custom_nodes"}}
		if d := cmp.Diff(want, doc); d != "" {
			t.Errorf("%q: yaml (-want +got):\n%s\n%s", name, d, y)
		}
	}
	for _, name := range []string{
		"a\n  custom_nodes: /etc", "a\nevil:\n  custom_nodes: /", "tab\there", "cr\rx", "nul\x00",
		"line\u2028sep", "base_path", "is_default", "esc\x1b[0m"} {
		if y, err := rootYAML(t, name); err == nil {
			t.Errorf("%q: accepted:\n%s", name, y)
		} else if !strings.Contains(err.Error(), "model folder name") {
			t.Errorf("%q: error %v does not say which field", name, err)
		}
	}
}

// TestRootYAMLNamesOnlyWhatTheRootHas: no custom_nodes entry without nodes, no models entry
// without models, and still a valid document ComfyUI can iterate over.
func TestRootYAMLNamesOnlyWhatTheRootHas(t *testing.T) {
	entries, err := rootEntries(&RootParams{VersionID: "bare"})
	if err != nil {
		t.Fatal(err)
	}
	y, err := comfypaths.RootYAML("bare", entries)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]map[string]string
	if err := yaml.Unmarshal(y, &doc); err != nil {
		t.Fatal(err)
	}
	if sec, ok := doc["runpod_comfy"]; !ok || sec == nil || len(sec) != 0 || len(doc) != 1 {
		t.Errorf("bare root yaml %q gives %v, want one empty section", y, doc)
	}
}
