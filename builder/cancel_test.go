package builder

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/builder/git"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

func TestCancelLeavesNothingHalfRegistered(t *testing.T) {
	f := newFixture(t)
	spec := f.spec("cancel")
	bigNode(t, f, spec)
	root := filepath.Join(t.TempDir(), "root")
	ctx, cancel := context.WithCancel(context.Background())
	locks := filepath.Join(root, "store", ".locks")
	go func() {
		// Ctrl-C as soon as the first object is being built.
		for countFiles(locks, ".lease") == 0 && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, err := Build(ctx, BuildOptions{Root: root, Spec: spec})
	cancel()
	var ie *InterruptedError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &ie) {
		t.Fatalf("want an InterruptedError wrapping context.Canceled, got %v", err)
	}
	s, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.Verify(context.Background(), store.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Errorf("problems after a cancelled build: %+v", rep.Problems)
	}
	if _, err := s.RootOf("cancel"); err == nil {
		t.Error("a cancelled build set the root")
	}
	if _, err := Build(context.Background(), BuildOptions{Root: root, Spec: spec}); err != nil {
		t.Fatalf("build after cancel: %v", err)
	}
}

func TestAbbreviatedCommit(t *testing.T) {
	f := newFixture(t)
	spec := f.spec("abbrev")
	spec.CustomNodes[0].Ref, spec.CustomNodes[0].Commit = "", f.aCommit[:10]
	lock, err := Resolve(context.Background(), spec, nil, ResolveOptions{Git: git.NewMirrors(t.TempDir(), git.Credentials{})})
	if err != nil {
		t.Fatal(err)
	}
	if lock.CustomNodes[0].Commit != f.aCommit {
		t.Errorf("abbreviated commit resolved to %s, want %s", lock.CustomNodes[0].Commit, f.aCommit)
	}
}

func TestTokenNeverStored(t *testing.T) {
	const token = "s3cret-token-value"
	f := newFixture(t)
	root := filepath.Join(t.TempDir(), "root")
	if _, err := Build(context.Background(), BuildOptions{Root: root, Spec: f.spec("tok"), GitToken: token}); err != nil {
		t.Fatal(err)
	}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		if b, _ := os.ReadFile(p); strings.Contains(string(b), token) {
			t.Errorf("%s holds the token", p)
		}
		return nil
	})
	// An https remote that fails: the error names the remote, not the token.
	bad := f.spec("tok2")
	bad.Comfy = specs.Comfy{Repo: "https://127.0.0.1:1/o/ComfyUI.git", Ref: "main"}
	_, err := Resolve(context.Background(), bad, nil, ResolveOptions{Git: git.NewMirrors(t.TempDir(), git.Credentials{Token: token, Hosts: []string{"127.0.0.1:1"}})})
	if err == nil || strings.Contains(err.Error(), token) || !errors.Is(err, git.ErrUnreachable) {
		t.Errorf("error %v: want unreachable without the token", err)
	}
}

func TestSpecChangeResolvesOnlyWhatChanged(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	m := git.NewMirrors(filepath.Join(t.TempDir(), "git"), git.Credentials{})
	spec := f.spec("partial")
	lock, err := Resolve(ctx, spec, nil, ResolveOptions{Git: m})
	if err != nil {
		t.Fatal(err)
	}
	// ComfyUI's remote disappears; node-a's spec changes from a tag to the branch. Resolving
	// again must reuse ComfyUI's pin (no network for it) and resolve only node-a.
	if err := os.Rename(f.comfy, f.comfy+".gone"); err != nil {
		t.Fatal(err)
	}
	moved := commitFiles(t, f.nodeA, map[string]string{"new.py": "\n"}, "new")
	spec.CustomNodes[0].Ref = "main"
	again, err := Resolve(ctx, spec, lock, ResolveOptions{Git: m})
	if err != nil {
		t.Fatalf("re-resolving after a spec change touched an unchanged entry: %v", err)
	}
	if again.Comfy.Commit != lock.Comfy.Commit || again.CustomNodes[0].Commit != moved || again.CustomNodes[1] != lock.CustomNodes[1] {
		t.Errorf("comfy %s (was %s), node-a %s (want %s)", again.Comfy.Commit, lock.Comfy.Commit, again.CustomNodes[0].Commit, moved)
	}
	if again.SpecHash == lock.SpecHash {
		t.Error("spec hash did not change with the spec")
	}
}
