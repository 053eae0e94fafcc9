package builder

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

func TestRepairBrokenGitExport(t *testing.T) {
	f := newFixture(t)
	root := filepath.Join(t.TempDir(), "root")
	ctx := context.Background()
	spec := f.spec("demo")
	res, err := Build(ctx, BuildOptions{Root: root, Spec: spec, Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	// Flip a byte in node-a's export.
	nodeA := store.MustParsePath(res.Lock.CustomNodes[0].StorePath)
	file := filepath.Join(s.Abs(nodeA), "__init__.py")
	os.Chmod(filepath.Dir(file), 0o755)
	os.Chmod(file, 0o644)
	if err := os.WriteFile(file, []byte("NODE_CLASS_MAPPINGS = {'x': 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	r, err := NewRepairer(BuildOptions{Root: root, Jobs: 2}, []*specs.Spec{spec})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.Verify(ctx, store.VerifyOptions{Repair: r})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || rep.Problems[0].Path != nodeA.String() || !rep.Problems[0].Repaired {
		t.Fatalf("verify --repair: %+v", rep.Problems)
	}
	data, err := os.ReadFile(file)
	if err != nil || string(data) != "NODE_CLASS_MAPPINGS = {}\n" {
		t.Errorf("repaired file holds %q (%v)", data, err)
	}
	again, err := s.Verify(ctx, store.VerifyOptions{})
	if err != nil || len(again.Problems) != 0 {
		t.Errorf("verify after repair: %+v %v", again, err)
	}

	// An object no version plans cannot be repaired, and says why.
	other, err := NewRepairer(BuildOptions{Root: root}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := s.Meta(nodeA)
	if err := other.Repair(ctx, nodeA, m); err == nil {
		t.Error("repair without any version succeeded")
	}
}
