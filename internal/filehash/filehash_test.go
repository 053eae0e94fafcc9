package filehash

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSHA256Hex(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hello.txt")
	if err := os.WriteFile(p, []byte("Hello, World!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Nix's hello.txt vector.
	const want = "c98c24b677eff44860afea6f493bbaec5bb1c4cbb209c6fc2bbb47f66ff2ad31"
	if got, err := SHA256Hex(p); err != nil || got != want {
		t.Fatalf("SHA256Hex = %q, %v; want %s", got, err, want)
	}
	if _, err := SHA256Hex(filepath.Join(t.TempDir(), "missing")); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}
