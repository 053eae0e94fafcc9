package nar

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// enc builds a NAR from tokens, for hand-made (possibly malformed) archives.
func enc(tokens ...string) []byte {
	var b bytes.Buffer
	for _, t := range tokens {
		var l [8]byte
		binary.LittleEndian.PutUint64(l[:], uint64(len(t)))
		b.Write(l[:])
		b.WriteString(t)
		if r := len(t) % 8; r != 0 {
			b.Write(make([]byte, 8-r))
		}
	}
	return b.Bytes()
}

func file(content string) []string {
	return []string{"(", "type", "regular", "contents", content, ")"}
}

func dir(entries ...[]string) []string {
	out := []string{"(", "type", "directory"}
	for _, e := range entries {
		out = append(out, e...)
	}
	return append(out, ")")
}

func entry(name string, node []string) []string {
	return append(append([]string{"entry", "(", "name", name, "node"}, node...), ")")
}

func narOf(node []string) []byte { return enc(append([]string{Magic}, node...)...) }

func readAll(data []byte) ([]Header, error) {
	r := NewReader(bytes.NewReader(data))
	var out []Header
	for {
		h, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if h.Type == TypeRegular {
			if _, err := io.Copy(io.Discard, r); err != nil {
				return out, err
			}
		}
		out = append(out, *h)
	}
}

func TestReaderRejects(t *testing.T) {
	cases := map[string][]byte{
		"dotdot":       narOf(dir(entry("..", file("x")))),
		"dot":          narOf(dir(entry(".", file("x")))),
		"slash":        narOf(dir(entry("a/b", file("x")))),
		"NUL":          narOf(dir(entry("a\x00b", file("x")))),
		"empty":        narOf(dir(entry("", file("x")))),
		"duplicate":    narOf(dir(entry("a", file("x")), entry("a", file("y")))),
		"out of order": narOf(dir(entry("b", file("x")), entry("a", file("y")))),
		"bad magic":    enc(append([]string{"nix-archive-2"}, file("x")...)...),
		"bad type":     narOf([]string{"(", "type", "fifo", ")"}),
		"trailing":     append(narOf(file("x")), 0),
		"truncated":    narOf(file("hello"))[:60],
		"empty target": narOf([]string{"(", "type", "symlink", "target", "", ")"}),
		"long name":    narOf(dir(entry(strings.Repeat("a", 256), file("x")))),
	}
	nonzero := narOf(file("x"))
	nonzero[len(nonzero)-17] = 1 // padding after the 1-byte content
	cases["non-zero padding"] = nonzero
	for name, data := range cases {
		if _, err := readAll(data); err == nil || !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", name, err)
		}
		if err := Restore(bytes.NewReader(data), filepath.Join(t.TempDir(), "out")); err == nil {
			t.Errorf("%s: Restore accepted it", name)
		}
	}
}

func TestDumpRestoreRoundTrip(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(filepath.Join(src, "foo"), 0o755)
	os.MkdirAll(filepath.Join(src, "empty"), 0o755)
	os.WriteFile(filepath.Join(src, "foo", "b"), []byte("b"), 0o644)
	os.WriteFile(filepath.Join(src, "foo-a"), []byte("foo-a"), 0o644)
	os.WriteFile(filepath.Join(src, "run"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(src, "g"), []byte("group x only"), 0o654)
	os.Symlink("foo/b", filepath.Join(src, "rel"))
	os.Symlink("/abs/target", filepath.Join(src, "abs"))
	var a bytes.Buffer
	if err := Dump(&a, src); err != nil {
		t.Fatal(err)
	}
	hs, err := readAll(a.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, h := range hs {
		order = append(order, h.Path)
	}
	// Entries sort by name bytes: foo < foo-a, so foo/b comes before foo-a.
	want := "/ /abs /empty /foo /foo/b /foo-a /g /rel /run"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("order %q, want %q", got, want)
	}
	for _, h := range hs {
		if h.Path == "/g" && h.Executable {
			t.Error("0654 must not be executable (owner x bit only)")
		}
		if h.Path == "/run" && !h.Executable {
			t.Error("0755 must be executable")
		}
	}
	dst := filepath.Join(t.TempDir(), "dst")
	if err := Restore(bytes.NewReader(a.Bytes()), dst); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	Dump(&b, dst)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("dump of the restored tree differs")
	}
	h1, n1, files, err := HashFiles(src)
	h2, n2, _ := Hash(src)
	if err != nil || h1 != h2 || n1 != n2 || n1 != int64(a.Len()) || len(files) != 9 {
		t.Errorf("HashFiles %s %d (%d files), Hash %s %d, %v", h1, n1, len(files), h2, n2, err)
	}
	if err := Dump(io.Discard, "/dev/null"); err == nil {
		t.Error("a device was dumped")
	}
}

// FuzzReader feeds arbitrary bytes to the reader. Whatever it accepts must restore to a tree
// whose dump is byte-identical to the input (so nothing unsafe or non-canonical gets through).
func FuzzReader(f *testing.F) {
	f.Add(narOf(file("Hello, World!\n")))
	f.Add(narOf([]string{"(", "type", "regular", "executable", "", "contents", "x", ")"}))
	f.Add(narOf([]string{"(", "type", "symlink", "target", "../x", ")"}))
	f.Add(narOf(dir(entry("a", file("1")), entry("b", dir(entry("c", file("2")))))))
	f.Add(narOf(dir(entry("..", file("x")))))
	f.Add(narOf(dir(entry("b", file("x")), entry("a", file("y")))))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := readAll(data); err != nil {
			return
		}
		dst := filepath.Join(t.TempDir(), "out")
		if err := Restore(bytes.NewReader(data), dst); err != nil {
			t.Fatalf("readable NAR failed to restore: %v", err)
		}
		var b bytes.Buffer
		if err := Dump(&b, dst); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.Bytes(), data) {
			t.Fatalf("round trip differs:\n in  %x\n out %x", data, b.Bytes())
		}
	})
}

func TestHashFilesLargeFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	os.Mkdir(dir, 0o755)
	big := make([]byte, 3<<20+12345)
	for i := range big {
		big[i] = byte(i * 7 / 3)
	}
	os.WriteFile(filepath.Join(dir, "big.so"), big, 0o755)
	os.WriteFile(filepath.Join(dir, "small.py"), []byte("x = 1\n"), 0o644)
	h, n, files, err := HashFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	h2, n2, _ := Hash(dir)
	if h != h2 || n != n2 {
		t.Errorf("HashFiles %s %d, Hash %s %d", h, n, h2, n2)
	}
	sum := sha256.Sum256(big)
	small := sha256.Sum256([]byte("x = 1\n"))
	want := map[string]string{"big.so": hex.EncodeToString(sum[:]), "small.py": hex.EncodeToString(small[:])}
	for _, f := range files {
		if w, ok := want[f.Path]; ok && f.SHA256 != w {
			t.Errorf("%s: sha256 %s, want %s", f.Path, f.SHA256, w)
		}
		if f.Path == "big.so" && (f.Type != "executable" || f.Size != int64(len(big))) {
			t.Errorf("big.so listed as %+v", f)
		}
	}
}
