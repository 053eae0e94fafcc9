package rawfile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestCopyNAndWriteFile(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("0123456789"), 1000)
	p := filepath.Join(dir, "copied")
	// A small buffer makes CopyN loop; the reader holds more than size.
	if err := CopyN(p, 0o555, bytes.NewReader(append(data, "extra"...)), int64(len(data)), make([]byte, 7)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("copied %d bytes (%v), want %d", len(got), err, len(data))
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm()&0o222 != 0 || fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("mode %v, want read-only and executable", fi.Mode())
	}
	w := filepath.Join(dir, "written")
	if err := WriteFile(w, 0o444, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(w, 0o444, []byte("again")); !errors.Is(err, os.ErrExist) {
		t.Errorf("WriteFile over an existing file: %v, want ErrExist", err)
	}
	if err := CopyN(filepath.Join(dir, "short"), 0o444, bytes.NewReader([]byte("abc")), 10, make([]byte, 4)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short reader: %v, want io.ErrUnexpectedEOF", err)
	}
}
