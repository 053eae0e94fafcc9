package builder

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/store"
)

// rewriteMeta edits the metadata file of p in place (it is read-only, its directory is not).
func rewriteMeta(t *testing.T, root string, p store.Path, edit func(m map[string]any)) {
	t.Helper()
	file := filepath.Join(root, "store", ".meta", p.Digest().String()+".json")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, _ = json.Marshal(m)
	os.Remove(file)
	if err := os.WriteFile(file, b, 0o444); err != nil {
		t.Fatal(err)
	}
}

// TestFailedPostBuildCheckKeepsOldRoot: a build whose post-build check fails (a node's object
// does not hold its pinned commit) must leave builds/comfy-<id> on the previous root and make
// no new generation.
func TestFailedPostBuildCheckKeepsOldRoot(t *testing.T) {
	f := newFixture(t)
	root := filepath.Join(t.TempDir(), "root")
	ctx := context.Background()
	spec := f.spec("demo")
	first, err := Build(ctx, BuildOptions{Root: root, Spec: spec, Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "builds", "comfy-demo")
	before, _ := os.Readlink(link)

	// node-a's object now claims another commit; a spec change makes a new root that links it.
	pa, err := store.ParsePath(first.Lock.CustomNodes[0].StorePath)
	if err != nil {
		t.Fatal(err)
	}
	rewriteMeta(t, root, pa, func(m map[string]any) { m["ca"] = "git:" + strings.Repeat("0", 40) })
	spec2 := f.spec("demo")
	spec2.CustomNodes = spec2.CustomNodes[:1]
	_, err = Build(ctx, BuildOptions{Root: root, Spec: spec2, Jobs: 2})
	if err == nil || !strings.Contains(err.Error(), "not at its pinned commit") {
		t.Fatalf("build with a broken node: %v, want a post-build check failure", err)
	}
	if after, _ := os.Readlink(link); after != before {
		t.Errorf("builds/comfy-demo -> %s after a failed check, want it still at %s", after, before)
	}
	s, _ := store.Open(root)
	gens, err := s.Generations("demo")
	if err != nil || len(gens) != 1 {
		t.Errorf("generations after a failed check: %v (%v), want only the first", gens, err)
	}
}

// TestBuildRemakesObjectWithCorruptMetadata: a build that needs an object whose metadata is
// garbage treats it as not valid and makes it again (the new metadata replaces the file).
func TestBuildRemakesObjectWithCorruptMetadata(t *testing.T) {
	f := newFixture(t)
	root := filepath.Join(t.TempDir(), "root")
	ctx := context.Background()
	first, err := Build(ctx, BuildOptions{Root: root, Spec: f.spec("demo"), Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	pc, _ := store.ParsePath(first.Lock.Comfy.StorePath)
	file := filepath.Join(root, "store", ".meta", pc.Digest().String()+".json")
	os.Remove(file)
	if err := os.WriteFile(file, []byte(`{"path": "`), 0o444); err != nil {
		t.Fatal(err)
	}
	res, err := Build(ctx, BuildOptions{Root: root, Spec: f.spec("demo"), Jobs: 2})
	if err != nil {
		t.Fatalf("build over corrupt metadata: %v", err)
	}
	if res.Built != 1 || res.Root != first.Root {
		t.Errorf("built %d objects, root %s; want the git object made again and the same root %s", res.Built, res.Root, first.Root)
	}
	s, _ := store.Open(root)
	if m, err := s.Meta(pc); err != nil || m.NarHash != first.Lock.Comfy.NarHash {
		t.Errorf("comfyui after the rebuild: %v %v", m, err)
	}
}
