package python_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/builder"
	"github.com/runpod-comfy/runpod-comfy/builder/drv"
	"github.com/runpod-comfy/runpod-comfy/builder/python/wheeltest"
	"github.com/runpod-comfy/runpod-comfy/diff"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
	"github.com/runpod-comfy/runpod-comfy/store/cache"
)

// DiskUsage is wheeltest.DiskUsage, failing the test on an error.
func DiskUsage(t testing.TB, dir string) int64 {
	t.Helper()
	n, err := wheeltest.DiskUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// storeObject returns the one store object whose name ends in suffix.
func storeObject(t *testing.T, root, suffix string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(root, "store", "*-"+suffix))
	if len(m) != 1 {
		t.Fatalf("want one store object *-%s, got %v", suffix, m)
	}
	return m[0]
}

// TestSecondVersionShares builds two versions that differ by one small package, in one ROOT:
// the second adds that package's object, a venv of links and a root (no byte of the big
// package again); both run what they pin after ROOT moves; GC of the first keeps the shared
// package; and a second ROOT fed from a binary cache fetches only what is new for the
// second version and composes its venv locally.
func TestSecondVersionShares(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	links := filepath.Join(dir, "wheels")
	big := wheeltest.TorchLike("torchy", "2.5.0", 200, 2<<20)
	if err := wheeltest.WriteAll(links, big,
		wheeltest.Wheel{Name: "small-a", Version: "1.0", Scripts: map[string]string{"a-cli": "small_a:main"}},
		wheeltest.Wheel{Name: "small-b", Version: "1.0", Scripts: map[string]string{"b-cli": "small_b:main"}},
		wheeltest.Wheel{Name: "small-b", Version: "1.1", Scripts: map[string]string{"b-cli": "small_b:main"}},
	); err != nil {
		t.Fatal(err)
	}
	comfy := filepath.Join(dir, "ComfyUI")
	commit := repo(t, comfy, map[string]string{"main.py": "print('comfy')\n", "requirements.txt": "torchy\n"})
	spec := func(id, b string) *specs.Spec {
		return &specs.Spec{SchemaVersion: 2, VersionID: id, Comfy: specs.Comfy{Repo: comfy, Commit: commit},
			Python:  &specs.Python{Packages: []string{"small-a", "small-b==" + b}, FindLinks: []string{links}},
			Options: specs.Options{Offline: true}}
	}
	root := filepath.Join(dir, "root")
	build := func(root string, s *specs.Spec, subst func(context.Context, *drv.Derivation) (bool, error)) *builder.BuildResult {
		t.Helper()
		res, err := builder.Build(ctx, builder.BuildOptions{Root: root, Spec: s, Environ: os.Environ(), Substitute: subst})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res1 := build(root, spec("one", "1.0"), nil)
	before := DiskUsage(t, filepath.Join(root, "store"))
	res2 := build(root, spec("two", "1.1"), nil)
	growth := DiskUsage(t, filepath.Join(root, "store")) - before

	pkgB := storeObject(t, root, "python3.11-small-b-1.1")
	torchy := storeObject(t, root, "python3.11-torchy-2.5.0")
	// What the second version may add: small-b 1.1, and the new venv's and root's own blocks
	// (folders, which cannot be linked; files not linked from a package) and metadata.
	var own int64
	for _, id := range []string{"two"} {
		rootObj, _ := os.Readlink(filepath.Join(root, "builds", "comfy-"+id))
		venvLink, _ := os.Readlink(filepath.Join(root, "builds", rootObj, "venv"))
		for _, obj := range []string{filepath.Join(root, "builds", rootObj), filepath.Join(root, "builds", rootObj, venvLink)} {
			filepath.WalkDir(obj, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				fi, _ := os.Lstat(p)
				if st := fi.Sys().(*syscall.Stat_t); d.IsDir() || st.Nlink == 1 {
					own += st.Blocks * 512
				}
				return nil
			})
		}
	}
	pkgSize := DiskUsage(t, pkgB)
	torchySize := DiskUsage(t, torchy)
	t.Logf("second version: +%d bytes; small-b 1.1 is %d, the venv's and root's own blocks %d, torchy %d", growth, pkgSize, own, torchySize)
	if limit := pkgSize + own + 64<<10; growth > limit {
		t.Errorf("the second version added %d bytes, more than small-b (%d) + its venv's and root's own blocks (%d) + 64 KiB of metadata", growth, pkgSize, own)
	}
	if growth > torchySize/2 {
		t.Errorf("the second version added %d bytes: torchy (%d) was stored again", growth, torchySize)
	}
	so := filepath.Join("lib", "python3.11", "site-packages", "torchy", "lib", "libtorchy_000.so")
	var inodes []uint64
	for _, id := range []string{"one", "two"} {
		fi, err := os.Stat(filepath.Join(root, "builds", "comfy-"+id, "venv", so))
		if err != nil {
			t.Fatal(err)
		}
		inodes = append(inodes, fi.Sys().(*syscall.Stat_t).Ino)
	}
	if fi, _ := os.Stat(filepath.Join(torchy, so)); inodes[0] != inodes[1] || inodes[0] != fi.Sys().(*syscall.Stat_t).Ino {
		t.Errorf("torchy's library is not one file in both venvs and the package: %v", inodes)
	}

	// diff: the package that moved, and sizes that hold torchy once.
	{
		s, err := store.Open(root)
		if err != nil {
			t.Fatal(err)
		}
		rep := diff.Compare(builder.DiffSide(s, "one", spec("one", "1.0"), res1.Lock), builder.DiffSide(s, "two", spec("two", "1.1"), res2.Lock), builder.DiffOptions(ctx, s))
		if len(rep.Packages) != 1 || rep.Packages[0] != (diff.PackageChange{Name: "small-b", Change: "upgraded", From: "1.0", To: "1.1"}) {
			t.Errorf("diff packages %+v", rep.Packages)
		}
		tp, _ := store.ParsePath(filepath.Base(torchy))
		tm, err := s.Meta(tp)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Size.TotalB > tm.NarSize*3/2 || rep.Size.NewToStore != 0 || !rep.Size.Known {
			t.Errorf("diff sizes %+v count torchy (NAR %d) more than once", rep.Size, tm.NarSize)
		}
	}

	// Both versions import what they pin and run their scripts, after ROOT moves.
	moved := filepath.Join(dir, "elsewhere", "volume")
	os.MkdirAll(filepath.Dir(moved), 0o755)
	if err := os.Rename(root, moved); err != nil {
		t.Fatal(err)
	}
	for id, v := range map[string]string{"one": "1.0", "two": "1.1"} {
		bin := filepath.Join(moved, "builds", "comfy-"+id, "venv", "bin")
		out := runOut(t, filepath.Join(bin, "python"), "-c", "import torchy, small_a, small_b, torchy.sub000.m0000 as m; print(small_b.VERSION, torchy.VERSION, m.f1(1)); print(small_b.__file__)")
		if !strings.HasPrefix(out, v+" 2.5.0 [") || !strings.Contains(out, moved) || strings.Contains(out, root+"/") {
			t.Errorf("%s imports: %q", id, out)
		}
		if got := runOut(t, filepath.Join(bin, "b-cli")); got != "b-cli "+v+"\n" {
			t.Errorf("%s: b-cli printed %q", id, got)
		}
		if got := runOut(t, filepath.Join(bin, "a-cli")); got != "a-cli 1.0\n" {
			t.Errorf("%s: a-cli printed %q", id, got)
		}
	}
	if err := os.Rename(moved, root); err != nil {
		t.Fatal(err)
	}

	// GC after removing the first version keeps what the second references.
	s, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveRoot("one"); err != nil {
		t.Fatal(err)
	}
	plan, err := s.PlanGC(ctx, store.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := plan.Execute(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deleted := map[string]bool{}
	for _, d := range res.Deleted {
		deleted[filepath.Base(d.Path)] = true
	}
	pkgB10 := ""
	for d := range deleted {
		if strings.HasSuffix(d, "-python3.11-small-b-1.0") {
			pkgB10 = d
		}
	}
	if pkgB10 == "" || deleted[filepath.Base(torchy)] || deleted[filepath.Base(pkgB)] {
		t.Errorf("gc deleted %v", deleted)
	}
	if rep, err := s.Verify(ctx, store.VerifyOptions{}); err != nil || !rep.OK() {
		t.Errorf("verify after gc: %+v %v", rep, err)
	}

	// A binary cache: another ROOT substitutes the first version's packages, composes its
	// venv, then fetches only the second version's new package (and root).
	cdir := filepath.Join(dir, "cache")
	backend := cache.NewFileBackend(cdir)
	build(root, spec("one", "1.0"), nil)
	for _, id := range []string{"one", "two"} {
		p, err := s.RootOf(id)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cache.Push(ctx, s, backend, []store.Path{p}, cache.PushOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	root3 := filepath.Join(dir, "worker")
	s3, err := store.Open(root3)
	if err != nil {
		t.Fatal(err)
	}
	sub := &cache.Substituter{Caches: []cache.Backend{backend}, AllowUnsigned: true}
	var fetched []string
	hook := func(ctx context.Context, d *drv.Derivation) (bool, error) {
		_, err := sub.SubstituteExpect(ctx, s3, d.Path, &cache.Expect{References: d.References(), Kind: d.Kind, Derivation: d.CanonicalJSON()})
		if errors.Is(err, cache.ErrNotSubstituted) {
			return false, nil
		}
		if err == nil {
			fetched = append(fetched, d.Kind+" "+d.Name)
		}
		return err == nil, err
	}
	r1 := build(root3, spec("one", "1.0"), hook)
	if r1.Built != 1 {
		t.Errorf("first version on the worker: built %d (want the venv only), substituted %v", r1.Built, fetched)
	}
	fetched = nil
	r2 := build(root3, spec("two", "1.1"), hook)
	want := []string{"python-package python3.11-small-b-1.1", "root comfy-two"}
	if strings.Join(fetched, ",") != strings.Join(want, ",") || r2.Built != 1 {
		t.Errorf("second version on the worker fetched %v and built %d; want %v and the venv", fetched, r2.Built, want)
	}
	if got := runOut(t, filepath.Join(root3, "builds", "comfy-two", "venv", "bin", "b-cli")); got != "b-cli 1.1\n" {
		t.Errorf("worker's b-cli printed %q", got)
	}
	// The worker's venv is the same object as the builder's.
	v2, _ := os.Readlink(filepath.Join(root, "builds", "comfy-two", "venv"))
	v3, _ := os.Readlink(filepath.Join(root3, "builds", "comfy-two", "venv"))
	if v2 != v3 {
		t.Errorf("venvs differ: %s vs %s", v2, v3)
	}
}

func runOut(t *testing.T, exe string, args ...string) string {
	t.Helper()
	cmd := exec.Command(exe, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", exe, args, err, out)
	}
	return string(out)
}
