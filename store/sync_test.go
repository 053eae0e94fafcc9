package store

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSyncObject: syncObject makes a staged tree durable with syncfs where the filesystem is
// one syncfs covers, refuses syncfs on any other filesystem (so the per-file fsync walk runs),
// and the fallback walk itself succeeds on a tree of files, directories and symlinks.
func TestSyncObject(t *testing.T) {
	out := filepath.Join(t.TempDir(), "obj")
	if err := os.MkdirAll(filepath.Join(out, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "a", "b", "f"), []byte("x"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a/b/f", filepath.Join(out, "l")); err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(out, &st); err != nil {
		t.Fatal(err)
	}
	if got, want := syncfs(filepath.Dir(out)), syncfsTypes[int64(st.Type)]; got != want {
		t.Errorf("syncfs on a filesystem of type %#x = %v, want %v", st.Type, got, want)
	}
	if syncfs("/proc") {
		t.Error("syncfs used on procfs, a filesystem outside the list")
	}
	if syncfs(filepath.Join(out, "missing")) {
		t.Error("syncfs reported success on a missing directory")
	}
	if err := syncObject(out); err != nil {
		t.Fatalf("syncObject: %v", err)
	}
	if err := syncTree(out); err != nil {
		t.Fatalf("syncTree: %v", err)
	}
	if err := syncTree(filepath.Join(out, "missing")); err == nil {
		t.Error("syncTree of a missing tree succeeded")
	}
}
