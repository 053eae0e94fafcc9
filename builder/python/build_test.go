package python_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/builder"
	"github.com/runpod-comfy/runpod-comfy/builder/python"
	"github.com/runpod-comfy/runpod-comfy/builder/python/wheeltest"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// repo makes a git repository with files committed on main and returns its commit.
func repo(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git(t, dir, "init", "-q", "-b", "main")
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-q", "-m", "initial")
	return git(t, dir, "rev-parse", "HEAD")
}

// TestBuildVersion builds a version whose ComfyUI and nodes have requirements, offline from
// find_links, through builder.Build: the root links the venv and the launcher runs ComfyUI's
// main.py with it.
func TestBuildVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	links := filepath.Join(dir, "wheels")
	if err := wheeltest.WriteAll(links,
		wheeltest.Wheel{Name: "numpy", Version: "1.26.0"},
		wheeltest.Wheel{Name: "numpy", Version: "2.0.0"},
		wheeltest.Wheel{Name: "alpha", Version: "1.0", Requires: []string{"numpy<2"}},
		wheeltest.Wheel{Name: "gamma", Version: "1.0", Scripts: map[string]string{"gamma-cli": "gamma:main"}},
	); err != nil {
		t.Fatal(err)
	}
	comfy := filepath.Join(dir, "ComfyUI")
	comfyCommit := repo(t, comfy, map[string]string{
		"main.py":           "import sys, numpy, alpha, gamma\nprint('comfy main', numpy.VERSION, sys.prefix == sys.base_prefix)\n",
		"comfy/cli_args.py": "import argparse\nparser = argparse.ArgumentParser()\nparser.add_argument('--port', type=int)\n",
		"requirements.txt":  "# ComfyUI\nnumpy\n",
	})
	nodeA := filepath.Join(dir, "node-a")
	aCommit := repo(t, nodeA, map[string]string{"__init__.py": "\n", "requirements.txt": "alpha>=1\n"})
	nodeB := filepath.Join(dir, "node-b")
	bCommit := repo(t, nodeB, map[string]string{"__init__.py": "\n", "requirements.txt": "numpy>=2\n"})
	pos := func(line int) specs.Pos { return specs.Pos{File: "versions/demo.json", Line: line, Col: 5} }
	no := false
	spec := &specs.Spec{
		SchemaVersion: 2,
		VersionID:     "demo",
		Comfy:         specs.Comfy{Repo: comfy, Commit: comfyCommit, Pos: pos(3)},
		CustomNodes: []specs.CustomNode{
			{Name: "node-a", Repo: nodeA, Commit: aCommit, Pos: pos(5)},
			{Name: "node-b", Repo: nodeB, Commit: bCommit, InstallRequirements: &no, Pos: pos(6)},
		},
		Python:  &specs.Python{Packages: []string{"gamma"}, FindLinks: []string{links}, Pos: pos(8)},
		Options: specs.Options{Offline: true},
	}
	root := filepath.Join(dir, "root")
	opts := builder.BuildOptions{Root: root, Spec: spec, Environ: os.Environ()}
	res, err := builder.Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	pl := res.Lock.Python
	if pl == nil || len(pl.Packages) != 3 {
		t.Fatalf("lock's python: %+v", pl)
	}
	want := map[string]string{"alpha": "custom_nodes/node-a/requirements.txt:1", "numpy": "comfyui/requirements.txt:2", "gamma": "spec:python.packages[0]"}
	for _, p := range pl.Packages {
		if got := strings.Join(p.RequestedBy, ","); got != want[p.Name] {
			t.Errorf("%s requested by %q, want %q", p.Name, got, want[p.Name])
		}
	}
	venv, err := os.Readlink(filepath.Join(res.Dir, "venv"))
	if err != nil || !strings.HasPrefix(venv, "../") || !strings.HasSuffix(venv, "-venv") {
		t.Fatalf("venv link %q: %v", venv, err)
	}
	cmd := exec.Command(filepath.Join(res.Link, "bin", "comfyui"), "--port", "1")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "comfy main 1.26.0 False") {
		t.Fatalf("launcher: %v\n%s", err, out)
	}

	// check rebuilds the python identity, the venv and the root in a scratch store (another
	// directory) and finds the same NAR hashes.
	rep, err := builder.Check(ctx, builder.CheckOptions{BuildOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, o := range rep.Objects {
		kinds[o.Kind] = true
		if !o.Match {
			t.Errorf("check: %s %s rebuilt as %s, store has %s (files %v)", o.Kind, o.Path, o.RebuiltNarHash, o.StoreNarHash, o.Files)
		}
	}
	if !kinds["venv"] || !kinds["python"] || !kinds["python-package"] || !rep.OK() {
		t.Errorf("check did not rebuild and match the venv: %+v", rep)
	}

	// A no-op rebuild builds nothing.
	again, err := builder.Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if again.Root != res.Root || again.Built != 0 || again.Resolved {
		t.Errorf("rebuild: root %s (was %s), built %d, resolved %v", again.Root, res.Root, again.Built, again.Resolved)
	}

	// A lock whose interpreter identity no longer matches (a changed base image) is resolved
	// again; the same interpreter and files give the same root.
	lk, err := specs.ReadLock(res.LockFile)
	if err != nil {
		t.Fatal(err)
	}
	lk.Python.Interpreter.Version = "3.0.0"
	if err := lk.WriteFile(res.LockFile); err != nil {
		t.Fatal(err)
	}
	again, err = builder.Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Resolved || again.Root != res.Root {
		t.Errorf("stale interpreter: resolved %v, root %s (was %s)", again.Resolved, again.Root, res.Root)
	}

	// node-b's requirements, once installed, conflict with node-a's through alpha.
	spec.CustomNodes[1].InstallRequirements = nil
	_, err = builder.Build(ctx, opts)
	var re *python.ResolutionError
	if !errors.As(err, &re) {
		t.Fatalf("want a resolution error, got %v", err)
	}
	for _, w := range []string{
		`node "node-a" wants alpha>=1 (custom_nodes/node-a/requirements.txt:1), and alpha 1.0 depends on numpy<2`,
		`node "node-b" wants numpy>=2 (custom_nodes/node-b/requirements.txt:1)`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("report lacks %q:\n%v", w, err)
		}
	}
}
