package git

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

// brokenMirrorCase damages a fetched mirror at dir (a bare repository) the way a fetch cut
// short by a full disk or a kill does; blob is the id of a file's blob in the commit.
type brokenMirrorCase struct {
	name    string
	packed  bool // repack the mirror into one pack before breaking it
	breakIt func(t *testing.T, dir, blob string)
	repair  bool // the next export must say it repaired the mirror
	objects bool // damages objects, which each exporter reads its own way
}

func onePack(t *testing.T, dir, ext string) string {
	t.Helper()
	ms, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "*."+ext))
	if len(ms) != 1 {
		t.Fatalf("want one .%s in the mirror, found %v", ext, ms)
	}
	return ms[0]
}

func looseObject(dir, id string) string {
	return filepath.Join(dir, "objects", id[:2], id[2:])
}

var brokenMirrorCases = []brokenMirrorCase{
	{name: "empty-pack-index", objects: true, packed: true, repair: true, breakIt: func(t *testing.T, dir, _ string) {
		os.WriteFile(onePack(t, dir, "idx"), nil, 0o444)
	}},
	{name: "truncated-pack-index", objects: true, packed: true, repair: true, breakIt: func(t *testing.T, dir, _ string) {
		p := onePack(t, dir, "idx")
		fi, _ := os.Stat(p)
		os.Truncate(p, fi.Size()/2)
	}},
	{name: "truncated-pack", objects: true, packed: true, repair: true, breakIt: func(t *testing.T, dir, _ string) {
		p := onePack(t, dir, "pack")
		fi, _ := os.Stat(p)
		os.Chmod(p, 0o644)
		os.Truncate(p, fi.Size()-30)
	}},
	{name: "pack-without-index", objects: true, packed: true, repair: true, breakIt: func(t *testing.T, dir, _ string) {
		os.Remove(onePack(t, dir, "idx"))
	}},
	{name: "missing-blob", objects: true, repair: true, breakIt: func(t *testing.T, dir, blob string) {
		if err := os.Remove(looseObject(dir, blob)); err != nil {
			t.Fatal(err)
		}
	}},
	{name: "empty-loose-object", objects: true, repair: true, breakIt: func(t *testing.T, dir, blob string) {
		p := looseObject(dir, blob)
		os.Chmod(p, 0o644)
		if err := os.Truncate(p, 0); err != nil {
			t.Fatal(err)
		}
	}},
	{name: "garbage-ref", repair: true, breakIt: func(t *testing.T, dir, _ string) {
		os.WriteFile(filepath.Join(dir, "refs", "heads", "main"), []byte("\x00\x00garbage"), 0o644)
	}},
	{name: "ref-to-missing-object", repair: true, breakIt: func(t *testing.T, dir, _ string) {
		os.WriteFile(filepath.Join(dir, "refs", "heads", "main"), []byte(strings.Repeat("ab", 20)+"\n"), 0o644)
	}},
	{name: "empty-HEAD", repair: true, breakIt: func(t *testing.T, dir, _ string) {
		os.WriteFile(filepath.Join(dir, "HEAD"), nil, 0o644)
	}},
	{name: "leftover-temporary-pack", breakIt: func(t *testing.T, dir, _ string) {
		os.MkdirAll(filepath.Join(dir, "objects", "pack"), 0o755)
		os.WriteFile(filepath.Join(dir, "objects", "pack", "tmp_pack_abc"), []byte("PACK\x00"), 0o444)
	}},
}

// TestBrokenMirrorRepaired breaks a mirror in each way a cut-short fetch can, then exports
// the commit it holds and a new commit that needs a fetch: both exports must succeed with the
// right tree, the repair must be reported, and the mirror must be sound afterwards.
func TestBrokenMirrorRepaired(t *testing.T) {
	for _, exp := range []string{ExportGitCLI, ExportGoGit} {
		for _, tc := range brokenMirrorCases {
			if exp == ExportGoGit && !tc.objects {
				continue
			}
			t.Run(exp+"/"+tc.name, func(t *testing.T) {
				repo, commit := smallRepo(t)
				blob := gitCmd(t, repo, "rev-parse", commit+":text.txt")
				m := NewMirrors(filepath.Join(t.TempDir(), "git"), Credentials{})
				m.Exporter = exp
				var mu sync.Mutex
				var logged []string
				m.Log = func(s string) { mu.Lock(); logged = append(logged, s); mu.Unlock() }
				want := exportHash(t, m, repo, commit)
				dir := m.Path(repo)
				if tc.packed {
					gitCmd(t, dir, "--git-dir="+dir, "repack", "-a", "-d", "-q")
				} else if _, err := os.Stat(looseObject(dir, blob)); err != nil {
					t.Fatalf("the fixture wants loose objects in the mirror: %v", err)
				}
				tc.breakIt(t, dir, blob)
				logged = nil
				if got := exportHash(t, m, repo, commit); got != want {
					t.Errorf("export after repair differs: %s, want %s", got, want)
				}
				// A later commit needs a fetch into the same mirror.
				os.WriteFile(filepath.Join(repo, "new.txt"), []byte("new\n"), 0o644)
				gitCmd(t, repo, "add", "-A")
				gitCmd(t, repo, "commit", "-q", "-m", "new")
				next := gitCmd(t, repo, "rev-parse", "HEAD")
				exportHash(t, m, repo, next)
				if _, err := m.ReadFile(context.Background(), repo, commit, "text.txt"); err != nil {
					t.Errorf("ReadFile after repair: %v", err)
				}
				said := strings.Join(logged, "\n")
				if tc.repair && !strings.Contains(said, "was broken") {
					t.Errorf("the repair was not reported; log: %q", said)
				}
				if !tc.repair && said != "" {
					t.Errorf("unexpected report: %q", said)
				}
				if p := mirrorProblem(dir); p != "" {
					t.Errorf("mirror still broken: %s", p)
				}
				if leftovers, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "tmp_*")); len(leftovers) > 0 {
					t.Errorf("temporary files left: %v", leftovers)
				}
			})
		}
	}
}

// exportHash exports commit of repo (without submodules) and returns its NAR hash.
func exportHash(t *testing.T, m *Mirrors, repo, commit string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	if err := m.Export(context.Background(), repo, commit, out, ExportOptions{}); err != nil {
		t.Fatalf("export: %v", err)
	}
	h, _, err := nar.Hash(out)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// smallRepo makes a repository of one commit with a few files.
func smallRepo(t *testing.T) (dir, commit string) {
	dir = filepath.Join(t.TempDir(), "small")
	os.MkdirAll(filepath.Join(dir, "lib"), 0o755)
	gitCmd(t, dir, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(dir, "text.txt"), []byte("text\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "lib", "a.py"), []byte("A = 1\n"), 0o644)
	gitCmd(t, dir, "add", "-A")
	gitCmd(t, dir, "commit", "-q", "-m", "small")
	return dir, gitCmd(t, dir, "rev-parse", "HEAD")
}
