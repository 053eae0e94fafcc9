package model

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/internal/faulttest"
)

// TestMoveFileAcrossFilesystems moves a finished download onto another filesystem (a small
// tmpfs, so rename fails with EXDEV and the file is copied): the copy is whole and the source
// gone; onto a disk too small for it, the move fails, leaves no partial copy and keeps the
// source.
func TestMoveFileAcrossFilesystems(t *testing.T) {
	disk := faulttest.SmallDisk(t, 1<<20)
	data := bytes.Repeat([]byte("w"), 300<<10)
	src := filepath.Join(t.TempDir(), "m.part")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(disk, "m.safetensors")
	if err := moveFile(src, dst); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Errorf("moved %d bytes, want %d", len(got), len(data))
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Errorf("the source is still there: %v", err)
	}

	big := filepath.Join(t.TempDir(), "big.part")
	if err := os.WriteFile(big, bytes.Repeat([]byte("b"), 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(disk, "big.safetensors")
	if err := moveFile(big, full); err == nil {
		t.Fatal("2 MiB moved onto a 1 MiB disk")
	}
	if _, err := os.Lstat(full); err == nil {
		t.Error("a partial copy was left on the full disk")
	}
	if fi, err := os.Stat(big); err != nil || fi.Size() != 2<<20 {
		t.Errorf("the source was lost: %v", err)
	}
}
