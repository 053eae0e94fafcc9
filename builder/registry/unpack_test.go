package registry

import (
	"archive/zip"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/internal/registrytest"
	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

// zent is one entry of a hand-made zip.
type zent struct {
	name string
	mode os.FileMode
	body string
	time time.Time
}

func makeZip(t *testing.T, ents ...zent) string {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range ents {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: e.time}
		if e.mode == 0 {
			e.mode = 0o644
		}
		h.SetMode(e.mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "a.zip")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUnpackRefuses(t *testing.T) {
	big := strings.Repeat("0", 4<<20) // deflates to a few KB
	cases := []struct {
		name string
		ents []zent
		lim  Limits
		want string
	}{
		{"absolute", []zent{{name: "/etc/passwd"}}, Limits{}, "absolute path"},
		{"drive letter", []zent{{name: "C:/x.py"}}, Limits{}, "absolute path"},
		{"dotdot", []zent{{name: "a/../../x.py"}}, Limits{}, "climbs out"},
		{"dotdot only", []zent{{name: "../x.py"}}, Limits{}, "climbs out"},
		{"backslash", []zent{{name: `a\..\..\x.py`}}, Limits{}, "backslash"},
		{"control char", []zent{{name: "a\nb.py"}}, Limits{}, "control character"},
		{"symlink absolute", []zent{{name: "l", mode: os.ModeSymlink | 0o777, body: "/etc"}}, Limits{}, "absolute path"},
		{"symlink out", []zent{{name: "d/l", mode: os.ModeSymlink | 0o777, body: "../../x"}}, Limits{}, "out of the node's directory"},
		{"symlink chain out", []zent{
			{name: "a/up", mode: os.ModeSymlink | 0o777, body: ".."},
			{name: "b", mode: os.ModeSymlink | 0o777, body: "a/up/.."},
		}, Limits{}, "out of the node's directory"},
		{"symlink loop", []zent{
			{name: "a", mode: os.ModeSymlink | 0o777, body: "b"},
			{name: "b", mode: os.ModeSymlink | 0o777, body: "a"},
		}, Limits{}, "more than 40 symlinks"},
		{"write through link", []zent{
			{name: "l", mode: os.ModeSymlink | 0o777, body: "sub"},
			{name: "l/x.py", body: "x"},
		}, Limits{}, "which is a symlink"},
		{"file under file", []zent{{name: "a", body: "x"}, {name: "a/b", body: "y"}}, Limits{}, "which is a file"},
		{"duplicate", []zent{{name: "x.py", body: "1"}, {name: "x.py", body: "2"}}, Limits{}, "appears twice"},
		{"duplicate after cleaning", []zent{{name: "a/x.py", body: "1"}, {name: "./a//x.py", body: "2"}}, Limits{}, "appears twice"},
		{"fifo", []zent{{name: "p", mode: os.ModeNamedPipe | 0o644}}, Limits{}, "neither a file"},
		{"device", []zent{{name: "d", mode: os.ModeDevice | 0o644}}, Limits{}, "neither a file"},
		{"zip bomb", []zent{{name: "a", body: big}, {name: "b", body: big}}, Limits{MaxBytes: 6 << 20}, "zip bomb"},
		{"too many files", []zent{{name: "a"}, {name: "b"}, {name: "c"}}, Limits{MaxFiles: 2}, "more than the 2 allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			err := Unpack(makeZip(t, c.ents...), out, c.lim)
			var ue *UnpackError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Unpack: %v, want an *UnpackError with %q", err, c.want)
			}
			if _, err := os.Lstat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the output exists after a refusal found before writing (%v)", err)
			}
		})
	}
}

// A zip whose headers under-state a file's size is caught while writing, with the limit.
func TestUnpackLyingHeaders(t *testing.T) {
	p := makeZip(t, zent{name: "a", body: strings.Repeat("x", 1<<20)})
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// Patch the central directory's uncompressed size (offset 24 in the record) to 10.
	cd := bytes.LastIndex(data, []byte("PK\x01\x02"))
	copy(data[cd+24:], []byte{10, 0, 0, 0})
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	err = Unpack(p, filepath.Join(t.TempDir(), "out"), Limits{MaxBytes: 1000})
	if err == nil {
		t.Fatal("a file larger than its header and the limit was unpacked")
	}
}

func TestUnpackDeterministic(t *testing.T) {
	t1 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	t2 := time.Date(2024, 6, 7, 8, 9, 10, 0, time.UTC)
	a := makeZip(t,
		zent{name: "__init__.py", body: "NODE_CLASS_MAPPINGS = {}\n", time: t1},
		zent{name: "web/", mode: os.ModeDir | 0o700, time: t1},
		zent{name: "web/x.js", body: "x", mode: 0o600, time: t1},
		zent{name: "install.sh", body: "#!/bin/sh\n", mode: 0o700, time: t1},
		zent{name: "link.py", mode: os.ModeSymlink | 0o777, body: "__init__.py", time: t1},
	)
	// The same tree: other order, times, permission bits (but the same executable bit), and
	// no directory entry.
	b := makeZip(t,
		zent{name: "link.py", mode: os.ModeSymlink | 0o777, body: "__init__.py", time: t2},
		zent{name: "install.sh", body: "#!/bin/sh\n", mode: 0o750, time: t2},
		zent{name: "web/x.js", body: "x", mode: 0o666, time: t2},
		zent{name: "./__init__.py", body: "NODE_CLASS_MAPPINGS = {}\n", time: t2},
	)
	var hashes []string
	for _, z := range []string{a, b} {
		out := filepath.Join(t.TempDir(), "out")
		if err := Unpack(z, out, Limits{}); err != nil {
			t.Fatal(err)
		}
		for rel, want := range map[string]os.FileMode{"__init__.py": 0o644, "web": os.ModeDir | 0o755, "web/x.js": 0o644, "install.sh": 0o755} {
			fi, err := os.Lstat(filepath.Join(out, rel))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != want {
				t.Errorf("%s: mode %v, want %v", rel, fi.Mode(), want)
			}
			if fi.ModTime().Equal(t1) || fi.ModTime().Equal(t2) {
				t.Errorf("%s: the archive's time %v leaked", rel, fi.ModTime())
			}
		}
		h, _, err := nar.Hash(out)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, h)
	}
	if hashes[0] != hashes[1] {
		t.Errorf("the same tree in two archives unpacks to NAR %s and %s", hashes[0], hashes[1])
	}
}

func TestReadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "n.zip")
	if err := os.WriteFile(p, registrytest.Zip(map[string]string{"requirements.txt": "numpy\n", "sub/r.txt": "x\n"}), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(p, "requirements.txt"); err != nil || string(b) != "numpy\n" {
		t.Fatalf("ReadFile: %q %v", b, err)
	}
	if b, err := ReadFile(p, "sub/./r.txt"); err != nil || string(b) != "x\n" {
		t.Fatalf("ReadFile: %q %v", b, err)
	}
	if _, err := ReadFile(p, "missing.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadFile of a missing file: %v", err)
	}
}
