package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/builder/python"
	"github.com/runpod-comfy/runpod-comfy/builder/python/wheeltest"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// BenchmarkVenv builds a venv from a lock of 30 packages (fresh store, empty wheel cache,
// files from a local find-links folder: venv, pinned install, relocation, hash-based
// bytecode, canonicalisation and NAR hashing) beside a plain `pip install -r` of the same
// pins into a fresh `python -m venv` from the same folder, then times the no-op rebuild.
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
