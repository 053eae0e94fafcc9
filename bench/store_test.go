package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/store"
	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

// writeRandomFile writes size bytes of pseudo-random data (incompressible, deterministic).
func writeRandomFile(tb testing.TB, path string, size int64) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewSource(1))
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		rng.Read(buf)
		n := int64(len(buf))
		if n > left {
			n = left
		}
		w.Write(buf[:n])
		left -= n
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// cpuTime returns the user+system CPU time of this process: unlike wall time it does not
// grow when other processes load the machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// timeShell runs a shell pipeline and returns its wall time.
func timeShell(tb testing.TB, script string) time.Duration {
	tb.Helper()
	start := time.Now()
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s: %v\n%s", script, err, out)
	}
	return time.Since(start)
}

func requireTool(tb testing.TB, tool string) {
	tb.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		tb.Fatalf("%s is needed as the baseline: %v", tool, err)
	}
}

// BenchmarkStoreNARHashLargeFile hashes one 1 GiB file as a NAR beside
// `openssl dgst -sha256` on the same file (page cache warm for both).
func BenchmarkStoreNARHashLargeFile(b *testing.B) {
	requireTool(b, "openssl")
	const size = 1 << 30
	path := filepath.Join(b.TempDir(), "model.safetensors")
	writeRandomFile(b, path, size)
	timeShell(b, "cat "+path+" > /dev/null") // warm the page cache
	b.SetBytes(size)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, _, err := nar.Hash(path); err != nil {
			b.Fatal(err)
		}
	}
	ours := time.Since(start) / time.Duration(b.N)
	b.StopTimer()
	base := timeShell(b, "openssl dgst -sha256 "+path)
	b.ReportMetric(float64(size)/ours.Seconds()/1e6, "ours_MB/s")
	b.ReportMetric(float64(size)/base.Seconds()/1e6, "openssl_MB/s")
	b.ReportMetric(ours.Seconds()/base.Seconds(), "time_x_vs_openssl")
}

// BenchmarkStoreNARHashSmallFiles hashes a tree of 20,000 files of 1-8 KiB in 400
// directories as a NAR beside `tar c | openssl dgst -sha256` on the same tree.
func BenchmarkStoreNARHashSmallFiles(b *testing.B) {
	requireTool(b, "openssl")
	requireTool(b, "tar")
	root := filepath.Join(b.TempDir(), "tree")
	rng := rand.New(rand.NewSource(2))
	var total int64
	buf := make([]byte, 8<<10)
	for i := 0; i < 20000; i++ {
		dir := filepath.Join(root, fmt.Sprintf("pkg%02d", i%20), fmt.Sprintf("mod%02d", i%400/20))
		if i < 400 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		n := 1024 + rng.Intn(7<<10)
		rng.Read(buf[:n])
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d.py", i)), buf[:n], 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(n)
	}
	timeShell(b, "tar c -C "+root+" . > /dev/null") // warm the page and dentry caches
	b.SetBytes(total)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, _, err := nar.Hash(root); err != nil {
			b.Fatal(err)
		}
	}
	ours := time.Since(start) / time.Duration(b.N)
	b.StopTimer()
	base := timeShell(b, "tar c -C "+root+" . | openssl dgst -sha256")
	b.ReportMetric(20000/ours.Seconds(), "ours_files/s")
	b.ReportMetric(20000/base.Seconds(), "tar_openssl_files/s")
	b.ReportMetric(ours.Seconds()/base.Seconds(), "time_x_vs_tar_openssl")
}

// BenchmarkStoreGCPlan10k plans a GC over a store of 10,000 objects: 50 versions rooted
// (each a root object referencing 100 objects, half of them shared with the next version)
// and the rest garbage in chains. Target: under one second.
func BenchmarkStoreGCPlan10k(b *testing.B) {
	root := b.TempDir()
	s, err := store.Open(root)
	if err != nil {
		b.Fatal(err)
	}
	created := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	add := func(name string, refs []store.Path) store.Path {
		p, err := store.PathFor(store.DrvFingerprint(name, name), name)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(s.Abs(p), []byte(name), 0o444); err != nil {
			b.Fatal(err)
		}
		m := store.Meta{Path: p, NarHash: "sha256:0xmvxmsmmc6n79sk2h3r6db3yp8drmxps61mdk7iqnvc6vcsww60", NarSize: 128,
			References: append([]store.Path{}, refs...), Kind: "test", Source: "built", CreatedAt: created}
		data, _ := json.Marshal(m)
		if err := os.WriteFile(filepath.Join(s.Dir(), ".meta", p.Digest().String()+".json"), data, 0o444); err != nil {
			b.Fatal(err)
		}
		return p
	}
	n := 0
	var shared []store.Path
	for v := 0; v < 50; v++ {
		var refs []store.Path
		refs = append(refs, shared...)
		shared = nil
		for k := len(refs); k < 100; k++ {
			p := add(fmt.Sprintf("obj-%d-%d", v, k), nil)
			n++
			refs = append(refs, p)
			if k%2 == 0 {
				shared = append(shared, p)
			}
		}
		rootObj := add(fmt.Sprintf("comfy-v%d", v), refs)
		n++
		if err := os.Symlink("../store/"+rootObj.String(), s.RootLink(fmt.Sprintf("v%d", v))); err != nil {
			b.Fatal(err)
		}
	}
	var prev []store.Path
	for n < 10000 {
		p := add(fmt.Sprintf("garbage-%d", n), prev)
		prev = []store.Path{p}
		n++
	}
	ctx := context.Background()
	cpu0 := cpuTime()
	b.ResetTimer()
	var plan *store.GCPlan
	for i := 0; i < b.N; i++ {
		plan, err = s.PlanGC(ctx, store.GCOptions{Grace: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		plan.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64(n), "objects")
	b.ReportMetric(float64(plan.Live), "live")
	b.ReportMetric(float64(len(plan.Objects)), "dead")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/plan")
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu_ms/plan")
}
