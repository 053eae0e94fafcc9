package model

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestPlaceAdopted places a user's file into a new path the three ways: a plain file is
// shared (a reflink where the filesystem clones, else a hard link), an executable is never
// hard-linked (the store would have to change its mode), and an existing out or a missing
// file fails without touching what is there.
func TestPlaceAdopted(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("weights of "+name), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	same := func(a, b string) bool {
		fa, _ := os.Stat(a)
		fb, _ := os.Stat(b)
		return fa.Sys().(*syscall.Stat_t).Ino == fb.Sys().(*syscall.Stat_t).Ino
	}
	check := func(file, out string) {
		t.Helper()
		a, _ := os.ReadFile(file)
		b, err := os.ReadFile(out)
		if err != nil || string(a) != string(b) {
			t.Errorf("%s holds %q (%v), want %q", out, b, err, a)
		}
	}

	plain := write("plain.safetensors", 0o644)
	out := filepath.Join(dir, "out-plain")
	how, err := placeAdopted(plain, out)
	if err != nil {
		t.Fatal(err)
	}
	check(plain, out)
	switch how {
	case AdoptHardLink:
		if !same(plain, out) {
			t.Error("a hard link that is another file")
		}
	case AdoptReflink:
	default:
		t.Errorf("a plain file on one filesystem was placed by %q", how)
	}

	exe := write("run.bin", 0o755)
	out = filepath.Join(dir, "out-exe")
	if how, err = placeAdopted(exe, out); err != nil {
		t.Fatal(err)
	}
	check(exe, out)
	if how == AdoptHardLink || same(exe, out) {
		t.Errorf("an executable was hard-linked (%q)", how)
	}

	taken := write("taken", 0o644)
	if _, err := placeAdopted(plain, taken); err == nil {
		t.Error("placed over an existing file")
	}
	if b, _ := os.ReadFile(taken); string(b) != "weights of taken" {
		t.Errorf("the existing file changed to %q", b)
	}
	out = filepath.Join(dir, "out-missing")
	if _, err := placeAdopted(filepath.Join(dir, "missing"), out); err == nil {
		t.Error("placed a missing file")
	}
	if _, err := os.Lstat(out); err == nil {
		t.Error("a failed placement left its output")
	}
}
