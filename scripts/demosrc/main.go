// Command demosrc prepares the offline demo of `make demo`: local git repositories standing in
// for ComfyUI (the runner's ComfyUI stand-in) and two custom nodes (one with an executable, a
// symlink and a submodule), a small model file, and a version spec naming them, all under the
// demo directory given as its argument. Commits use fixed identities and dates, so every run
// gives the same commits and therefore the same store paths.
//
// Usage: go run ./scripts/demosrc <demo dir>
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/runner/standin"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: demosrc <demo dir>")
		os.Exit(2)
	}
	if err := run(context.Background(), os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "demosrc:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, demo string) error {
	demo, err := filepath.Abs(demo)
	if err != nil {
		return err
	}
	repos := filepath.Join(demo, "repos")

	// ComfyUI: the runner's stand-in (a small stdlib-only Python server speaking ComfyUI's API).
	comfy := filepath.Join(repos, "ComfyUI")
	comfyCommit, err := standin.WriteRepo(ctx, comfy)
	if err != nil {
		return err
	}

	// A library used as a submodule.
	lib := filepath.Join(repos, "tinylib")
	libCommit, err := repo(ctx, lib, map[string]string{
		"tinylib/__init__.py": "def greet(name):\n    return 'hello, ' + name\n",
	}, nil)
	if err != nil {
		return err
	}

	// Node 1: a custom node with an executable install script and a symlink.
	hello := filepath.Join(repos, "hello-node")
	if _, err := repo(ctx, hello, map[string]string{
		"__init__.py": `class HelloText:
    CATEGORY = "demo"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"name": ("STRING", {"default": "world"})}}

    def run(self, name):
        return ("hello, " + name,)


NODE_CLASS_MAPPINGS = {"HelloText": HelloText}
`,
		"install.sh*":   "#!/bin/sh\necho 'nothing to install: runpod-comfy installs requirements at build time'\n",
		"docs/usage.md": "# hello-node\n\nAdds the HelloText node.\n",
		"README.md":     "link:docs/usage.md",
	}, nil); err != nil {
		return err
	}
	if err := tag(ctx, hello, "v1.0.0"); err != nil {
		return err
	}

	// Node 2: a node vendoring tinylib as a submodule pinned at libCommit.
	vendored := filepath.Join(repos, "vendored-node")
	if _, err := repo(ctx, vendored, map[string]string{
		"__init__.py": "NODE_CLASS_MAPPINGS = {}\n",
		".gitmodules": "[submodule \"vendor/tinylib\"]\n\tpath = vendor/tinylib\n\turl = ../tinylib\n",
	}, map[string]string{"vendor/tinylib": libCommit}); err != nil {
		return err
	}

	// A model file (a few KiB of deterministic bytes) with its sha256.
	modelFile := filepath.Join(demo, "models-src", "demo-upscaler.safetensors")
	if err := os.MkdirAll(filepath.Dir(modelFile), 0o755); err != nil {
		return err
	}
	var model []byte
	for i := 0; len(model) < 64<<10; i++ {
		s := sha256.Sum256([]byte(fmt.Sprint("demo model ", i)))
		model = append(model, s[:]...)
	}
	if err := os.WriteFile(modelFile, model, 0o644); err != nil {
		return err
	}
	sum := sha256.Sum256(model)

	spec := map[string]any{
		"schema_version": 2,
		"version_id":     "demo",
		"comfy":          map[string]any{"repo": comfy, "ref": "main", "commit": comfyCommit},
		"custom_nodes": []any{
			map[string]any{"name": "hello-node", "repo": hello, "ref": "v1.0.0"},
			map[string]any{"name": "vendored-node", "repo": "file://" + vendored, "ref": "main", "submodules": true},
		},
		"models": []any{
			map[string]any{"source": "file://" + modelFile, "target_subdir": "upscale_models", "checksum": "sha256:" + hex.EncodeToString(sum[:])},
		},
		"env": map[string]string{"DEMO": "1"},
	}
	js, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(demo, "versions"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(demo, "versions", "demo.json"), append(js, '\n'), 0o644)
}

// git runs git in dir with a fixed identity and date.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=demo", "GIT_AUTHOR_EMAIL=demo@example.invalid", "GIT_AUTHOR_DATE=2025-10-11T00:00:00Z",
		"GIT_COMMITTER_NAME=demo", "GIT_COMMITTER_EMAIL=demo@example.invalid", "GIT_COMMITTER_DATE=2025-10-11T00:00:00Z")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s in %s: %w: %s", strings.Join(args, " "), dir, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// repo creates a repository at dir holding files (a name ending in "*" is executable, a
// content starting with "link:" is a symlink) and gitlinks (path -> submodule commit), with
// one commit on main, and returns the commit.
func repo(ctx context.Context, dir string, files, gitlinks map[string]string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if _, err := git(ctx, dir, "init", "-q", "-b", "main"); err != nil {
		return "", err
	}
	for name, content := range files {
		perm := os.FileMode(0o644)
		if strings.HasSuffix(name, "*") {
			name, perm = strings.TrimSuffix(name, "*"), 0o755
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if target, ok := strings.CutPrefix(content, "link:"); ok {
			if err := os.Symlink(target, p); err != nil {
				return "", err
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), perm); err != nil {
			return "", err
		}
	}
	if _, err := git(ctx, dir, "add", "-A"); err != nil {
		return "", err
	}
	for path, commit := range gitlinks {
		if _, err := git(ctx, dir, "update-index", "--add", "--cacheinfo", "160000,"+commit+","+path); err != nil {
			return "", err
		}
	}
	if _, err := git(ctx, dir, "commit", "-q", "-m", "demo"); err != nil {
		return "", err
	}
	return git(ctx, dir, "rev-parse", "HEAD")
}

func tag(ctx context.Context, dir, name string) error {
	_, err := git(ctx, dir, "tag", name)
	return err
}
