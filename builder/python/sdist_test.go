package python

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/builder/python/wheeltest"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// sdistBackend is an in-tree PEP 517 backend with no requirements, so pip builds the sdist
// offline: it zips the package into a wheel with fixed dates.
const sdistBackend = `
import base64, hashlib, os, zipfile

NAME, VERSION = "sdpkg", "1.0"
DIST = NAME + "-" + VERSION + ".dist-info"

def _files():
    out = {}
    for root, dirs, files in os.walk(NAME):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[p] = fh.read()
    out[DIST + "/METADATA"] = ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (NAME, VERSION)).encode()
    out[DIST + "/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: sdist-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    out[DIST + "/entry_points.txt"] = b"[console_scripts]\nsdtool = sdpkg:main\n"
    return out

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = NAME + "-" + VERSION + "-py3-none-any.whl"
    files = _files()
    record = ""
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for p, data in sorted(files.items()):
            z.writestr(zipfile.ZipInfo(p, (1980, 1, 1, 0, 0, 0)), data)
            h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record += "%s,sha256=%s,%d\n" % (p, h, len(data))
        record += DIST + "/RECORD,,\n"
        z.writestr(zipfile.ZipInfo(DIST + "/RECORD", (1980, 1, 1, 0, 0, 0)), record)
    return name
`

// writeSdist writes sdpkg-1.0.tar.gz into dir.
func writeSdist(t *testing.T, dir string) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range map[string]string{
		"PKG-INFO":          "Metadata-Version: 2.1\nName: sdpkg\nVersion: 1.0\n",
		"pyproject.toml":    "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n",
		"backend.py":        sdistBackend,
		"sdpkg/__init__.py": "def main():\n    print('sdtool built from the sdist')\n    return 0\n",
	} {
		if err := tw.WriteHeader(&tar.Header{Name: "sdpkg-1.0/" + name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	if err := os.WriteFile(filepath.Join(dir, "sdpkg-1.0.tar.gz"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSdistPackage locks a package that exists only as an sdist: the first build runs pip
// wheel once and records the wheel; a build with that wheel in the cache runs no pip (it
// installs whatever wheel the lock names); a rebuild giving other bytes than the lock records
// fails naming both.
func TestSdistPackage(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	ctx := context.Background()
	dir := t.TempDir()
	links := filepath.Join(dir, "links")
	os.MkdirAll(links, 0o755)
	writeSdist(t, links)
	reqs, err := Gather(ctx, nil, &specs.Python{Packages: []string{"sdpkg"}})
	if err != nil {
		t.Fatal(err)
	}
	lock, err := Resolve(ctx, ResolveOptions{Interpreter: f.in, Requirements: reqs, FindLinks: []string{links}, Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(lock.Packages) != 1 || lock.Packages[0].Filename != "sdpkg-1.0.tar.gz" {
		t.Fatalf("locked %+v", lock.Packages)
	}
	cache := filepath.Join(dir, "cache")
	b := &Builder{Fetch: FetchOptions{CacheDir: cache, FindLinks: []string{links}, Offline: true}, Environ: os.Environ()}
	s := openStore(t, filepath.Join(dir, "one"))
	d, _, err := Realise(ctx, s, lock, false, b)
	if err != nil {
		t.Fatal(err)
	}
	if got := runPy(t, filepath.Join(s.Abs(d.Path), "bin", "sdtool")); got != "sdtool built from the sdist\n" {
		t.Errorf("sdtool printed %q", got)
	}
	var pkg string
	for _, in := range d.Inputs {
		if strings.Contains(in.Name, "sdpkg") {
			pkg = s.Abs(in.Path)
		}
	}
	info, err := ReadPackageInfo(pkg)
	if err != nil {
		t.Fatal(err)
	}
	if info.Sdist != "sdpkg-1.0.tar.gz" || info.Wheel.Filename != "sdpkg-1.0-py3-none-any.whl" || !sha256Re.MatchString(info.Wheel.SHA256) {
		t.Fatalf("package info %+v", info)
	}
	if _, err := os.Stat(CachePath(cache, specs.PackageLock{Filename: info.Wheel.Filename, SHA256: info.Wheel.SHA256})); err != nil {
		t.Errorf("the built wheel is not in the wheel cache: %v", err)
	}

	// The lock records a wheel the cache holds: it is installed as it is, no pip wheel.
	other := wheeltest.Wheel{Name: "sdpkg", Version: "1.0", Scripts: map[string]string{"sdtool": "sdpkg:main"}}
	otherDir := t.TempDir()
	_, sum, err := other.Write(otherDir)
	if err != nil {
		t.Fatal(err)
	}
	recorded := *lock
	recorded.Packages = []specs.PackageLock{lock.Packages[0]}
	recorded.Packages[0].Wheel = &specs.BuiltWheel{Filename: other.Filename(), SHA256: sum}
	cp := CachePath(cache, specs.PackageLock{Filename: other.Filename(), SHA256: sum})
	os.MkdirAll(filepath.Dir(cp), 0o755)
	if err := copyFile(filepath.Join(otherDir, other.Filename()), cp); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, filepath.Join(dir, "two"))
	d2, _, err := Realise(ctx, s2, &recorded, false, b)
	if err != nil {
		t.Fatal(err)
	}
	if got := runPy(t, filepath.Join(s2.Abs(d2.Path), "bin", "sdtool")); got != "sdtool 1.0\n" {
		t.Errorf("with the recorded wheel sdtool printed %q (pip built the sdist again?)", got)
	}

	// Recorded, not cached, and pip builds other bytes: refused.
	recorded.Packages[0].Wheel = &specs.BuiltWheel{Filename: "sdpkg-1.0-py3-none-any.whl", SHA256: strings.Repeat("ab", 32)}
	s3 := openStore(t, filepath.Join(dir, "three"))
	_, _, err = Realise(ctx, s3, &recorded, false, b)
	if err == nil || !strings.Contains(err.Error(), "not reproducible") || !strings.Contains(err.Error(), info.Wheel.SHA256) {
		t.Fatalf("want a refusal naming both wheels, got %v", err)
	}
}
