package git

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMirrorDistance counts commits between two commits in a real mirror, both ways, and
// answers false (without running git on them) for what it cannot count.
func TestMirrorDistance(t *testing.T) {
	repo := t.TempDir()
	gitCmd(t, repo, "init", "-q", "-b", "main")
	var commits []string
	for i := 0; i < 3; i++ {
		os.WriteFile(filepath.Join(repo, "f"), []byte{byte('a' + i)}, 0o644)
		gitCmd(t, repo, "add", "-A")
		gitCmd(t, repo, "commit", "-q", "-m", "c")
		commits = append(commits, gitCmd(t, repo, "rev-parse", "HEAD"))
	}
	ctx := context.Background()
	m := NewMirrors(filepath.Join(t.TempDir(), "git"), Credentials{})
	if _, ok := m.Distance(ctx, repo, commits[0], commits[2]); ok {
		t.Error("distance answered without a mirror")
	}
	if _, err := m.Ensure(ctx, repo, commits[2]); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		from, to string
		want     int
	}{{commits[0], commits[2], 2}, {commits[2], commits[0], -2}, {commits[1], commits[1], 0}} {
		if n, ok := m.Distance(ctx, repo, c.from, c.to); !ok || n != c.want {
			t.Errorf("Distance(%.7s, %.7s) = %d, %v; want %d", c.from, c.to, n, ok, c.want)
		}
	}
	out := filepath.Join(t.TempDir(), "written")
	for _, bad := range []string{strings.Repeat("ab", 20), "HEAD", "--output=" + out, commits[0][:12]} {
		if n, ok := m.Distance(ctx, repo, bad, commits[2]); ok {
			t.Errorf("Distance from %q = %d, want no answer", bad, n)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a commit argument reached git as an option")
	}
}
