package builder

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// run runs a command in dir and returns its trimmed stdout, failing the test on error.
func run(t testing.TB, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=test", "GIT_AUTHOR_EMAIL=test@example.invalid",
		"GIT_COMMITTER_NAME=test", "GIT_COMMITTER_EMAIL=test@example.invalid",
		"GIT_CONFIG_NOSYSTEM=1", "HOME="+dir,
		// Local submodule URLs need the file protocol allowed (git >= 2.38).
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=protocol.file.allow", "GIT_CONFIG_VALUE_0=always",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// newRepo creates a git repository at dir with files (path -> content; a content starting
// with "link:" makes a symlink, a path ending in "*" an executable) and commits them on
// branch main. It returns the commit.
func newRepo(t testing.TB, dir string, files map[string]string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, dir, "git", "init", "-q", "-b", "main")
	return commitFiles(t, dir, files, "initial")
}

// commitFiles writes files into the repository at dir and commits them.
func commitFiles(t testing.TB, dir string, files map[string]string, msg string) string {
	t.Helper()
	for name, content := range files {
		perm := os.FileMode(0o644)
		if strings.HasSuffix(name, "*") {
			name, perm = strings.TrimSuffix(name, "*"), 0o755
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		os.Remove(p)
		if target, ok := strings.CutPrefix(content, "link:"); ok {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), perm); err != nil {
			t.Fatal(err)
		}
	}
	run(t, dir, "git", "add", "-A")
	run(t, dir, "git", "commit", "-q", "--allow-empty", "-m", msg)
	return run(t, dir, "git", "rev-parse", "HEAD")
}

// fakeComfy is a small ComfyUI stand-in: main.py prints its arguments.
var fakeComfy = map[string]string{
	"main.py": "import sys\nprint('comfy main', ' '.join(sys.argv[1:]))\n",
	"comfy/cli_args.py": `import argparse
parser = argparse.ArgumentParser()
parser.add_argument("--listen", type=str, default="127.0.0.1")
parser.add_argument("--port", type=int, default=8188)
parser.add_argument("--output-directory", type=str, default=None)
parser.add_argument('--extra-model-paths-config', type=str, action='append')
parser.add_argument("--cpu", action="store_true", help="(--not-a-flag)")
parser.add_argument("-v", "--verbose", action="store_true")
`,
	"models/checkpoints/put_checkpoints_here": "",
}

// fixture is a set of repositories for a spec: ComfyUI, a node with an executable and a
// symlink, and a node with a submodule.
type fixture struct {
	dir                          string
	comfy, nodeA, nodeB, subRepo string
	comfyCommit, aCommit         string
	bCommit, subCommit           string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	f.comfy = filepath.Join(f.dir, "ComfyUI")
	f.comfyCommit = newRepo(t, f.comfy, fakeComfy)
	f.nodeA = filepath.Join(f.dir, "node-a")
	f.aCommit = newRepo(t, f.nodeA, map[string]string{
		"__init__.py":    "NODE_CLASS_MAPPINGS = {}\n",
		"install.sh*":    "#!/bin/sh\necho hi\n",
		"docs/readme.md": "node a\n",
		"readme.md":      "link:docs/readme.md",
	})
	run(t, f.nodeA, "git", "tag", "v1.0")
	run(t, f.nodeA, "git", "tag", "-a", "v1.0-annotated", "-m", "annotated")
	f.subRepo = filepath.Join(f.dir, "sublib")
	f.subCommit = newRepo(t, f.subRepo, map[string]string{"lib.py": "X = 1\n"})
	f.nodeB = filepath.Join(f.dir, "node-b")
	newRepo(t, f.nodeB, map[string]string{"__init__.py": "\n"})
	run(t, f.nodeB, "git", "submodule", "add", "-q", f.subRepo, "vendor/sublib")
	run(t, f.nodeB, "git", "commit", "-q", "-m", "add submodule")
	f.bCommit = run(t, f.nodeB, "git", "rev-parse", "HEAD")
	return f
}

// spec returns a spec of the fixture: ComfyUI by branch, node-a by tag, node-b by full commit
// with submodules.
func (f *fixture) spec(id string) *specs.Spec {
	return &specs.Spec{
		SchemaVersion: 2,
		VersionID:     id,
		Comfy:         specs.Comfy{Repo: f.comfy, Ref: "main", Pos: specs.Pos{File: "versions/" + id + ".json", Line: 3, Col: 3}},
		CustomNodes: []specs.CustomNode{
			{Name: "node-a", Repo: f.nodeA, Ref: "v1.0", Pos: specs.Pos{File: "versions/" + id + ".json", Line: 5, Col: 5}},
			{Name: "node-b", Repo: f.nodeB, Commit: f.bCommit, Submodules: true, Pos: specs.Pos{File: "versions/" + id + ".json", Line: 6, Col: 5}},
		},
	}
}
