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

// TestCopyFile copies a file with a new mode, and fails leaving things as they were when the
// destination exists (a file or a symlink, never followed), the source is missing or is not
// a regular file.
func TestCopyFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	data := bytes.Repeat([]byte("weights"), 200_000) // more than one buffer
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "dst")
	if err := CopyFile(dst, src, 0o444); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Errorf("copied %d bytes, want %d", len(got), len(data))
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o444 {
		t.Errorf("mode %v, want 0444", fi.Mode().Perm())
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	if err := CopyFile(filepath.Join(dir, "empty-copy"), empty, 0o644); err != nil {
		t.Errorf("empty file: %v", err)
	}

	if err := CopyFile(dst, empty, 0o644); !errors.Is(err, os.ErrExist) {
		t.Errorf("over an existing file: %v, want ErrExist", err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Error("the existing destination changed")
	}
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("keep"), 0o644)
	link := filepath.Join(dir, "link")
	os.Symlink(victim, link)
	if err := CopyFile(link, src, 0o644); !errors.Is(err, os.ErrExist) {
		t.Errorf("over a symlink: %v, want ErrExist", err)
	}
	if got, _ := os.ReadFile(victim); string(got) != "keep" {
		t.Error("a symlink destination was followed")
	}
	for name, from := range map[string]string{"missing": filepath.Join(dir, "nothing"), "directory": dir} {
		out := filepath.Join(dir, "out-"+name)
		if err := CopyFile(out, from, 0o644); err == nil {
			t.Errorf("%s source copied", name)
		}
		if _, err := os.Lstat(out); err == nil {
			t.Errorf("%s source left %s", name, out)
		}
	}
}
