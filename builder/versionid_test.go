package builder

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// A version id the spec rule accepts must build all the way to its root link: the rule that
// validates a spec and the rule that names a root are one rule (internal/layout.CheckVersionID).
func TestVersionIDWithPlusBuildsToRoot(t *testing.T) {
	const id = "sdxl+lora"
	if err := specs.CheckVersionID(id); err != nil {
		t.Fatalf("spec rule refuses %q: %v", id, err)
	}
	f := newFixture(t)
	root := filepath.Join(t.TempDir(), "root")
	res, err := Build(context.Background(), BuildOptions{Root: root, Spec: f.spec(id), Jobs: 2})
	if err != nil {
		t.Fatalf("build %s: %v", id, err)
	}
	target, err := os.Readlink(filepath.Join(root, "builds", "comfy-"+id))
	if err != nil || target != "../store/"+res.Root.String() {
		t.Fatalf("builds/comfy-%s -> %q (%v), want ../store/%s", id, target, err, res.Root)
	}
	if !strings.HasSuffix(res.Root.String(), "-comfy-"+id) {
		t.Errorf("root store path %s does not end in -comfy-%s", res.Root, id)
	}
}

// What the spec rule refuses, the builder refuses before any work.
func TestVersionIDRefusedBeforeWork(t *testing.T) {
	for _, id := range []string{"", ".hidden", "-x", "a/b", "a b", strings.Repeat("a", 101), "a=b", "a?b"} {
		if specs.CheckVersionID(id) == nil {
			t.Errorf("spec rule accepts %q", id)
		}
	}
}
