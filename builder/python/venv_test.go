package python

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/builder/drv"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

// lockOf returns the shared test lock (ComfyUI wants alpha, node A pins numpy<2, the spec
// wants gamma with its console script and dependency), resolved once per test binary from the
// index or from the find-links folder.
func lockOf(t *testing.T, f *fixture, index bool) *specs.PythonLock {
	t.Helper()
	i := 0
	if index {
		i = 1
	}
	locks[i].once.Do(func() {
		srcs := []Source{
			mapSource("", map[string]string{"requirements.txt": "alpha\n"}),
			mapSource("A", map[string]string{"requirements.txt": "# pins\nnumpy<2\n"}),
		}
		reqs, err := Gather(context.Background(), srcs, &specs.Python{Packages: []string{"gamma"}})
		if err != nil {
			locks[i].err = err
			return
		}
		opts := ResolveOptions{Interpreter: f.in, Requirements: reqs, FindLinks: []string{f.links}, Offline: true}
		if index {
			opts = ResolveOptions{Interpreter: f.in, Requirements: reqs, IndexURL: f.index.SimpleURL()}
		}
		locks[i].lock, locks[i].err = Resolve(context.Background(), opts)
	})
	if locks[i].err != nil {
		t.Fatal(locks[i].err)
	}
	if len(locks[i].lock.Packages) != 4 {
		t.Fatalf("want 4 packages, got %+v", locks[i].lock.Packages)
	}
	return locks[i].lock
}

var locks [2]struct {
	once sync.Once
	lock *specs.PythonLock
	err  error
}

func openStore(t *testing.T, root string) *store.Store {
	t.Helper()
	s, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVenv(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	ctx := context.Background()
	base := t.TempDir()
	cache := filepath.Join(base, "cache")

	// Root 1 builds from the index (downloads into the wheel cache); root 2 builds the same
	// pins offline from that cache alone; the find-links lock has other URLs, same pins.
	indexLock := lockOf(t, f, true)
	root1, root2 := filepath.Join(base, "one"), filepath.Join(base, "two")
	s1 := openStore(t, root1)
	d1, m1, err := Realise(ctx, s1, indexLock, false, &Builder{Fetch: FetchOptions{CacheDir: cache}})
	if err != nil {
		t.Fatal(err)
	}
	downloads := 0
	for _, r := range f.index.Requests() {
		if strings.HasPrefix(r, "/files/") {
			downloads++
		}
	}
	if downloads < 4 {
		t.Errorf("the index served %d files, want the 4 locked ones at least", downloads)
	}
	s2 := openStore(t, root2)
	linksLock := lockOf(t, f, false)
	d2, m2, err := Realise(ctx, s2, linksLock, false, &Builder{Fetch: FetchOptions{CacheDir: cache, Offline: true}})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("same digest and NAR hash in two roots", func(t *testing.T) {
		if d1.Path != d2.Path {
			t.Fatalf("store paths differ: %s vs %s", d1.Path, d2.Path)
		}
		if m1.NarHash != m2.NarHash || m1.NarSize != m2.NarSize {
			t.Fatalf("NAR hashes differ: %s vs %s", m1.NarHash, m2.NarHash)
		}
		h1, _, err := nar.Hash(s1.Abs(d1.Path))
		if err != nil {
			t.Fatal(err)
		}
		h2, _, err := nar.Hash(s2.Abs(d2.Path))
		if err != nil {
			t.Fatal(err)
		}
		if h1 != m1.NarHash || h2 != m1.NarHash {
			t.Fatalf("on-disk NAR hashes %s, %s; metadata %s", h1, h2, m1.NarHash)
		}
	})

	venv := s1.Abs(d1.Path)
	t.Run("deterministic and relocatable files", func(t *testing.T) {
		cfg, err := os.ReadFile(filepath.Join(venv, "pyvenv.cfg"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(cfg), "command") || strings.Contains(string(cfg), root1) {
			t.Errorf("pyvenv.cfg holds the command or the venv path:\n%s", cfg)
		}
		pycs, _ := filepath.Glob(filepath.Join(venv, "lib", "python*", "site-packages", "gamma", "__pycache__", "*.pyc"))
		if len(pycs) != 1 {
			t.Fatalf("want one pyc for gamma, got %v", pycs)
		}
		pyc, _ := os.ReadFile(pycs[0])
		// PEP 552: flags word 0b01 = hash-based, unchecked.
		if len(pyc) < 16 || pyc[4] != 1 {
			t.Errorf("gamma's pyc is not an unchecked hash-based pyc: flags %v", pyc[4:8])
		}
		if _, err := os.Stat(filepath.Join(venv, "lib", "python3.11", "site-packages", "pip")); err == nil {
			t.Errorf("the venv carries pip")
		}
		for _, gone := range []string{"activate.fish", "activate.csh", "Activate.ps1"} {
			if _, err := os.Stat(filepath.Join(venv, "bin", gone)); err == nil {
				t.Errorf("bin/%s left in the venv", gone)
			}
		}
		direct, _ := filepath.Glob(filepath.Join(venv, "lib", "python*", "site-packages", "*.dist-info", "direct_url.json"))
		if len(direct) > 0 {
			t.Errorf("direct_url.json written: %v", direct)
		}
		rec, _ := filepath.Glob(filepath.Join(venv, "lib", "python*", "site-packages", "gamma-1.0.dist-info", "RECORD"))
		data, _ := os.ReadFile(rec[0])
		script, _ := os.ReadFile(filepath.Join(venv, "bin", "gamma-cli"))
		if !strings.HasPrefix(string(script), "#!/bin/sh\n") {
			t.Errorf("entry script is not a trampoline:\n%s", script)
		}
		if !strings.Contains(string(data), "../../../bin/gamma-cli,sha256="+b64sha(script)+",") {
			t.Errorf("RECORD does not hold the rewritten script's hash:\n%s", data)
		}
	})

	t.Run("runs after ROOT moves", func(t *testing.T) {
		moved := filepath.Join(base, "moved", "volume")
		if err := os.MkdirAll(filepath.Dir(moved), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(root1, moved); err != nil {
			t.Fatal(err)
		}
		mv := filepath.Join(moved, "store", d1.Path.String())
		var imports []string
		for _, p := range indexLock.Packages {
			imports = append(imports, "import "+p.Name+"; print("+p.Name+".__file__)")
		}
		out := runPy(t, filepath.Join(mv, "bin", "python"), "-c", strings.Join(imports, "\n"))
		if strings.Contains(out, root1) || !strings.Contains(out, mv) {
			t.Errorf("imports not from the moved venv:\n%s", out)
		}
		if got := runPy(t, filepath.Join(mv, "bin", "gamma-cli")); got != "gamma-cli 1.0\n" {
			t.Errorf("entry script printed %q", got)
		}
		// Through a relative symlink, as the runtime root links venv.
		link := filepath.Join(moved, "venv")
		if err := os.Symlink(filepath.Join("store", d1.Path.String()), link); err != nil {
			t.Fatal(err)
		}
		if got := runPy(t, filepath.Join(link, "bin", "gamma-cli")); got != "gamma-cli 1.0\n" {
			t.Errorf("entry script through a link printed %q", got)
		}
		if got := runPy(t, "/bin/bash", "-c", ". "+filepath.Join(link, "bin", "activate")+` && echo "$VIRTUAL_ENV" && command -v python`); !strings.Contains(got, mv+"\n"+mv+"/bin/python") {
			t.Errorf("activate computed %q", got)
		}
		if err := os.Rename(moved, root1); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("no-op rebuild", func(t *testing.T) {
		// A valid venv is not rebuilt: not even the wheel cache is read.
		_, m, err := Realise(ctx, s1, indexLock, false, &Builder{Fetch: FetchOptions{CacheDir: filepath.Join(base, "no-cache"), Offline: true}})
		if err != nil {
			t.Fatal(err)
		}
		if m.NarHash != m1.NarHash || !m.CreatedAt.Equal(m1.CreatedAt) {
			t.Errorf("rebuilt: %+v vs %+v", m, m1)
		}
	})

	t.Run("hash differs from the lock", func(t *testing.T) {
		bad := *linksLock
		bad.Packages = append([]specs.PackageLock{}, linksLock.Packages...)
		bad.Packages[0].SHA256 = strings.Repeat("0", 64)
		root := filepath.Join(base, "bad")
		s := openStore(t, root)
		d, _, err := Realise(ctx, s, &bad, false, &Builder{Fetch: FetchOptions{CacheDir: t.TempDir(), FindLinks: []string{f.links}}})
		if err == nil || !strings.Contains(err.Error(), bad.Packages[0].Filename) || !strings.Contains(err.Error(), "the lock says "+strings.Repeat("0", 64)) {
			t.Fatalf("want a hash mismatch naming %s, got %v", bad.Packages[0].Filename, err)
		}
		if p := venvPath(t, &bad); s.Valid(p) {
			t.Errorf("venv registered")
		} else if _, err := os.Lstat(s.Abs(p)); err == nil {
			t.Errorf("venv left at its final path")
		}
		if d != nil {
			t.Errorf("a derivation returned with the error")
		}
	})

	t.Run("offline with a missing wheel", func(t *testing.T) {
		lock := *linksLock
		lock.Packages = append([]specs.PackageLock{}, linksLock.Packages...)
		lock.Packages = append(lock.Packages, specs.PackageLock{Name: "zeta", Version: "9.9", URL: "https://example.org/zeta-9.9-py3-none-any.whl", Filename: "zeta-9.9-py3-none-any.whl", SHA256: strings.Repeat("a", 64)})
		s := openStore(t, filepath.Join(base, "offline"))
		_, _, err := Realise(ctx, s, &lock, false, &Builder{Fetch: FetchOptions{CacheDir: t.TempDir(), FindLinks: []string{f.links}, Offline: true}})
		var mf *MissingFilesError
		if !errors.As(err, &mf) || len(mf.Files) != 1 || mf.Files[0] != "zeta-9.9-py3-none-any.whl" {
			t.Fatalf("want zeta named as missing, got %v", err)
		}
	})

	t.Run("install error", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "broken-1.0-py3-none-any.whl")
		zf, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		zw := zip.NewWriter(zf)
		w, _ := zw.Create("broken/__init__.py")
		w.Write([]byte("x = 1\n"))
		zw.Close()
		zf.Close()
		data, _ := os.ReadFile(p)
		sum := sha256.Sum256(data)
		lock := *linksLock
		lock.Packages = append([]specs.PackageLock{{Name: "broken", Version: "1.0", URL: "file://" + p, Filename: filepath.Base(p), SHA256: hex.EncodeToString(sum[:])}}, linksLock.Packages...)
		s := openStore(t, filepath.Join(base, "broken"))
		_, _, err = Realise(ctx, s, &lock, false, &Builder{Fetch: FetchOptions{CacheDir: t.TempDir()}})
		var we *WheelError
		if !errors.As(err, &we) || we.Wheel != "broken-1.0-py3-none-any.whl" || !strings.Contains(we.Reason, ".dist-info") {
			t.Fatalf("want a wheel error naming broken-1.0-py3-none-any.whl and its missing .dist-info, got %v", err)
		}
		t.Log(err)
		if s.Valid(venvPath(t, &lock)) {
			t.Errorf("venv registered")
		}
	})
}

func b64sha(data []byte) string {
	sum := sha256.Sum256(data)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// venvPath is the store path the venv of lock gets.
func venvPath(t *testing.T, lock *specs.PythonLock) store.Path {
	t.Helper()
	py, pkgs, venv := Derivations(lock, false)
	for _, d := range append(append([]*drv.Derivation{py}, pkgs...), venv) {
		if err := d.Seal(); err != nil {
			t.Fatal(err)
		}
	}
	return venv.Path
}

// TestSystemSitePackages resolves and builds against the interpreter's own site-packages:
// what is installed there is kept, recorded in the lock, and visible in the venv; a node
// wanting another version of it is a conflict naming the site-packages.
func TestSystemSitePackages(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	ctx := context.Background()
	var pipVersion string
	for _, d := range f.in.SitePackages {
		if d.Name == "pip" {
			pipVersion = d.Version
		}
	}
	if pipVersion == "" {
		t.Fatalf("the interpreter's site-packages has no pip: %v", f.in.SitePackages)
	}
	sys := func(o *ResolveOptions) { o.Offline, o.SystemSitePackages = true, true }
	py := &specs.Python{FindLinks: []string{f.links}, SystemSitePackages: true}
	lock, err := resolveWith(t, f, []Source{mapSource("A", map[string]string{"requirements.txt": "pip>=20\ndelta\n"})}, py, sys)
	if err != nil {
		t.Fatal(err)
	}
	if len(lock.Packages) != 1 || lock.Packages[0].Name != "delta" {
		t.Fatalf("want only delta locked (pip comes from site-packages), got %+v", lock.Packages)
	}
	found := false
	for _, d := range lock.SystemSitePackages {
		found = found || d == specs.Distribution{Name: "pip", Version: pipVersion}
	}
	if !found {
		t.Errorf("lock's system_site_packages lacks pip %s", pipVersion)
	}

	s := openStore(t, t.TempDir())
	d, _, err := Realise(ctx, s, lock, true, &Builder{Fetch: FetchOptions{CacheDir: t.TempDir(), FindLinks: []string{f.links}, Offline: true}, Environ: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	out := runPy(t, filepath.Join(s.Abs(d.Path), "bin", "python"), "-c", "import pip, delta; print(pip.__version__, delta.VERSION)")
	if out != pipVersion+" 1.0\n" {
		t.Errorf("venv sees %q", out)
	}
	// Without system site-packages the same pins make another venv.
	if p := venvPath(t, lock); p == d.Path {
		t.Errorf("system_site_packages is not part of the venv's inputs")
	}

	_, err = resolveWith(t, f, []Source{mapSource("B", map[string]string{"requirements.txt": "\npip<1\n"})}, py, sys)
	if err == nil {
		t.Fatal("no conflict")
	}
	t.Log(err)
	for _, w := range []string{`node "B" wants pip<1 (custom_nodes/B/requirements.txt:2)`, "the interpreter's site-packages has pip===" + pipVersion} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("report lacks %q:\n%v", w, err)
		}
	}

	// A changed site-packages makes the lock stale.
	changed := append([]specs.Distribution{}, lock.SystemSitePackages...)
	for i := range changed {
		if changed[i].Name == "pip" {
			changed[i].Version = "0.1"
		}
	}
	err = CheckInterpreter(ctx, lock.Interpreter, "", changed, os.Environ())
	var se *StaleError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "pip 0.1 -> "+pipVersion) {
		t.Errorf("want a stale error naming pip, got %v", err)
	}
	if err := CheckInterpreter(ctx, lock.Interpreter, "pip 1.0", nil, os.Environ()); !errors.As(err, &se) || !strings.Contains(err.Error(), "lock: pip 1.0; found: "+f.in.Pip) {
		t.Errorf("want a stale error naming the pips, got %v", err)
	}
	moved := lock.Interpreter
	moved.Version = "3.0.0"
	if err := CheckInterpreter(ctx, moved, "", nil, os.Environ()); !errors.As(err, &se) || !strings.Contains(err.Error(), "3.0.0") {
		t.Errorf("want a stale error naming the version, got %v", err)
	}
}
