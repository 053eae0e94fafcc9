package builder

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/builder/git"
	"github.com/runpod-comfy/runpod-comfy/internal/progress"
)

// TestBuildRepairsBrokenMirror leaves node-a's mirror as a fetch that ran out of disk space
// leaves it (an empty pack index), then builds a version that needs a new commit of node-a:
// the build must succeed and say it repaired the mirror, where it used to fail with "commit
// not found on the remote" for good.
func TestBuildRepairsBrokenMirror(t *testing.T) {
	f := newFixture(t)
	root := filepath.Join(t.TempDir(), "root")
	if _, err := Build(context.Background(), BuildOptions{Root: root, Spec: f.spec("one")}); err != nil {
		t.Fatal(err)
	}
	mirror := git.NewMirrors(MirrorDir(root), git.Credentials{}).Path(f.nodeA)
	run(t, mirror, "git", "--git-dir="+mirror, "repack", "-a", "-d", "-q")
	idx, _ := filepath.Glob(filepath.Join(mirror, "objects", "pack", "*.idx"))
	if len(idx) != 1 {
		t.Fatalf("want one pack index, got %v", idx)
	}
	if err := os.WriteFile(idx[0], nil, 0o444); err != nil {
		t.Fatal(err)
	}
	next := commitFiles(t, f.nodeA, map[string]string{"new.py": "N = 1\n"}, "next")
	spec := f.spec("two")
	spec.CustomNodes[0].Ref, spec.CustomNodes[0].Commit = "", next
	var out bytes.Buffer
	pr := progress.New(context.Background(), &out, progress.Options{})
	_, err := Build(context.Background(), BuildOptions{Root: root, Spec: spec, Progress: pr})
	pr.Close()
	if err != nil {
		t.Fatalf("build with a broken mirror: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "git mirror of "+f.nodeA+" was broken") || !strings.Contains(out.String(), "is empty") {
		t.Errorf("the build did not say it repaired the mirror:\n%s", out.String())
	}
}
