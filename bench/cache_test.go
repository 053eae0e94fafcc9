package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/runpod-comfy/runpod-comfy/store"
	"github.com/runpod-comfy/runpod-comfy/store/cache"
	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

// venvLikeTree writes about total bytes under dir: 60 % small Python-like text files
// (lines from Python-like templates, 2-40 kB each, in nested packages) and 40 % binary .so-like
// files (1-16 MB, half random bytes, half repeated tables: roughly the mix of a torch venv).
func venvLikeTree(b *testing.B, dir string, total int64) {
	b.Helper()
	rng := rand.New(rand.NewPCG(42, 7))
	words := make([]string, 3000)
	for i := range words {
		n := 2 + rng.IntN(10)
		w := make([]byte, n)
		for j := range w {
			w[j] = "abcdefghijklmnopqrstuvwxyz_"[rng.IntN(27)]
		}
		words[i] = string(w)
	}
	// Python-like lines: templates with identifiers drawn from the vocabulary, as real
	// modules repeat keywords, indentation and call shapes.
	templates := []string{
		"import %s\n", "from %s import %s\n", "\n\nclass %s(%s):\n", "    def %s(self, %s, %s=None):\n",
		"        \"\"\"Return the %s of %s.\"\"\"\n", "        if %s is None:\n", "            return %s\n",
		"        %s = self.%s(%s)\n", "        for %s in %s:\n", "            %s.append(%s)\n",
		"        raise ValueError(f\"bad %s: {%s!r}\")\n", "    @property\n", "        return self._%s\n",
		"%s = %s(%s, %s)\n", "        # %s %s %s\n", "        self.%s = %s\n",
	}
	var written int64
	textBudget := total * 6 / 10
	for i := 0; written < textBudget; i++ {
		pkg := filepath.Join(dir, "lib/python3.11/site-packages", fmt.Sprintf("pkg%03d", i/200), fmt.Sprintf("sub%02d", (i/20)%10))
		if err := os.MkdirAll(pkg, 0o755); err != nil {
			b.Fatal(err)
		}
		size := 2000 + rng.IntN(38000)
		var sb strings.Builder
		for sb.Len() < size {
			tpl := templates[rng.IntN(len(templates))]
			args := make([]any, strings.Count(tpl, "%s"))
			for k := range args {
				args[k] = words[rng.IntN(len(words))]
			}
			fmt.Fprintf(&sb, tpl, args...)
		}
		if err := os.WriteFile(filepath.Join(pkg, fmt.Sprintf("mod%04d.py", i)), []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		written += int64(sb.Len())
	}
	table := make([]byte, 64<<10)
	for i := range table {
		table[i] = byte(rng.IntN(16)) // low-entropy "code" section
	}
	for i := 0; written < total; i++ {
		size := (1 + rng.IntN(16)) << 20
		buf := make([]byte, size)
		for off := 0; off < size; off += 4096 {
			end := min(off+4096, size)
			if rng.IntN(2) == 0 {
				for j := off; j < end; j += 8 {
					v := rng.Uint64()
					for k := 0; k < 8 && j+k < end; k++ {
						buf[j+k] = byte(v >> (8 * k))
					}
				}
			} else {
				s := rng.IntN(len(table) - 4096)
				copy(buf[off:end], table[s:])
			}
		}
		so := filepath.Join(dir, "lib/python3.11/site-packages", fmt.Sprintf("native%02d", i), fmt.Sprintf("_C%02d.so", i))
		os.MkdirAll(filepath.Dir(so), 0o755)
		if err := os.WriteFile(so, buf, 0o755); err != nil {
			b.Fatal(err)
		}
		written += int64(size)
	}
}

func sh(b *testing.B, script string) time.Duration {
	b.Helper()
	t0 := time.Now()
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v\n%s", script, err, out)
	}
	return time.Since(t0)
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// BenchmarkCache pushes a 500 MB venv-like object to a file cache and substitutes it into an
// empty store, beside `tar c | zstd -3 -T0` and `zstd -d | tar x` of the same tree in the same
// run. It also compresses the object's NAR at three zstd levels to justify the chosen level.
func BenchmarkCache(b *testing.B) {
	if _, err := exec.LookPath("zstd"); err != nil {
		b.Fatalf("zstd not installed (apt-get install zstd): %v", err)
	}
	ctx := context.Background()
	tmp := b.TempDir()
	const total = 500 << 20
	tree := filepath.Join(tmp, "tree")
	venvLikeTree(b, tree, total)

	src, err := store.Open(filepath.Join(tmp, "src"))
	if err != nil {
		b.Fatal(err)
	}
	p, err := store.PathFor(store.DrvFingerprint(strings.Repeat("ab", 32), "venv"), "venv")
	if err != nil {
		b.Fatal(err)
	}
	m, err := src.Add(ctx, p, store.AddOptions{Kind: "venv"}, func(ctx context.Context, out string) error {
		return os.Rename(tree, out)
	})
	if err != nil {
		b.Fatal(err)
	}
	obj := src.Abs(p)
	mb := float64(m.NarSize) / 1e6

	for i := 0; i < b.N; i++ {
		// Levels: compress the NAR to nowhere.
		syscall.Sync()
		for _, lv := range []struct {
			name  string
			level zstd.EncoderLevel
		}{{"fastest", zstd.SpeedFastest}, {"default", zstd.SpeedDefault}, {"better", zstd.SpeedBetterCompression}} {
			var cw countWriter
			enc, _ := zstd.NewWriter(&cw, zstd.WithEncoderLevel(lv.level))
			t0 := time.Now()
			if err := nar.Dump(enc, obj); err != nil {
				b.Fatal(err)
			}
			enc.Close()
			d := time.Since(t0)
			b.ReportMetric(float64(m.NarSize)/float64(cw.n), "ratio_"+lv.name)
			b.ReportMetric(mb/d.Seconds(), "MB/s_compress_"+lv.name)
		}

		cacheDir := filepath.Join(tmp, fmt.Sprintf("cache%d", i))
		// Each timed step starts with no dirty pages left by the previous one, so that no
		// step pays for another's writeback.
		syscall.Sync()
		t0 := time.Now()
		res, err := cache.Push(ctx, src, cache.NewFileBackend(cacheDir), []store.Path{p}, cache.PushOptions{})
		if err != nil {
			b.Fatal(err)
		}
		push := time.Since(t0)

		tarFile := filepath.Join(tmp, fmt.Sprintf("tree%d.tar.zst", i))
		syscall.Sync()
		tarC := sh(b, fmt.Sprintf("tar -c -C %s . | zstd -3 -T0 -q -o %s", obj, tarFile))
		fi, _ := os.Stat(tarFile)

		dst, err := store.Open(filepath.Join(tmp, fmt.Sprintf("dst%d", i)))
		if err != nil {
			b.Fatal(err)
		}
		sub := &cache.Substituter{Caches: []cache.Backend{cache.NewFileBackend(cacheDir)}, AllowUnsigned: true}
		syscall.Sync()
		t0 = time.Now()
		if _, err := sub.Substitute(ctx, dst, p); err != nil {
			b.Fatal(err)
		}
		subst := time.Since(t0)

		untarDir := filepath.Join(tmp, fmt.Sprintf("untar%d", i))
		os.MkdirAll(untarDir, 0o755)
		syscall.Sync()
		tarX := sh(b, fmt.Sprintf("zstd -d -q -c %s | tar -x -C %s", tarFile, untarDir))

		b.ReportMetric(mb/push.Seconds(), "MB/s_push")
		b.ReportMetric(mb/tarC.Seconds(), "MB/s_tar_zstd")
		b.ReportMetric(tarC.Seconds()/push.Seconds(), "push_x_vs_tar_zstd")
		b.ReportMetric(mb/subst.Seconds(), "MB/s_substitute")
		b.ReportMetric(mb/tarX.Seconds(), "MB/s_zstd_d_tar_x")
		b.ReportMetric(tarX.Seconds()/subst.Seconds(), "subst_x_vs_zstd_tar")
		b.ReportMetric(float64(res.NarBytes)/float64(res.FileBytes), "ratio_push")
		b.ReportMetric(float64(m.NarSize)/float64(fi.Size()), "ratio_tar_zstd")
		b.Logf("NAR %d bytes -> %d (push %v, tar|zstd %v -> %d bytes; substitute %v, zstd -d|tar x %v)",
			res.NarBytes, res.FileBytes, push, tarC, fi.Size(), subst, tarX)
		os.RemoveAll(untarDir)
		os.RemoveAll(dst.Root())
	}

}
