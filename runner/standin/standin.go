package standin

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

//go:embed all:comfyui
var files embed.FS

// Version is the ComfyUI version the stand-in reports (system_stats) and imitates.
const Version = "0.3.64"

// FS returns the stand-in's files: main.py at the top, comfy/cli_args.py, server.py, nodes.py,
// folder_paths.py, png.py, comfyui_version.py and requirements.txt.
func FS() fs.FS {
	sub, err := fs.Sub(files, "comfyui")
	if err != nil {
		panic(err) // the embedded tree always has this directory
	}
	return sub
}

// WriteTree writes the stand-in's files into dir, creating it. Files get mode 0644 and
// directories 0755; existing files are overwritten.
func WriteTree(dir string) error {
	return fs.WalkDir(FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "__pycache__" {
			return fs.SkipDir
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return fmt.Errorf("writing the stand-in: %w", err)
			}
			return nil
		}
		data, err := fs.ReadFile(FS(), p)
		if err != nil {
			return fmt.Errorf("writing the stand-in: %w", err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return fmt.Errorf("writing the stand-in: %w", err)
		}
		return nil
	})
}

// WriteRepo writes the stand-in into dir and makes dir a git repository with one commit on
// branch main, so that it can be the "ComfyUI" of a spec (comfy.repo = "file://" + dir). The
// author, committer and dates are fixed, so the same stand-in always gives the same commit.
// It returns the commit's hash.
func WriteRepo(ctx context.Context, dir string) (commit string, err error) {
	if err := WriteTree(dir); err != nil {
		return "", err
	}
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", append([]string{"-c", "user.name=stand-in", "-c", "user.email=stand-in@example.invalid", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(cmd.Environ(),
			"GIT_AUTHOR_DATE=2025-10-11T00:00:00Z", "GIT_COMMITTER_DATE=2025-10-11T00:00:00Z",
			"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null") // no user hooks or filters
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("making the stand-in repository: git %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	if _, err := git("init", "-q", "-b", "main"); err != nil {
		return "", err
	}
	if _, err := git("add", "-A"); err != nil {
		return "", err
	}
	if _, err := git("commit", "-q", "--allow-empty", "-m", "ComfyUI stand-in "+Version); err != nil {
		return "", err
	}
	return git("rev-parse", "HEAD")
}

// Flags returns the command-line flags declared in the stand-in's comfy/cli_args.py, in order
// (e.g. "--listen", "--output-directory"), as a builder reading that file would find them.
func Flags() []string {
	data, err := fs.ReadFile(FS(), path.Join("comfy", "cli_args.py"))
	if err != nil {
		panic(err)
	}
	var flags []string
	for _, line := range strings.Split(string(data), "\n") {
		i := strings.Index(line, `parser.add_argument("--`)
		if i < 0 {
			continue
		}
		rest := line[i+len(`parser.add_argument("`):]
		if j := strings.IndexByte(rest, '"'); j > 0 {
			flags = append(flags, rest[:j])
		}
	}
	return flags
}
