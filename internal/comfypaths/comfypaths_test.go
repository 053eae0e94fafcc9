package comfypaths

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	yaml "go.yaml.in/yaml/v3"
)

// TestLauncherQuotesTheRoot runs bin/comfyui from a root whose path has a space and a quote,
// through a symlink, from another working directory: main.py gets a yaml whose base_path is
// the root's real absolute path and whose entries are the root's folders.
func TestLauncherQuotesTheRoot(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "it's a root #1")
	sh, err := Launcher("v", RootEntries([]string{"checkpoints"}, true))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	os.MkdirAll(filepath.Join(root, "comfyui"), 0o755)
	os.WriteFile(filepath.Join(root, "bin", "comfyui"), []byte(sh), 0o755)
	os.WriteFile(filepath.Join(root, "comfyui", "main.py"), []byte("import sys\nprint(open(sys.argv[2]).read(), end='')\n"), 0o644)
	link := filepath.Join(base, "builds")
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(link, "bin", "comfyui"), "--cpu")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "COMFY_PYTHON=python3")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var doc map[string]map[string]string
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	real, _ := filepath.EvalSymlinks(root)
	want := map[string]map[string]string{Section: {"base_path": real, "checkpoints": "models/checkpoints", "custom_nodes": "custom_nodes"}}
	if d := cmp.Diff(want, doc); d != "" {
		t.Errorf("yaml (-want +got):\n%s\n%s", d, out)
	}

	// A root path ComfyUI would expand ($) is refused, not passed on.
	odd := filepath.Join(base, "a$HOME")
	os.Rename(root, odd)
	cmd = exec.Command(filepath.Join(odd, "bin", "comfyui"))
	out, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "a$HOME") {
		t.Errorf("root with $: %v\n%s", err, out)
	}
}

// TestYAMLRefuses: what ComfyUI would read as something else is refused with the field named.
func TestYAMLRefuses(t *testing.T) {
	for _, c := range []struct {
		base string
		e    Entry
		want string
	}{
		{"", Entry{"a\nb", "p"}, "model folder name"},
		{"", Entry{"base_path", "p"}, "reserves"},
		{"", Entry{"is_default", "p"}, "reserves"},
		{"", Entry{"a", "p\n/etc"}, "path of folder a"},
		{"", Entry{"", "p"}, "empty"},
		{"", Entry{"a", strings.Repeat("x", 5000)}, "longer"},
		{"", Entry{"a", "\xff"}, "UTF-8"},
		{"/r\x00", Entry{"a", "p"}, "base_path"},
	} {
		if _, err := YAML("", c.base, []Entry{c.e}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error with %q", c, err, c.want)
		}
	}
	if _, err := Launcher("v\nx", nil); err == nil {
		t.Error("a version id with a newline made a launcher")
	}
}
