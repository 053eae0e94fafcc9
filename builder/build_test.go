package builder

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/runpod-comfy/runpod-comfy/builder/git"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

func TestBuildRuntimeRoot(t *testing.T) {
	f := newFixture(t)
	root := filepath.Join(t.TempDir(), "root")
	ctx := context.Background()
	res, err := Build(ctx, BuildOptions{Root: root, Spec: f.spec("demo"), Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Built != 4 || !res.Resolved {
		t.Errorf("built %d objects (resolved %v), want 4 and a resolution", res.Built, res.Resolved)
	}
	for _, n := range res.Nodes {
		if !n.OK {
			t.Errorf("node %s: %s", n.Name, n.Problem)
		}
	}
	link := filepath.Join(root, "builds", "comfy-demo")
	target, err := os.Readlink(link)
	if err != nil || target != "../store/"+res.Root.String() {
		t.Fatalf("builds/comfy-demo -> %q (%v), want ../store/%s", target, err, res.Root)
	}

	// The lock pins every ref and records NAR hashes and store paths.
	lock, err := specs.ReadLock(res.LockFile)
	if err != nil {
		t.Fatal(err)
	}
	if lock.Comfy.Commit != f.comfyCommit || lock.CustomNodes[0].Commit != f.aCommit || lock.CustomNodes[1].Commit != f.bCommit {
		t.Errorf("lock commits %s %s %s, want %s %s %s", lock.Comfy.Commit, lock.CustomNodes[0].Commit, lock.CustomNodes[1].Commit, f.comfyCommit, f.aCommit, f.bCommit)
	}
	if lock.Comfy.NarHash == "" || lock.CustomNodes[1].StorePath == "" {
		t.Errorf("lock lacks NAR hash or store path: %+v", lock.Comfy)
	}

	// Relative symlinks, exec bits, symlinks and submodules survive.
	rootDir := res.Dir
	for rel, want := range map[string]string{
		"comfyui":             "../" + lock.Comfy.StorePath,
		"custom_nodes/node-a": "../../" + lock.CustomNodes[0].StorePath,
		"custom_nodes/node-b": "../../" + lock.CustomNodes[1].StorePath,
	} {
		got, err := os.Readlink(filepath.Join(rootDir, rel))
		if err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", rel, got, err, want)
		}
	}
	a := filepath.Join(rootDir, "custom_nodes", "node-a")
	if fi, err := os.Stat(filepath.Join(a, "install.sh")); err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("install.sh not executable: %v %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(a, "readme.md")); err != nil || l != "docs/readme.md" {
		t.Errorf("readme.md symlink -> %q (%v)", l, err)
	}
	if b, err := os.ReadFile(filepath.Join(rootDir, "custom_nodes", "node-b", "vendor", "sublib", "lib.py")); err != nil || string(b) != "X = 1\n" {
		t.Errorf("submodule file: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(a, ".git")); !os.IsNotExist(err) {
		t.Errorf("export kept .git: %v", err)
	}

	// manifest.json with flags from cli_args.py.
	var m specs.Manifest
	mb, err := os.ReadFile(filepath.Join(rootDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	wantFlags := []string{"--cpu", "--extra-model-paths-config", "--listen", "--output-directory", "--port", "--verbose"}
	if diff := cmp.Diff(wantFlags, m.Comfy.Flags); diff != "" {
		t.Errorf("flags (-want +got):\n%s", diff)
	}
	if m.VersionID != "demo" || len(m.CustomNodes) != 2 || m.Comfy.Commit != f.comfyCommit {
		t.Errorf("manifest: %+v", m)
	}

	// A second build is a no-op: same root, no new objects, no resolution.
	res2, err := Build(ctx, BuildOptions{Root: root, Spec: f.spec("demo")})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Root != res.Root || res2.Built != 0 || res2.Resolved || res2.Generation != res.Generation {
		t.Errorf("second build: %+v, want the same root, nothing built", res2)
	}
}

func TestLauncherAfterMovingRoot(t *testing.T) {
	f := newFixture(t)
	base := t.TempDir()
	root := filepath.Join(base, "root")
	_, err := Build(context.Background(), BuildOptions{Root: root, Spec: f.spec("moved")})
	if err != nil {
		t.Fatal(err)
	}
	moved := filepath.Join(base, "elsewhere", "volume")
	os.MkdirAll(filepath.Dir(moved), 0o755)
	if err := os.Rename(root, moved); err != nil {
		t.Fatal(err)
	}
	// Run through the builds/ link, as people do; the launcher must find the moved root.
	cmd := exec.Command(filepath.Join(moved, "builds", "comfy-moved", "bin", "comfyui"), "--cpu")
	cmd.Env = append(os.Environ(), "COMFY_PYTHON=python3")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("launcher: %v\n%s", err, out)
	}
	want := "comfy main --extra-model-paths-config /dev/fd/9 --cpu"
	if strings.TrimSpace(string(out)) != want {
		t.Errorf("launcher printed %q, want %q", out, want)
	}
	// Every node is still reachable through the relative links.
	if _, err := os.Stat(filepath.Join(moved, "builds", "comfy-moved", "custom_nodes", "node-a", "__init__.py")); err != nil {
		t.Error(err)
	}
}

func TestSameSpecTwoRootsSameDigests(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var results []*BuildResult
	var locks []*specs.Lock
	for _, r := range []string{"a", "b"} {
		res, err := Build(ctx, BuildOptions{Root: filepath.Join(t.TempDir(), r), Spec: f.spec("same")})
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
		locks = append(locks, res.Lock)
	}
	if results[0].Root != results[1].Root || results[0].NarHash != results[1].NarHash {
		t.Errorf("roots differ: %s %s vs %s %s", results[0].Root, results[0].NarHash, results[1].Root, results[1].NarHash)
	}
	if diff := cmp.Diff(locks[0], locks[1]); diff != "" {
		t.Errorf("locks differ (-a +b):\n%s", diff)
	}
}

func TestResolveRefs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	m := git.NewMirrors(filepath.Join(t.TempDir(), "git"), git.Credentials{})
	spec := f.spec("refs")
	// A branch name written in commit, and an annotated tag.
	spec.CustomNodes[0] = specs.CustomNode{Name: "node-a", Repo: f.nodeA, Commit: "v1.0-annotated"}
	spec.CustomNodes = append(spec.CustomNodes, specs.CustomNode{Name: "node-c", Repo: "file://" + f.nodeA, Commit: "main"})
	lock, err := Resolve(ctx, spec, nil, ResolveOptions{Git: m})
	if err != nil {
		t.Fatal(err)
	}
	if lock.Comfy.Commit != f.comfyCommit || lock.CustomNodes[0].Commit != f.aCommit || lock.CustomNodes[2].Commit != f.aCommit {
		t.Fatalf("resolved %+v", lock)
	}
	if lock.CustomNodes[0].Ref != "v1.0-annotated" || lock.CustomNodes[2].Ref != "main" {
		t.Errorf("refs not recorded: %q %q", lock.CustomNodes[0].Ref, lock.CustomNodes[2].Ref)
	}

	// The branch moves: the lock keeps the old commit; --update moves it.
	newCommit := commitFiles(t, f.comfy, map[string]string{"new.py": "\n"}, "move main")
	again, err := Resolve(ctx, spec, lock, ResolveOptions{Git: m})
	if err != nil {
		t.Fatal(err)
	}
	if again.Comfy.Commit != f.comfyCommit {
		t.Errorf("unchanged spec re-resolved comfy to %s", again.Comfy.Commit)
	}
	upd, err := Resolve(ctx, spec, lock, ResolveOptions{Git: m, Update: true, UpdateNames: []string{"comfyui"}})
	if err != nil {
		t.Fatal(err)
	}
	if upd.Comfy.Commit != newCommit {
		t.Errorf("update gave %s, want %s", upd.Comfy.Commit, newCommit)
	}
	// A name the spec does not have is refused, not ignored.
	if _, err := Resolve(ctx, spec, lock, ResolveOptions{Git: m, Update: true, UpdateNames: []string{"node-x"}}); err == nil || !strings.Contains(err.Error(), "--update node-x") {
		t.Errorf("unknown update name: got %v", err)
	}

	// Unknown ref and a missing remote: errors naming the node and the spec line.
	bad := f.spec("bad")
	bad.CustomNodes[0].Ref = "no-such-branch"
	bad.CustomNodes[1].Repo = filepath.Join(f.dir, "missing")
	bad.CustomNodes[1].Commit = ""
	_, err = Resolve(ctx, bad, nil, ResolveOptions{Git: m})
	if !errors.Is(err, git.ErrUnknownRef) || !errors.Is(err, git.ErrUnreachable) {
		t.Fatalf("want unknown ref and unreachable, got %v", err)
	}
	for _, want := range []string{`versions/bad.json:5:5: custom node "node-a"`, "no-such-branch", `versions/bad.json:6:5: custom node "node-b"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// Not a git repository.
	notRepo := t.TempDir()
	bad2 := f.spec("bad2")
	bad2.Comfy.Repo = notRepo
	if _, err := Resolve(ctx, bad2, nil, ResolveOptions{Git: m}); !errors.Is(err, git.ErrNotRepository) {
		t.Errorf("want not a git repository, got %v", err)
	}
}

func TestFullCommitsResolveOffline(t *testing.T) {
	f := newFixture(t)
	spec := f.spec("offline")
	// Python requirements are read from the sources, so ComfyUI's are left to the base here.
	noReqs := false
	spec.Comfy = specs.Comfy{Repo: "https://unreachable.invalid/ComfyUI.git", Commit: f.comfyCommit, InstallRequirements: &noReqs}
	spec.CustomNodes = spec.CustomNodes[1:]
	lock, err := Resolve(context.Background(), spec, nil, ResolveOptions{Git: git.NewMirrors(t.TempDir(), git.Credentials{})})
	if err != nil {
		t.Fatalf("full commits needed the network: %v", err)
	}
	if lock.Comfy.Commit != f.comfyCommit {
		t.Errorf("commit %s", lock.Comfy.Commit)
	}
}

func TestForcePushedCommit(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	spec := f.spec("gone")
	// Lock a commit, then force-push it away.
	extra := commitFiles(t, f.nodeA, map[string]string{"later.py": "\n"}, "later")
	spec.CustomNodes[0] = specs.CustomNode{Name: "node-a", Repo: f.nodeA, Commit: extra, Pos: specs.Pos{File: "versions/gone.json", Line: 5, Col: 5}}
	run(t, f.nodeA, "git", "reset", "-q", "--hard", "HEAD~1")
	run(t, f.nodeA, "git", "reflog", "expire", "--expire=now", "--all")
	run(t, f.nodeA, "git", "gc", "-q", "--prune=now")
	_, err := Build(ctx, BuildOptions{Root: filepath.Join(t.TempDir(), "root"), Spec: spec})
	if !errors.Is(err, git.ErrCommitNotFound) {
		t.Fatalf("want commit not found, got %v", err)
	}
	for _, want := range []string{`custom node "node-a"`, "versions/gone.json:5:5", extra} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestNarHashMismatchFails(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	res, err := Build(ctx, BuildOptions{Root: root, Spec: f.spec("nar")})
	if err != nil {
		t.Fatal(err)
	}
	// Tamper with the lock's NAR hash of node-a and build in a fresh root.
	lock := res.Lock
	lock.CustomNodes[0].NarHash = "sha256:0000000000000000000000000000000000000000000000000000"
	if err := lock.WriteFile(res.LockFile); err != nil {
		t.Fatal(err)
	}
	root2 := filepath.Join(t.TempDir(), "root2")
	_, err = Build(ctx, BuildOptions{Root: root2, Spec: f.spec("nar"), LockFile: res.LockFile})
	var nm *LockedNarHashError
	if !errors.As(err, &nm) || !strings.Contains(err.Error(), `custom node "node-a"`) {
		t.Fatalf("want a NAR hash mismatch naming node-a, got %v", err)
	}
	s, _ := store.Open(root2)
	if s.Valid(nm.Path) {
		t.Error("mismatching object was registered")
	}
	// The built root notices too, from metadata alone.
	if _, err := Build(ctx, BuildOptions{Root: root, Spec: f.spec("nar"), LockFile: res.LockFile}); !errors.As(err, &nm) {
		t.Errorf("valid object with other NAR hash: got %v", err)
	}
}

// GIT_TOKEN goes to the https hosts the spec names for its repositories, each once, and to
// no other; ssh and local repositories add no host.
func TestGitCredentialsFromSpec(t *testing.T) {
	spec := &specs.Spec{
		Comfy: specs.Comfy{Repo: "https://GitHub.com/comfyanonymous/ComfyUI"},
		CustomNodes: []specs.CustomNode{
			{Repo: "https://github.com/o/a"},
			{Repo: "https://git.example.com:8443/o/b.git"},
			{Repo: "git@gitlab.com:o/c.git"},
			{Repo: "/srv/git/d"},
		},
	}
	c := GitCredentials(spec, "T", map[string]string{"gitlab.com": "G"})
	if diff := cmp.Diff([]string{"github.com", "git.example.com:8443"}, c.Hosts); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	if c.For("https://github.com/o/a") != "T" || c.For("https://evil.example/x") != "" || c.For("https://gitlab.com/x") != "G" {
		t.Errorf("credentials %+v give the wrong tokens", c)
	}
	if c := GitCredentials(spec, "", nil); len(c.Hosts) != 0 {
		t.Errorf("no token, hosts %v", c.Hosts)
	}
}
