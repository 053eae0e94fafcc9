package git

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRemoteMissingObjects: a remote that answers but lacks objects its refs need (a broken
// copy, a half-finished push, an object deleted from disk) is "corrupt or incomplete", not
// "unreachable": the network is fine, the repository is not.
func TestRemoteMissingObjects(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "remote")
	os.MkdirAll(dir, 0o755)
	gitCmd(t, dir, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(dir, "a.py"), []byte("A = 1\n"), 0o644)
	gitCmd(t, dir, "add", "-A")
	gitCmd(t, dir, "commit", "-q", "-m", "one")
	commit := gitCmd(t, dir, "rev-parse", "HEAD")
	blob := gitCmd(t, dir, "rev-parse", "HEAD:a.py")
	// Loose objects only (no pack): delete the blob's file.
	obj := filepath.Join(dir, ".git", "objects", blob[:2], blob[2:])
	if err := os.Remove(obj); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m := NewMirrors(filepath.Join(t.TempDir(), "git"), Credentials{})
	// ls-remote still works: the refs are there.
	if _, err := m.ResolveRef(ctx, dir, "main"); err != nil {
		t.Fatalf("ResolveRef: %v", err)
	}
	err := m.Export(ctx, dir, commit, filepath.Join(t.TempDir(), "out"), ExportOptions{})
	if err == nil {
		t.Fatal("export from a remote missing an object succeeded")
	}
	t.Logf("error: %v", err)
	if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnreachable) {
		t.Errorf("want ErrCorrupt (not ErrUnreachable), got %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "corrupt or incomplete") || strings.Contains(msg, "unreachable") {
		t.Errorf("message %q should say corrupt or incomplete, not unreachable", msg)
	}
}
