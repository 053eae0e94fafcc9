package builder

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/builder/git"
	"github.com/runpod-comfy/runpod-comfy/internal/faulttest"
	"github.com/runpod-comfy/runpod-comfy/internal/progress"
	"github.com/runpod-comfy/runpod-comfy/specs"
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

// TestSIGTERMEndsStalledFetch runs a build whose custom node's remote never answers (its
// git-upload-pack blocks for ever) and sends it SIGTERM: the process must exit and leave no
// git process behind. Before, go-git waited on git-upload-pack through any signal.
func TestSIGTERMEndsStalledFetch(t *testing.T) {
	f := newFixture(t)
	stalled := filepath.Join(f.dir, "stalled")
	c := newRepo(t, stalled, map[string]string{"__init__.py": "\n"})
	if err := syscall.Mkfifo(filepath.Join(stalled, ".git", "objects", "info", "alternates"), 0o644); err != nil {
		t.Skipf("no FIFO here: %v", err)
	}
	spec := f.spec("stalled")
	spec.CustomNodes = append(spec.CustomNodes, specs.CustomNode{Name: "stalled", Repo: stalled, Commit: c})
	root := filepath.Join(t.TempDir(), "root")
	cmd, _, stderr := buildProcess(t, spec, root)
	waitFor(t, "git running against the stalled remote", func() bool { return len(faulttest.Mentioning(stalled)) > 0 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("the build succeeded after SIGTERM")
		}
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("the build did not exit after SIGTERM; stderr:\n%s", stderr)
	}
	if left := faulttest.Mentioning(stalled); len(left) > 0 {
		t.Errorf("processes left after the build exited: %q", left)
	}
}

// TestBuildOnFullDiskEnds builds a version with a 4 MB custom node into a ROOT on a 3 MB disk:
// the build must end with an error saying the disk is full (it used to hang in the fetch,
// through SIGTERM too), and once there is space the same ROOT builds.
func TestBuildOnFullDiskEnds(t *testing.T) {
	disk := faulttest.SmallDisk(t, 3<<20)
	f := newFixture(t)
	big := make([]byte, 4<<20)
	rand.Read(big)
	dir := filepath.Join(f.dir, "heavy")
	c := newRepo(t, dir, map[string]string{"__init__.py": "\n", "weights.bin": string(big)})
	spec := f.spec("heavy")
	spec.CustomNodes = append(spec.CustomNodes, specs.CustomNode{Name: "heavy", Repo: dir, Commit: c})
	root := filepath.Join(disk, "root")
	done := make(chan error, 1)
	go func() {
		_, err := Build(context.Background(), BuildOptions{Root: root, Spec: spec})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no space left on device") {
			t.Fatalf("want a full-disk error, got %v", err)
		}
		t.Logf("full disk: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the build hung on a full disk")
	}
	if out, err := exec.Command("mount", "-o", "remount,size=64m", disk).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
	if _, err := Build(context.Background(), BuildOptions{Root: root, Spec: spec}); err != nil {
		t.Fatalf("build after freeing space: %v", err)
	}
}
