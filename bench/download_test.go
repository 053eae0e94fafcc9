package bench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/builder/model"
)

// makeModelFile writes size pseudo-random bytes to path and returns their checksum.
func makeModelFile(tb testing.TB, path string, size int64, seed uint64) model.Checksum {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	var seedBytes [32]byte
	seedBytes[0] = byte(seed)
	r := rand.NewChaCha8(seedBytes)
	if _, err := io.CopyN(io.MultiWriter(f, h), r, size); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return model.Checksum{Algo: model.SHA256, Hex: fmt.Sprintf("%x", h.Sum(nil))}
}

// fileServer serves the files of dir as net/http's file server does (ranges, If-Range, a
// Last-Modified validator), with every response throttled to limit bytes per second when
// limit > 0, as a CDN caps one connection. Unthrottled, whole files go out with sendfile.
func fileServer(dir string, limit int64) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(filepath.Join(dir, filepath.Base(r.URL.Path)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.Size(), fi.ModTime().UnixNano()))
		if limit > 0 {
			w = &throttled{ResponseWriter: w, limit: limit, start: time.Now()}
		}
		http.ServeContent(w, r, "", fi.ModTime(), f)
	}))
}

// throttled paces the body of one response to limit bytes per second.
type throttled struct {
	http.ResponseWriter
	limit int64
	start time.Time
	sent  int64
}

func (t *throttled) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := min(len(p), 64<<10)
		m, err := t.ResponseWriter.Write(p[:c])
		n += m
		t.sent += int64(m)
		if err != nil {
			return n, err
		}
		p = p[c:]
		if ahead := time.Duration(float64(t.sent)/float64(t.limit)*float64(time.Second)) - time.Since(t.start); ahead > 0 {
			time.Sleep(ahead)
		}
	}
	return n, nil
}

// TestHelperModelServer is not a test: run by startServerProcess as a child process, it
// serves $MODEL_SERVER_DIR on a loopback port (each response capped at $MODEL_SERVER_LIMIT
// bytes per second when set), prints the URL and serves until killed.
func TestHelperModelServer(t *testing.T) {
	dir := os.Getenv("MODEL_SERVER_DIR")
	if dir == "" {
		t.Skip("only run as the server process of the download benchmarks")
	}
	limit, _ := strconv.ParseInt(os.Getenv("MODEL_SERVER_LIMIT"), 10, 64)
	srv := fileServer(dir, limit)
	fmt.Println("URL " + srv.URL)
	select {}
}

// startServerProcess serves dir from a separate process, so that the server does not share
// the benchmark's Go runtime with the downloader being measured (curl runs as a process too).
func startServerProcess(tb testing.TB, dir string, limit int64) string {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperModelServer$", "-test.bench=^$", "-test.v=false")
	cmd.Env = append(os.Environ(), "MODEL_SERVER_DIR="+dir, fmt.Sprintf("MODEL_SERVER_LIMIT=%d", limit))
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var line string
	for {
		var b [1]byte
		if _, err := out.Read(b[:]); err != nil {
			tb.Fatalf("server process: %v", err)
		}
		if b[0] == '\n' {
			if u, ok := strings.CutPrefix(line, "URL "); ok {
				return u
			}
			line = ""
			continue
		}
		line += string(b[0])
	}
}

// processCPU is the user plus system CPU time this process has used so far.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// newBenchFetcher returns a Fetcher with the default options; $BENCH_CONNECTIONS sets
// Options.Connections (1: one connection per file, as before ranged downloads).
func newBenchFetcher(tb testing.TB) *model.Fetcher {
	conns, _ := strconv.Atoi(os.Getenv("BENCH_CONNECTIONS"))
	f, err := model.New(model.Options{PartialDir: filepath.Join(tb.TempDir(), "partial"), Connections: conns})
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

func fetchOnce(tb testing.TB, f *model.Fetcher, url, dst string, want model.Want) time.Duration {
	tb.Helper()
	os.Remove(dst)
	src, err := model.ParseSource(url, "")
	if err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	res, err := f.Fetch(context.Background(), src, want, dst, nil)
	if err != nil {
		tb.Fatal(err)
	}
	el := time.Since(start)
	if res.NarHash == "" {
		tb.Fatal("no NAR hash computed while downloading")
	}
	return el
}

// benchRuns is how many times each side runs in a comparison ($BENCH_RUNS, default 5).
func benchRuns() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_RUNS")); err == nil && n > 0 {
		return n
	}
	return 5
}

// side is one downloader in a comparison: run downloads url to dst and checks it.
type side struct {
	name  string
	run   func(dst string)
	times []time.Duration
}

// compare runs every side runs times, rotating the order each round so that no side always
// runs first, each after a sync and with its output removed afterwards, and reports the
// median time of each side (s_<name>), its range in the log, and the median ratio of each
// side's time to the first side's (x_<name>: how many times longer the peer takes).
// $BENCH_ONLY=<name> runs that side alone (e.g. "ours" under -cpuprofile).
func compare(b *testing.B, out string, sides []*side) {
	runs := benchRuns()
	if only := os.Getenv("BENCH_ONLY"); only != "" {
		sides = slices.DeleteFunc(slices.Clone(sides), func(s *side) bool { return s.name != only })
	}
	for round := range runs {
		for i := range sides {
			sd := sides[(round+i)%len(sides)]
			dst := filepath.Join(out, sd.name+".bin")
			os.Remove(dst)
			syscall.Sync() // start each run without others' dirty pages to write back
			start := time.Now()
			sd.run(dst)
			sd.times = append(sd.times, time.Since(start))
			os.Remove(dst) // dropped before it is written back
		}
	}
	med := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2]
	}
	if len(sides) == 0 {
		b.Fatal("$BENCH_ONLY names no side")
	}
	ours := med(sides[0].times)
	for _, sd := range sides {
		m := med(sd.times)
		b.ReportMetric(m.Seconds(), "s_"+sd.name)
		if sd != sides[0] {
			b.ReportMetric(m.Seconds()/ours.Seconds(), "x_"+sd.name)
		}
		b.Logf("%-16s median %6.2fs  range %6.2f-%6.2fs  runs %v", sd.name, m.Seconds(), slices.Min(sd.times).Seconds(), slices.Max(sd.times).Seconds(), roundAll(sd.times))
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Millisecond)
	}
	return out
}

// downloadSides are runpod-comfy (sha256 and NAR hash in the same pass, the file checked
// against its checksum and size), curl -o alone, curl -o then sha256sum (what a user runs to
// get a checked file), and aria2c -x8 -s8 with its sha-256 check, when installed.
func downloadSides(b *testing.B, url string, size int64, sum model.Checksum) []*side {
	f := newBenchFetcher(b)
	var cpu []time.Duration
	sides := []*side{{name: "ours", run: func(dst string) {
		c0 := processCPU(b)
		fetchOnce(b, f, url, dst, model.Want{Checksum: sum, Size: size})
		cpu = append(cpu, processCPU(b)-c0)
	}}}
	b.Cleanup(func() {
		if len(cpu) > 0 {
			b.Logf("ours CPU (user+system, server excluded): %v", roundAll(cpu))
		}
	})
	if _, err := exec.LookPath("curl"); err != nil {
		b.Skip("curl not found: it is the baseline")
	}
	sides = append(sides, &side{name: "curl", run: func(dst string) {
		if o, err := exec.Command("curl", "-sS", "-o", dst, url).CombinedOutput(); err != nil {
			b.Fatalf("curl: %v\n%s", err, o)
		}
	}}, &side{name: "curl+sha256sum", run: func(dst string) {
		if o, err := exec.Command("curl", "-sS", "-o", dst, url).CombinedOutput(); err != nil {
			b.Fatalf("curl: %v\n%s", err, o)
		}
		if o, err := exec.Command("sha256sum", dst).CombinedOutput(); err != nil || !strings.Contains(string(o), sum.Hex) {
			b.Fatalf("sha256sum: %v\n%s", err, o)
		}
	}})
	if _, err := exec.LookPath("aria2c"); err != nil {
		b.Log("aria2c not found (apt-get install -y aria2): comparing with curl only")
		return sides
	}
	return append(sides, &side{name: "aria2c", run: func(dst string) {
		cmd := exec.Command("aria2c", "-q", "-x8", "-s8", "--checksum=sha-256="+sum.Hex, "--allow-overwrite=true",
			"--auto-file-renaming=false", "-d", filepath.Dir(dst), "-o", filepath.Base(dst), url)
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("aria2c: %v\n%s", err, o)
		}
	}})
}

// BenchmarkModelDownload1GiB downloads a 1 GiB file from an unthrottled loopback server (a
// separate process, sendfile: the CPU is the limit), beside curl, curl + sha256sum and
// aria2c; see compare.
func BenchmarkModelDownload1GiB(b *testing.B) {
	const size = 1 << 30
	dir := b.TempDir()
	sum := makeModelFile(b, filepath.Join(dir, "model.safetensors"), size, 1)
	url := startServerProcess(b, dir, 0) + "/model.safetensors"
	sides := downloadSides(b, url, size, sum)
	out := b.TempDir()
	for b.Loop() {
		compare(b, out, sides)
	}
}

// BenchmarkModelDownloadCapped downloads from a loopback server (a separate process) that
// caps every response at 40 MB/s, as Hugging Face's and Civitai's CDNs cap one connection:
// a 300 MB model and a 1 GiB one, beside curl (one connection), curl + sha256sum and
// aria2c -x8 -s8.
func BenchmarkModelDownloadCapped(b *testing.B) {
	for _, c := range []struct {
		name string
		size int64
	}{{"300MB", 300_000_000}, {"1GiB", 1 << 30}} {
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			sum := makeModelFile(b, filepath.Join(dir, "model.safetensors"), c.size, 2)
			url := startServerProcess(b, dir, 40_000_000) + "/model.safetensors"
			sides := downloadSides(b, url, c.size, sum)
			out := b.TempDir()
			for b.Loop() {
				compare(b, out, sides)
			}
		})
	}
}

// BenchmarkModelDownloadFour downloads four 256 MiB models one after another and then all at
// once (as build --download-jobs 4 does), hashing included. "loopback" is the unthrottled
// loopback server (CPU-bound: hashing and copying on a shared machine); "64MiBps" caps every
// response at 64 MiB/s, as a CDN caps one connection, which is where parallel downloads pay.
func BenchmarkModelDownloadFour(b *testing.B) {
	const size = 256 << 20
	dir := b.TempDir()
	sums := make([]model.Checksum, 4)
	for i := range sums {
		sums[i] = makeModelFile(b, filepath.Join(dir, fmt.Sprintf("m%d.safetensors", i)), size, uint64(10+i))
	}
	for _, bc := range []struct {
		name  string
		limit int64
	}{{"loopback", 0}, {"64MiBps", 64 << 20}} {
		b.Run(bc.name, func(b *testing.B) {
			srv := fileServer(dir, bc.limit)
			defer srv.Close()
			out := b.TempDir()
			f := newBenchFetcher(b)
			fetch := func(i int) {
				fetchOnce(b, f, fmt.Sprintf("%s/m%d.safetensors", srv.URL, i), filepath.Join(out, fmt.Sprintf("m%d", i)), model.Want{Checksum: sums[i], Size: size})
			}
			for b.Loop() {
				start := time.Now()
				for i := range 4 {
					fetch(i)
				}
				seq := time.Since(start)
				start = time.Now()
				var wg sync.WaitGroup
				for i := range 4 {
					wg.Go(func() { fetch(i) })
				}
				wg.Wait()
				par := time.Since(start)
				b.ReportMetric(seq.Seconds(), "s_sequential")
				b.ReportMetric(par.Seconds(), "s_parallel")
				b.ReportMetric(seq.Seconds()/par.Seconds(), "x_parallel_vs_sequential")
			}
		})
	}
}
