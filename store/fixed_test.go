package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHashContent hashes Nix's hello.txt vector in both content algorithms, and refuses what
// it cannot hash: a directory, an unknown algorithm, a cancelled context.
func TestHashContent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hello.txt")
	if err := os.WriteFile(p, []byte("Hello, World!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for algo, want := range map[string]string{
		"sha256": "c98c24b677eff44860afea6f493bbaec5bb1c4cbb209c6fc2bbb47f66ff2ad31",
		"md5":    "bea8252ff4e80f41719ea13cdf007273",
	} {
		if got, n, err := HashContent(ctx, p, algo); err != nil || got != want || n != 14 {
			t.Errorf("%s: %s, %d, %v; want %s, 14", algo, got, n, err, want)
		}
	}
	if _, _, err := HashContent(ctx, filepath.Dir(p), "sha256"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	if _, _, err := HashContent(ctx, p, "sha1"); err == nil || !strings.Contains(err.Error(), `unknown checksum algorithm "sha1"`) {
		t.Errorf("unknown algorithm: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := HashContent(cancelled, p, "sha256"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	// The NAR hash read in the same pass is the one nar.Hash computes.
	h, err := hashFile(ctx, p, true, "sha256")
	if err != nil || h.narHash != "sha256:0xmvxmsmmc6n79sk2h3r6db3yp8drmxps61mdk7iqnvc6vcsww60" || h.narSize != 128 {
		t.Errorf("NAR in the same pass: %+v, %v", h, err)
	}
}
