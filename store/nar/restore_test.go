package nar

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestRestoreManyFiles restores a tree of many small files (written by the writer goroutines),
// large ones (written by the parser), empty and executable files and symlinks, and checks the
// dump of the result is byte-identical and the modes are as documented.
func TestRestoreManyFiles(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	for d := 0; d < 5; d++ {
		sub := filepath.Join(src, fmt.Sprintf("d%d", d), "deep")
		os.MkdirAll(sub, 0o755)
		for i := 0; i < 60; i++ {
			mode := os.FileMode(0o644)
			if i%7 == 0 {
				mode = 0o755
			}
			content := bytes.Repeat([]byte{byte(i)}, i*997)
			os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%03d", i)), content, mode)
		}
		os.Symlink("deep/f001", filepath.Join(src, fmt.Sprintf("d%d", d), "link"))
	}
	big := make([]byte, 3*smallFile+5)
	for i := range big {
		big[i] = byte(i * 31)
	}
	os.WriteFile(filepath.Join(src, "big.so"), big, 0o755)
	var a bytes.Buffer
	if err := Dump(&a, src); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	if err := Restore(bytes.NewReader(a.Bytes()), dst); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Dump(&b, dst); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("dump of the restored tree differs")
	}
	for p, want := range map[string]os.FileMode{"big.so": 0o755, "d0/deep/f007": 0o755, "d0/deep/f001": 0o644, "d4": 0o755} {
		fi, err := os.Lstat(filepath.Join(dst, p))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm() | 0o022; got != want|0o022 { // less any umask of group/other write
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
}

// TestRestoreWriteError checks that a file a writer goroutine cannot create fails Restore,
// and that a truncated file fails it with ErrFormat.
func TestRestoreWriteError(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "missing", "out")
	if err := Restore(bytes.NewReader(narOf(file("x"))), dst); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("restoring into a missing directory: %v, want ErrNotExist", err)
	}
	data := narOf(dir(entry("a", file("1234567890"))))
	cut := bytes.Index(data, []byte("1234567890")) + 4
	err := Restore(bytes.NewReader(data[:cut]), filepath.Join(t.TempDir(), "out"))
	if !errors.Is(err, ErrFormat) {
		t.Errorf("truncated file content: %v, want ErrFormat", err)
	}
}
