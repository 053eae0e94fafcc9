package python

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/builder/python/wheeltest"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// richWheel has every part of the format: root files, all five .data schemes, a #!python
// script, an executable member, console and gui scripts (one with extras), a namespace-style
// file another wheel also ships.
var richWheel = wheeltest.Wheel{
	Name: "demo-pkg", Version: "1.0",
	Scripts: map[string]string{"demo-cli": "demo_pkg.sub.m:main"},
	Entry:   "demo-x = demo_pkg.sub.m:main [extra]\n[gui_scripts]\ndemo-gui = demo_pkg.sub.m:main\n[other]\nignored = x:y\n",
	Files: map[string]string{
		"demo_pkg/sub/__init__.py":                     "",
		"demo_pkg/sub/m.py":                            "def main():\n    print('demo main')\n    return 0\n",
		"demo_pkg/bad.py":                              "def broken(:\n",
		"demo_pkg/bin/tool.sh":                         "#!/bin/sh\necho tool\n",
		"shared_ns/__init__.py":                        "# shared\n",
		"demo_pkg-1.0.data/scripts/rawtool":            "#!python\nimport demo_pkg\nprint('raw', demo_pkg.VERSION)\n",
		"demo_pkg-1.0.data/scripts/shtool":             "#!/bin/sh\necho sh\n",
		"demo_pkg-1.0.data/data/share/demo/x.txt":      "data\n",
		"demo_pkg-1.0.data/headers/demo.h":             "int x;\n",
		"demo_pkg-1.0.data/purelib/pl.py":              "P = 1\n",
		"demo_pkg-1.0.data/platlib/plat/__init__.py":   "Q = 1\n",
		"demo_pkg-1.0.data/platlib/plat/_native.so":    "\x7fELF not really\n",
		"demo_pkg-1.0.data/data/etc/demo/config.json":  "{}\n",
		"demo_pkg-1.0.data/scripts/python-helper-tool": "#!python\nprint('helper')\n",
	},
	Exec: []string{"demo_pkg-1.0.data/scripts/rawtool", "demo_pkg/bin/tool.sh"},
}

// installOurs installs a wheel file as a package object would be built, into prefix.
func installOurs(t *testing.T, in *Interpreter, wheel, name, prefix string) {
	t.Helper()
	iw, err := InstallWheel(wheel, prefix, WheelOptions{Name: name, PyVersion: pyVersionOf(in.Version)})
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	env := append(childEnv(tmp, nil), "PYTHONHASHSEED=0")
	pycs, err := compileSources(context.Background(), tmp, env, in.PythonIdentity, prefix, iw.Sources)
	if err != nil {
		t.Fatal(err)
	}
	if err := iw.Finish(pycs); err != nil {
		t.Fatal(err)
	}
}

func listTree(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = fi.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestInstallWheelLikePip installs one wheel with pip into a fresh venv and with ours into a
// prefix, and compares: the same files with the same execute bits and the same bytes, except
// what we do on purpose (INSTALLER names us; scripts start with the relocatable trampoline
// where pip writes the venv's absolute python; bytecode records prefix-relative paths; RECORD
// follows). Then both run their scripts.
func TestInstallWheelLikePip(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	ctx := context.Background()
	dir := t.TempDir()
	links := filepath.Join(dir, "links")
	if err := wheeltest.WriteAll(links, richWheel); err != nil {
		t.Fatal(err)
	}
	wheel := filepath.Join(links, richWheel.Filename())

	pipVenv := filepath.Join(dir, "pip-venv")
	env := childEnv(dir, nil)
	if err := run(ctx, dir, env, f.in.Path, "-m", "venv", "--without-pip", pipVenv); err != nil {
		t.Fatal(err)
	}
	before := listTree(t, pipVenv)
	if err := run(ctx, dir, env, f.in.Path, "-m", "pip", "--python", filepath.Join(pipVenv, "bin", "python"), "install",
		"--no-deps", "--no-index", "--find-links", links, "demo-pkg==1.0"); err != nil {
		t.Fatal(err)
	}
	pipFiles := listTree(t, pipVenv)
	for k := range before {
		delete(pipFiles, k)
	}
	ours := filepath.Join(dir, "ours")
	installOurs(t, f.in, wheel, "demo-pkg", ours)
	ourFiles := listTree(t, ours)

	var pipNames, ourNames []string
	for k := range pipFiles {
		pipNames = append(pipNames, k)
	}
	for k := range ourFiles {
		ourNames = append(ourNames, k)
	}
	sort.Strings(pipNames)
	sort.Strings(ourNames)
	if strings.Join(pipNames, "\n") != strings.Join(ourNames, "\n") {
		t.Fatalf("file sets differ:\npip:\n  %s\nours:\n  %s", strings.Join(pipNames, "\n  "), strings.Join(ourNames, "\n  "))
	}
	site := "lib/python" + pyVersionOf(f.in.Version) + "/site-packages/"
	scripts := map[string]bool{}
	for _, n := range pipNames {
		if pipFiles[n].Perm()&0o111 != ourFiles[n].Perm()&0o111 {
			t.Errorf("%s: pip's mode %v, ours %v", n, pipFiles[n], ourFiles[n])
		}
		pb, _ := os.ReadFile(filepath.Join(pipVenv, n))
		ob, _ := os.ReadFile(filepath.Join(ours, n))
		switch {
		case strings.HasSuffix(n, ".pyc"):
			if bytes.Contains(ob, []byte(ours)) || ob[4] != 1 {
				t.Errorf("%s: our pyc holds the prefix or is not unchecked-hash", n)
			}
		case strings.HasSuffix(n, "/INSTALLER"):
			if string(pb) != "pip\n" || string(ob) != "runpod-comfy\n" {
				t.Errorf("INSTALLER: pip %q, ours %q", pb, ob)
			}
		case strings.HasSuffix(n, "/RECORD"):
			pr, or := recordRows(t, pb), recordRows(t, ob)
			for path, ph := range pr {
				oh, ok := or[path]
				switch {
				case !ok:
					t.Errorf("RECORD: our RECORD lacks %s", path)
				case strings.HasSuffix(path, "/INSTALLER") || scripts["../../../"+strings.TrimPrefix(path, "../../../")] && strings.HasPrefix(path, "../../../bin/"):
				case strings.HasPrefix(path, "../../../bin/"):
					// checked with the script below
				case ph != oh:
					t.Errorf("RECORD %s: pip %q, ours %q", path, ph, oh)
				}
			}
			if len(pr) != len(or) {
				t.Errorf("RECORD: pip %d rows, ours %d", len(pr), len(or))
			}
			if want := "../../../bin/demo-cli,sha256=" + b64sha(mustRead(t, filepath.Join(ours, "bin/demo-cli"))) + ","; !strings.Contains(string(ob), want) {
				t.Errorf("our RECORD lacks %q", want)
			}
		case strings.HasPrefix(n, "bin/") && bytes.HasPrefix(pb, []byte("#!"+pipVenv+"/bin/python\n")):
			scripts[n] = true
			if !bytes.HasPrefix(ob, []byte(trampoline)) || !bytes.Equal(ob[len(trampoline):], pb[bytes.IndexByte(pb, '\n')+1:]) {
				t.Errorf("%s: ours is not the trampoline plus pip's body:\npip:\n%s\nours:\n%s", n, pb, ob)
			}
		default:
			if !bytes.Equal(pb, ob) {
				t.Errorf("%s differs:\npip:\n%s\nours:\n%s", n, pb, ob)
			}
		}
	}
	if !scripts["bin/demo-cli"] || !scripts["bin/demo-gui"] || !scripts["bin/rawtool"] || scripts["bin/shtool"] {
		t.Errorf("scripts rewritten by pip: %v", scripts)
	}
	if _, err := os.Stat(filepath.Join(ours, site, "demo_pkg/__pycache__/bad.cpython-311.pyc")); err == nil {
		t.Errorf("a pyc for a file that does not compile")
	}

	// Both run their scripts: pip's in its venv, ours composed into one.
	if got := runPy(t, filepath.Join(pipVenv, "bin", "demo-cli")); got != "demo main\n" {
		t.Errorf("pip's demo-cli printed %q", got)
	}
	venv := filepath.Join(dir, "venv")
	if err := Install(ctx, venv, VenvOptions{Interpreter: f.in.PythonIdentity, Packages: []string{ours}}); err != nil {
		t.Fatal(err)
	}
	for script, want := range map[string]string{"demo-cli": "demo main\n", "demo-x": "demo main\n", "rawtool": "raw 1.0\n", "demo-gui": "demo main\n"} {
		if got := runPy(t, filepath.Join(venv, "bin", script)); got != want {
			t.Errorf("our %s printed %q, want %q", script, got, want)
		}
	}
	// Not executable in the wheel, so not executable installed (as pip): it still runs by sh.
	if got := runPy(t, "/bin/sh", filepath.Join(venv, "bin", "python-helper-tool")); got != "helper\n" {
		t.Errorf("python-helper-tool printed %q", got)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func recordRows(t *testing.T, data []byte) map[string]string {
	t.Helper()
	if !bytes.HasSuffix(data, []byte("\r\n")) {
		t.Errorf("RECORD does not end in CRLF")
	}
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\r\n") {
		i := strings.Index(l, ",")
		out[l[:i]] = l[i+1:]
	}
	return out
}

// member is one zip member of a hand-made wheel.
type member struct {
	name, body string
	attrs      uint32 // external attributes >> 16 (unix mode); 0 for a plain file
	noRecord   bool   // leave it out of RECORD
	record     string // RECORD line to use instead of the right one
}

// handWheel writes a wheel holding exactly members (plus a RECORD unless one is given).
func handWheel(t *testing.T, dir, filename string, members []member) string {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	var rec strings.Builder
	hasRecord := false
	for _, m := range members {
		hdr := &zip.FileHeader{Name: m.name, Method: zip.Deflate}
		if m.attrs != 0 {
			hdr.CreatorVersion = 3 << 8
			hdr.ExternalAttrs = m.attrs << 16
		}
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(m.body))
		if strings.HasSuffix(m.name, ".dist-info/RECORD") {
			hasRecord = true
			continue
		}
		switch {
		case m.record != "":
			rec.WriteString(m.record + "\n")
		case !m.noRecord && !strings.HasSuffix(m.name, "/"):
			sum := sha256.Sum256([]byte(m.body))
			fmt.Fprintf(&rec, "%s,sha256=%s,%d\n", m.name, base64.RawURLEncoding.EncodeToString(sum[:]), len(m.body))
		}
	}
	if !hasRecord && !strings.HasPrefix(filename, "raw-") {
		w, _ := zw.Create("evil-1.0.dist-info/RECORD")
		w.Write([]byte(rec.String()))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, filename)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestInstallWheelRefuses tries hostile and broken wheels: each is refused with a
// *WheelError naming the wheel, the member and why, and nothing lands outside the prefix.
func TestInstallWheelRefuses(t *testing.T) {
	t.Parallel()
	meta := []member{
		{name: "evil-1.0.dist-info/METADATA", body: "Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n"},
		{name: "evil-1.0.dist-info/WHEEL", body: "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n"},
	}
	with := func(ms ...member) []member { return append(append([]member{}, meta...), ms...) }
	md5sum := md5.Sum([]byte("x = 1\n"))
	for _, tc := range []struct {
		name     string
		filename string
		members  []member
		want     string
	}{
		{"absolute path", "", with(member{name: "/tmp/evil.py", body: "x"}), "absolute member name"},
		{"dot-dot", "", with(member{name: "evil/../../../escape.py", body: "x"}), "not a clean relative path"},
		{"dot-dot in data", "", with(member{name: "evil-1.0.data/data/../../escape", body: "x"}), "not a clean relative path"},
		{"backslash", "", with(member{name: "evil\\..\\x.py", body: "x"}), "backslash"},
		{"symlink", "", with(member{name: "evil/link", body: "/etc/passwd", attrs: 0o120777}), "symlink member"},
		{"RECORD hash mismatch", "", with(member{name: "evil/__init__.py", body: "x = 1\n", record: "evil/__init__.py,sha256=" + strings.Repeat("A", 43) + ",6"}), "RECORD says"},
		{"RECORD size mismatch", "", with(member{name: "evil/__init__.py", body: "x = 1\n", record: "evil/__init__.py,sha256=" + b64sha([]byte("x = 1\n")) + ",7"}), "but RECORD says 7"},
		{"not in RECORD", "", with(member{name: "evil/__init__.py", body: "x = 1\n", noRecord: true}), "not listed in RECORD"},
		{"weak hash", "", with(member{name: "evil/__init__.py", body: "x = 1\n", record: "evil/__init__.py,md5=" + base64.RawURLEncoding.EncodeToString(md5sum[:]) + ",6"}), `"md5" is not accepted`},
		{"unknown scheme", "", with(member{name: "evil-1.0.data/root/etc/passwd", body: "x"}), "unknown .data scheme"},
		{"duplicate member", "", with(member{name: "evil/a.py", body: "1"}, member{name: "evil/a.py", body: "1"}), "duplicate member"},
		{"two destinations", "", with(member{name: "a.py", body: "1"}, member{name: "evil-1.0.data/purelib/a.py", body: "1"}), "installs to"},
		{"package info name", "", with(member{name: "evil-1.0.data/data/wheel.json", body: "{}"}), "keeps for itself"},
		{"no dist-info", "raw-1.0-py3-none-any.whl", []member{{name: "raw/__init__.py", body: "x"}}, "exactly one .dist-info"},
		{"two dist-infos", "", with(member{name: "other-1.0.dist-info/METADATA", body: "x"}), "exactly one .dist-info"},
		{"other project's dist-info", "other-1.0-py3-none-any.whl", meta, "does not name the wheel's project"},
		{"wheel version 2", "", []member{meta[0], {name: "evil-1.0.dist-info/WHEEL", body: "Wheel-Version: 2.0\n"}}, "Wheel-Version 2.0"},
		{"script name with a path", "", with(member{name: "evil-1.0.dist-info/entry_points.txt", body: "[console_scripts]\n../../evil = evil:main\n"}), "not a plain file name"},
		{"script target", "", with(member{name: "evil-1.0.dist-info/entry_points.txt", body: "[console_scripts]\nevil = os; import os\n"}), "not module:attr"},
		{"bad file name", "evil.zip", meta, "not a wheel file name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fn := tc.filename
			if fn == "" {
				fn = "evil-1.0-py3-none-any.whl"
			}
			wheel := handWheel(t, dir, fn, tc.members)
			prefix := filepath.Join(dir, "deep", "prefix")
			_, err := InstallWheel(wheel, prefix, WheelOptions{Name: strings.SplitN(fn, "-", 2)[0], PyVersion: "3.11"})
			var we *WheelError
			if !errors.As(err, &we) || we.Wheel != fn || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want a *WheelError for %s containing %q, got %v", fn, tc.want, err)
			}
			t.Log(err)
			// Nothing but the wheel and the prefix's own tree is anywhere under dir.
			filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				switch p {
				case dir, wheel, filepath.Join(dir, "deep"):
					return nil
				case prefix:
					return filepath.SkipDir
				}
				t.Errorf("written outside the prefix: %s", p)
				return nil
			})
		})
	}
}

// TestVenvSharesPackages builds two venvs that share a package in one store, and one of them
// again in a second ROOT: the shared package is one object whose files are the venvs' files
// (the same inodes), its bytecode is byte-identical wherever it was built and holds no store
// path, and each venv references its packages.
func TestVenvSharesPackages(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	ctx := context.Background()
	base := t.TempDir()
	lock := lockOf(t, f, false)
	small := *lock
	small.Packages = nil
	for _, p := range lock.Packages {
		if p.Name == "gamma" || p.Name == "delta" {
			small.Packages = append(small.Packages, p)
		}
	}
	b := &Builder{Fetch: FetchOptions{CacheDir: filepath.Join(base, "cache"), FindLinks: []string{f.links}, Offline: true}}
	s1 := openStore(t, filepath.Join(base, "one"))
	d1, m1, err := Realise(ctx, s1, lock, false, b)
	if err != nil {
		t.Fatal(err)
	}
	d2, m2, err := Realise(ctx, s1, &small, false, b)
	if err != nil {
		t.Fatal(err)
	}
	if d1.Path == d2.Path {
		t.Fatal("two pin sets, one venv")
	}
	s2 := openStore(t, filepath.Join(base, "two"))
	d3, m3, err := Realise(ctx, s2, &small, false, b)
	if err != nil {
		t.Fatal(err)
	}
	if d3.Path != d2.Path || m3.NarHash != m2.NarHash {
		t.Fatalf("second ROOT: %s %s, first %s %s", d3.Path, m3.NarHash, d2.Path, m2.NarHash)
	}
	var gamma string
	for _, in := range d1.Inputs {
		if strings.Contains(in.Name, "-gamma-") {
			gamma = in.Path.String()
		}
	}
	if gamma == "" {
		t.Fatalf("no gamma package among %v", d1.Inputs)
	}
	for _, m := range []struct {
		refs []store.Path
		name string
	}{{m1.References, "first venv"}, {m2.References, "second venv"}} {
		found := false
		for _, r := range m.refs {
			found = found || r.String() == gamma
		}
		if !found {
			t.Errorf("%s does not reference %s: %v", m.name, gamma, m.refs)
		}
	}
	rel := "lib/python" + pyVersionOf(f.in.Version) + "/site-packages/gamma/__pycache__/gamma.cpython-311.pyc"
	rel = strings.Replace(rel, "gamma.cpython", "__init__.cpython", 1)
	var pycs [][]byte
	var inodes []uint64
	for _, p := range []string{s1.Abs(d1.Path), s1.Abs(d2.Path), s2.Abs(d3.Path), filepath.Join(s1.Dir(), gamma)} {
		data := mustRead(t, filepath.Join(p, rel))
		if bytes.Contains(data, []byte(base)) {
			t.Errorf("%s: the pyc holds a path under %s", p, base)
		}
		pycs = append(pycs, data)
		fi, _ := os.Stat(filepath.Join(p, rel))
		inodes = append(inodes, fi.Sys().(*syscall.Stat_t).Ino)
	}
	for i := 1; i < len(pycs); i++ {
		if !bytes.Equal(pycs[0], pycs[i]) {
			t.Errorf("pyc %d differs from the first", i)
		}
	}
	if inodes[0] != inodes[1] || inodes[0] != inodes[3] {
		t.Errorf("the venvs do not share gamma's file with its package object: inodes %v", inodes)
	}
	if got := runPy(t, filepath.Join(s1.Abs(d2.Path), "bin", "gamma-cli")); got != "gamma-cli 1.0\n" {
		t.Errorf("gamma-cli printed %q", got)
	}
	if _, err := ReadPackageInfo(filepath.Join(s1.Dir(), gamma)); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(s1.Abs(d1.Path), packageInfoFile)); err == nil {
		t.Errorf("the package's wheel.json was linked into the venv")
	}

	// Where links fail the venv is copied, says so once, and is the same object.
	var notices []string
	bc := &Builder{Fetch: b.Fetch, Link: func(string, string) error { return &os.LinkError{Op: "link", Err: syscall.EXDEV} },
		Notice: func(m string) { notices = append(notices, m) }}
	s3 := openStore(t, filepath.Join(base, "three"))
	d4, m4, err := Realise(ctx, s3, &small, false, bc)
	if err != nil {
		t.Fatal(err)
	}
	if d4.Path != d2.Path || m4.NarHash != m2.NarHash {
		t.Errorf("copied venv %s %s, linked %s %s", d4.Path, m4.NarHash, d2.Path, m2.NarHash)
	}
	if len(notices) != 1 || !strings.Contains(notices[0], "copying") {
		t.Errorf("notices %q, want one about copying", notices)
	}
	fi, _ := os.Stat(filepath.Join(s3.Abs(d4.Path), rel))
	if n := fi.Sys().(*syscall.Stat_t).Nlink; n != 1 {
		t.Errorf("copied file has %d links", n)
	}
}

// TestComposeRefusesOwnFiles: a package may not replace the venv's own files.
func TestComposeRefusesOwnFiles(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	dir := t.TempDir()
	pkg := filepath.Join(dir, "pkg")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(pkg, "pyvenv.cfg"), []byte("home = /evil\n"), 0o644)
	err := Install(context.Background(), filepath.Join(dir, "venv"), VenvOptions{Interpreter: f.in.PythonIdentity, Packages: []string{pkg}})
	if err == nil || !strings.Contains(err.Error(), "pyvenv.cfg would replace one of the venv's own files") {
		t.Fatalf("want a refusal naming pyvenv.cfg, got %v", err)
	}
}

var _ = exec.Command
var _ = specs.BuiltWheel{}

// TestVenvChecksVersion: the interpreter at the locked path is another Python now; the venv
// build says so (a *StaleError) instead of building a venv for it.
func TestVenvChecksVersion(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	id := f.in.PythonIdentity
	id.Version = "3.0.0"
	err := Install(context.Background(), filepath.Join(t.TempDir(), "venv"), VenvOptions{Interpreter: id})
	var se *StaleError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), f.in.Version) {
		t.Fatalf("want a stale error naming %s, got %v", f.in.Version, err)
	}
}
