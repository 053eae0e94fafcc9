package bench

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/builder/python"
	"github.com/runpod-comfy/runpod-comfy/builder/python/wheeltest"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// BenchmarkVenv builds a venv from a lock of 30 packages (fresh store, empty wheel cache,
// files from a local find-links folder: one package object per wheel — our installer, its
// bytecode, registration — and the venv composed of them by hard links) beside a plain `pip
// install -r` of the same pins into a fresh `python -m venv` from the same folder, then times
// the no-op rebuild.
func BenchmarkVenv(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	links := filepath.Join(dir, "wheels")
	var body strings.Builder
	for i := 0; i < 150; i++ {
		fmt.Fprintf(&body, "\ndef f%d(x, y=%d):\n    s = {%d, %d}\n    return [x + y + i for i in range(%d) if i in s]\n", i, i, i, i+1, i+2)
	}
	var wheels []wheeltest.Wheel
	for i := 0; i < 30; i++ {
		w := wheeltest.Wheel{Name: fmt.Sprintf("pkg-%02d", i), Version: fmt.Sprintf("1.%d.0", i), Extra: body.String()}
		if i%6 == 0 {
			w.Scripts = map[string]string{fmt.Sprintf("tool%02d", i): w.Module() + ":main"}
		}
		wheels = append(wheels, w)
	}
	if err := wheeltest.WriteAll(links, wheels...); err != nil {
		b.Fatal(err)
	}
	in, err := python.FindInterpreter(ctx, python.FindOptions{PathList: os.Getenv("PATH"), Env: os.Environ()})
	if err != nil {
		b.Fatal(err)
	}
	reqs := &python.Requirements{}
	for _, w := range wheels {
		reqs.Requires = append(reqs.Requires, python.Requirement{Text: w.Name + "==" + w.Version, Name: wheeltest.Normalize(w.Name), Origin: python.Origin{File: "spec", Field: "python.packages"}})
	}
	lock, err := python.Resolve(ctx, python.ResolveOptions{Interpreter: in, Requirements: reqs, FindLinks: []string{links}, Offline: true})
	if err != nil {
		b.Fatal(err)
	}
	if len(lock.Packages) != 30 {
		b.Fatalf("locked %d packages", len(lock.Packages))
	}
	var pins strings.Builder
	for _, p := range lock.Packages {
		fmt.Fprintf(&pins, "%s==%s\n", p.Name, p.Version)
	}
	pinsFile := filepath.Join(dir, "pins.txt")
	if err := os.WriteFile(pinsFile, []byte(pins.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "PIP_CONFIG_FILE=" + os.DevNull, "PIP_DISABLE_PIP_VERSION_CHECK=1"}

	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		root := filepath.Join(dir, fmt.Sprintf("root%d", n))
		s, err := store.Open(root)
		if err != nil {
			b.Fatal(err)
		}
		bl := &python.Builder{Fetch: python.FetchOptions{CacheDir: python.CacheDir(root), FindLinks: []string{links}, Offline: true}}
		start := time.Now()
		if _, _, err := python.Realise(ctx, s, lock, false, bl); err != nil {
			b.Fatal(err)
		}
		ours := time.Since(start)

		start = time.Now()
		if _, _, err := python.Realise(ctx, s, lock, false, bl); err != nil {
			b.Fatal(err)
		}
		noop := time.Since(start)

		venv := filepath.Join(dir, fmt.Sprintf("pip-venv%d", n))
		start = time.Now()
		for _, args := range [][]string{
			{in.Path, "-m", "venv", venv},
			{filepath.Join(venv, "bin", "pip"), "install", "--quiet", "--no-index", "--find-links", links, "-r", pinsFile},
		} {
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		pip := time.Since(start)

		b.ReportMetric(ours.Seconds(), "venv_s")
		b.ReportMetric(pip.Seconds(), "pip_s")
		b.ReportMetric(ours.Seconds()/pip.Seconds(), "x_vs_pip")
		b.ReportMetric(float64(noop.Microseconds())/1000, "noop_ms")
	}
}

var venvTorchMB = flag.Int("venv.torch-mb", 100, "BenchmarkVenvSecondVersion: unpacked size of the torch-like wheel in MB")

// duOnce is wheeltest.DiskUsage, failing the benchmark on an error.
func duOnce(tb testing.TB, dirs ...string) int64 {
	tb.Helper()
	n, err := wheeltest.DiskUsage(dirs...)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// BenchmarkVenvSecondVersion measures the first version of a venv (a torch-like wheel of
// 2,000 files and -venv.torch-mb MB, plus 30 small packages) and a second version that
// changes one small package, three ways, alternating in each iteration:
//
//   - ours: package objects + a venv of hard links in a fresh store (python.Realise);
//   - pip: `python -m venv` + `pip install --no-index` of the same pins into a new venv per
//     version (pip's own bytecode, no store);
//   - per-version: the previous layout, emulated: a new venv per version made by pip
//     (--no-compile) and compileall with deterministic pycs, as the venv builder did before
//     package objects.
//
// Reported: wall seconds of each version and the new bytes of the second (du, hard links
// once).
func BenchmarkVenvSecondVersion(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	links := filepath.Join(dir, "wheels")
	wheels := []wheeltest.Wheel{wheeltest.TorchLike("torchlike", "2.5.1", 2000, int64(*venvTorchMB)<<20)}
	var body strings.Builder
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&body, "\ndef f%d(x, y=%d):\n    return [x + y + i for i in range(%d)]\n", i, i, i+2)
	}
	for i := 0; i < 30; i++ {
		w := wheeltest.Wheel{Name: fmt.Sprintf("pkg-%02d", i), Version: "1.0.0", Extra: body.String()}
		if i%6 == 0 {
			w.Scripts = map[string]string{fmt.Sprintf("tool%02d", i): w.Module() + ":main"}
		}
		wheels = append(wheels, w)
	}
	changed := wheeltest.Wheel{Name: "pkg-07", Version: "1.0.1", Extra: body.String() + "\nCHANGED = True\n"}
	if err := wheeltest.WriteAll(links, append(wheels, changed)...); err != nil {
		b.Fatal(err)
	}
	in, err := python.FindInterpreter(ctx, python.FindOptions{PathList: os.Getenv("PATH"), Env: os.Environ()})
	if err != nil {
		b.Fatal(err)
	}
	lockFor := func(ws []wheeltest.Wheel) *specs.PythonLock {
		reqs := &python.Requirements{}
		for _, w := range ws {
			reqs.Requires = append(reqs.Requires, python.Requirement{Text: w.Name + "==" + w.Version, Name: wheeltest.Normalize(w.Name), Origin: python.Origin{File: "spec", Field: "python.packages"}})
		}
		lock, err := python.Resolve(ctx, python.ResolveOptions{Interpreter: in, Requirements: reqs, FindLinks: []string{links}, Offline: true})
		if err != nil {
			b.Fatal(err)
		}
		return lock
	}
	v2wheels := append([]wheeltest.Wheel{}, wheels...)
	v2wheels[8] = changed // wheels[0] is torchlike: pkg-07 is at 8
	locks := []*specs.PythonLock{lockFor(wheels), lockFor(v2wheels)}
	pins := make([]string, 2)
	for v, lock := range locks {
		var s strings.Builder
		for _, p := range lock.Packages {
			fmt.Fprintf(&s, "%s==%s\n", p.Name, p.Version)
		}
		pins[v] = filepath.Join(dir, fmt.Sprintf("pins%d.txt", v))
		if err := os.WriteFile(pins[v], []byte(s.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "PIP_CONFIG_FILE=" + os.DevNull, "PIP_DISABLE_PIP_VERSION_CHECK=1", "PYTHONHASHSEED=0"}
	runAll := func(cmds ...[]string) {
		for _, args := range cmds {
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	}
	pkgMB := func(lock *specs.PythonLock, name string) float64 {
		for _, p := range lock.Packages {
			if p.Name == name {
				fi, _ := os.Stat(filepath.Join(links, p.Filename))
				return float64(fi.Size()) / (1 << 20)
			}
		}
		return 0
	}
	b.ReportMetric(pkgMB(locks[1], "pkg-07"), "changed_wheel_MB")

	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		it := filepath.Join(dir, fmt.Sprintf("it%d", n))

		// ours
		root := filepath.Join(it, "root")
		s, err := store.Open(root)
		if err != nil {
			b.Fatal(err)
		}
		bl := &python.Builder{Fetch: python.FetchOptions{CacheDir: python.CacheDir(root), FindLinks: []string{links}, Offline: true}}
		var ours [2]time.Duration
		var oursDU [2]int64
		for v, lock := range locks {
			start := time.Now()
			if _, _, err := python.Realise(ctx, s, lock, false, bl); err != nil {
				b.Fatal(err)
			}
			ours[v] = time.Since(start)
			oursDU[v] = duOnce(b, filepath.Join(root, "store"))
		}

		// pip
		var pip [2]time.Duration
		var pipDU [2]int64
		for v := range locks {
			venv := filepath.Join(it, fmt.Sprintf("pip%d", v))
			start := time.Now()
			runAll([]string{in.Path, "-m", "venv", venv},
				[]string{filepath.Join(venv, "bin", "pip"), "install", "--quiet", "--no-index", "--find-links", links, "-r", pins[v]})
			pip[v] = time.Since(start)
			pipDU[v] = duOnce(b, venv)
		}

		// the previous layout: a whole venv per version
		var old [2]time.Duration
		var oldDU [2]int64
		for v := range locks {
			venv := filepath.Join(it, fmt.Sprintf("old%d", v))
			start := time.Now()
			runAll([]string{in.Path, "-m", "venv", "--without-pip", venv},
				[]string{in.Path, "-m", "pip", "--python", filepath.Join(venv, "bin", "python"), "install", "--quiet", "--no-deps", "--no-index", "--find-links", links, "--no-compile", "-r", pins[v]},
				[]string{filepath.Join(venv, "bin", "python"), "-c", "import compileall, py_compile, sys; compileall.compile_dir(sys.argv[1], quiet=2, workers=1, stripdir=sys.argv[2], invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)", filepath.Join(venv, "lib"), venv})
			old[v] = time.Since(start)
			oldDU[v] = duOnce(b, venv)
		}

		b.ReportMetric(ours[0].Seconds(), "ours_v1_s")
		b.ReportMetric(ours[1].Seconds(), "ours_v2_s")
		b.ReportMetric(ours[1].Seconds()/ours[0].Seconds(), "ours_v2/v1")
		b.ReportMetric(float64(oursDU[0])/(1<<20), "ours_v1_MB")
		b.ReportMetric(float64(oursDU[1]-oursDU[0])/(1<<20), "ours_v2_new_MB")
		b.ReportMetric(pip[0].Seconds(), "pip_v1_s")
		b.ReportMetric(pip[1].Seconds(), "pip_v2_s")
		b.ReportMetric(float64(pipDU[1])/(1<<20), "pip_v2_new_MB")
		b.ReportMetric(old[0].Seconds(), "old_v1_s")
		b.ReportMetric(old[1].Seconds(), "old_v2_s")
		b.ReportMetric(float64(oldDU[1])/(1<<20), "old_v2_new_MB")
		b.Logf("iteration %d: ours %.2fs + %.2fs (+%.2f MB), pip %.2fs + %.2fs (+%.1f MB), per-version %.2fs + %.2fs (+%.1f MB)",
			n, ours[0].Seconds(), ours[1].Seconds(), float64(oursDU[1]-oursDU[0])/(1<<20),
			pip[0].Seconds(), pip[1].Seconds(), float64(pipDU[1])/(1<<20),
			old[0].Seconds(), old[1].Seconds(), float64(oldDU[1])/(1<<20))
		os.RemoveAll(it) // the store is read-only: make it writable first
		filepath.WalkDir(it, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
		os.RemoveAll(it)
	}
}
