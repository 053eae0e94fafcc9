package git

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

func gitCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir,
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=protocol.file.allow", "GIT_CONFIG_VALUE_0=always")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// repoWithEverything makes a repository with an executable, a symlink, CRLF text under a
// .gitattributes asking for eol conversion and export-subst, and a submodule.
func repoWithEverything(t *testing.T) (dir, commit string) {
	base := t.TempDir()
	sub := filepath.Join(base, "sub")
	os.MkdirAll(sub, 0o755)
	gitCmd(t, sub, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(sub, "lib.py"), []byte("X = 1\n"), 0o644)
	gitCmd(t, sub, "add", "-A")
	gitCmd(t, sub, "commit", "-q", "-m", "sub")
	dir = filepath.Join(base, "main")
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	gitCmd(t, dir, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(dir, "bin", "run"), []byte("#!/bin/sh\necho run\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "text.txt"), []byte("line one\nline two $Format:%H$\n"), 0o644)
	os.WriteFile(filepath.Join(dir, ".gitattributes"), []byte("*.txt text eol=crlf export-subst ident\n"), 0o644)
	os.Symlink("bin/run", filepath.Join(dir, "run-link"))
	gitCmd(t, dir, "add", "-A")
	gitCmd(t, dir, "submodule", "add", "-q", "../sub", "vendor/sub")
	gitCmd(t, dir, "commit", "-q", "-m", "main")
	return dir, gitCmd(t, dir, "rev-parse", "HEAD")
}

func TestExportersAgree(t *testing.T) {
	repo, commit := repoWithEverything(t)
	ctx := context.Background()
	var hashes []string
	for _, exp := range []string{ExportGoGit, ExportGitCLI} {
		m := NewMirrors(filepath.Join(t.TempDir(), "git"), Credentials{})
		m.Exporter = exp
		out := filepath.Join(t.TempDir(), "out")
		if err := m.Export(ctx, repo, commit, out, ExportOptions{Submodules: true}); err != nil {
			t.Fatalf("%s: %v", exp, err)
		}
		if b, _ := os.ReadFile(filepath.Join(out, "text.txt")); string(b) != "line one\nline two $Format:%H$\n" {
			t.Errorf("%s: text.txt was converted: %q", exp, b)
		}
		if fi, err := os.Stat(filepath.Join(out, "bin", "run")); err != nil || fi.Mode().Perm()&0o100 == 0 {
			t.Errorf("%s: bin/run lost its exec bit: %v", exp, err)
		}
		if l, _ := os.Readlink(filepath.Join(out, "run-link")); l != "bin/run" {
			t.Errorf("%s: run-link -> %q", exp, l)
		}
		if b, _ := os.ReadFile(filepath.Join(out, "vendor", "sub", "lib.py")); string(b) != "X = 1\n" {
			t.Errorf("%s: submodule not exported: %q", exp, b)
		}
		h, _, err := nar.Hash(out)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, h)

		// Without submodules the gitlink is an empty directory.
		out2 := filepath.Join(t.TempDir(), "out")
		if err := m.Export(ctx, repo, commit, out2, ExportOptions{}); err != nil {
			t.Fatal(err)
		}
		if ents, err := os.ReadDir(filepath.Join(out2, "vendor", "sub")); err != nil || len(ents) != 0 {
			t.Errorf("%s: submodule without Submodules: %v %v", exp, ents, err)
		}
	}
	// Modes as exported differ from the canonical store modes only in write bits, which NAR
	// ignores, so the two exporters must agree byte for byte.
	if hashes[0] != hashes[1] {
		t.Errorf("go-git export %s, git CLI export %s", hashes[0], hashes[1])
	}
}

func TestMirrorReuseAndReadFile(t *testing.T) {
	repo, commit := repoWithEverything(t)
	ctx := context.Background()
	m := NewMirrors(filepath.Join(t.TempDir(), "git"), Credentials{})
	b, err := m.ReadFile(ctx, repo, commit, "bin/run")
	if err != nil || string(b) != "#!/bin/sh\necho run\n" {
		t.Fatalf("ReadFile: %q %v", b, err)
	}
	if _, err := m.ReadFile(ctx, repo, commit, "requirements.txt"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	// The remote disappears: the mirror still serves the commit, without network.
	if err := os.RemoveAll(repo); err != nil {
		t.Fatal(err)
	}
	if err := m.Export(ctx, repo, commit, filepath.Join(t.TempDir(), "x"), ExportOptions{}); err != nil {
		t.Fatalf("export from the mirror alone: %v", err)
	}
	// A commit the mirror lacks now needs the remote, which is gone.
	_, err = m.Ensure(ctx, repo, strings.Repeat("ab", 20))
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("want unreachable, got %v", err)
	}
}

func TestResolveURL(t *testing.T) {
	for _, c := range []struct{ parent, rel, want string }{
		{"https://github.com/o/repo.git", "../other.git", "https://github.com/o/other.git"},
		{"/srv/git/repo", "../sub", "/srv/git/sub"},
		{"file:///srv/git/repo", "./x", "file:///srv/git/repo/x"},
		{"/a", "https://h/x.git", "https://h/x.git"},
	} {
		if got := resolveURL(c.parent, c.rel); got != c.want {
			t.Errorf("resolveURL(%q, %q) = %q, want %q", c.parent, c.rel, got, c.want)
		}
	}
}

func TestCleanURLDropsCredentials(t *testing.T) {
	if got := CleanURL("https://user:secret@github.com/o/r.git"); strings.Contains(got, "secret") || got != "https://github.com/o/r.git" {
		t.Errorf("CleanURL kept credentials: %q", got)
	}
}

func TestCheckSymlink(t *testing.T) {
	for _, c := range []struct {
		rel, target string
		ok          bool
	}{
		{"run-link", "bin/run", true},
		{"a/b/link", "../../x.py", true},
		{"a/link", "./b/../c", false},
		{"a/link", "../x", true},
		{"link", "../x", false},
		{"a/link", "../../x", false},
		{"passwd", "/etc/passwd", false},
		{"root", "/", false},
		{"a/link", "b/../..", false},
		{"a/link", "", false},
		{"link", ".", true},
	} {
		err := checkSymlink(c.rel, c.target)
		if (err == nil) != c.ok {
			t.Errorf("checkSymlink(%q, %q) = %v, want ok=%v", c.rel, c.target, err, c.ok)
		}
	}
}

// A custom node whose tree holds an absolute symlink or one that leaves the tree is refused
// by both exporters, with the file and the target named.
func TestExportRefusesEscapingSymlinks(t *testing.T) {
	for _, target := range []string{"/etc/passwd", "/", "../../outside", "lib/../../x"} {
		dir := filepath.Join(t.TempDir(), "node")
		os.MkdirAll(filepath.Join(dir, "lib"), 0o755)
		gitCmd(t, dir, "init", "-q", "-b", "main")
		os.WriteFile(filepath.Join(dir, "__init__.py"), []byte("\n"), 0o644)
		os.Symlink(target, filepath.Join(dir, "lib", "evil"))
		gitCmd(t, dir, "add", "-A")
		gitCmd(t, dir, "commit", "-q", "-m", "evil")
		commit := gitCmd(t, dir, "rev-parse", "HEAD")
		for _, exp := range []string{ExportGoGit, ExportGitCLI} {
			m := NewMirrors(filepath.Join(t.TempDir(), "git"), Credentials{})
			m.Exporter = exp
			err := m.Export(context.Background(), dir, commit, filepath.Join(t.TempDir(), "out"), ExportOptions{})
			if !errors.Is(err, ErrSymlinkEscapes) || !strings.Contains(err.Error(), "lib/evil") || !strings.Contains(err.Error(), target) {
				t.Errorf("%s, symlink to %q: %v", exp, target, err)
			}
		}
	}
}
