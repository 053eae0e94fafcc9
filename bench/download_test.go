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

// fileServer serves the files of dir with Range support (sendfile), optionally throttled to
// limit bytes per second per response, as a CDN limits one connection.
func fileServer(dir string, limit int64) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(filepath.Join(dir, filepath.Base(r.URL.Path)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		if limit <= 0 {
			http.ServeContent(w, r, "", time.Time{}, f)
			return
		}
		fi, _ := f.Stat()
		w.Header().Set("Content-Length", fmt.Sprint(fi.Size()))
		start := time.Now()
		var sent int64
		buf := make([]byte, 256<<10)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				sent += int64(n)
				if ahead := time.Duration(float64(sent)/float64(limit)*float64(time.Second)) - time.Since(start); ahead > 0 {
					time.Sleep(ahead)
				}
			}
			if err != nil {
				return
			}
		}
	}))
}

// TestHelperModelServer is not a test: run by startServerProcess as a child process, it
// serves $MODEL_SERVER_DIR on a loopback port, prints the URL and serves until killed.
func TestHelperModelServer(t *testing.T) {
	dir := os.Getenv("MODEL_SERVER_DIR")
	if dir == "" {
		t.Skip("only run as the server process of the download benchmarks")
	}
	srv := fileServer(dir, 0)
	fmt.Println("URL " + srv.URL)
	select {}
}

// startServerProcess serves dir from a separate process, so that the server does not share
// the benchmark's Go runtime with the downloader being measured (curl runs as a process too).
func startServerProcess(tb testing.TB, dir string) string {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperModelServer$", "-test.bench=^$", "-test.v=false")
	cmd.Env = append(os.Environ(), "MODEL_SERVER_DIR="+dir)
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

func newBenchFetcher(tb testing.TB) *model.Fetcher {
	f, err := model.New(model.Options{PartialDir: filepath.Join(tb.TempDir(), "partial")})
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

// BenchmarkModelDownload1GiB downloads a 1 GiB file from a loopback server (a separate
// process, sendfile), verifying its
// sha256 and computing its NAR hash in the same pass, beside `curl -o` of the same file (no
// hashing) in the same run, and beside `curl -o` followed by `openssl dgst -sha256` of the file
// (the check a user would run, a second read). Each side runs twice (curl, ours, ours, curl), each after a sync
// and with its output removed afterwards; the best time of each counts.
func BenchmarkModelDownload1GiB(b *testing.B) {
	if _, err := exec.LookPath("curl"); err != nil {
		b.Skip("curl not found: it is the baseline")
	}
	const size = 1 << 30
	dir := b.TempDir()
	sum := makeModelFile(b, filepath.Join(dir, "model.safetensors"), size, 1)
	out := b.TempDir()
	url := startServerProcess(b, dir) + "/model.safetensors"
	f := newBenchFetcher(b)
	for b.Loop() {
		best := func(d, prev time.Duration) time.Duration {
			if prev == 0 || d < prev {
				return d
			}
			return prev
		}
		var ours, curl, check, oursCPU, curlCPU time.Duration
		runCurl := func() {
			dst := filepath.Join(out, "curl.bin")
			syscall.Sync() // start each run without others' dirty pages to write back
			start := time.Now()
			cmd := exec.Command("curl", "-sS", "-o", dst, url)
			if o, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("curl: %v\n%s", err, o)
			}
			curl = best(time.Since(start), curl)
			curlCPU = best(cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime(), curlCPU)
			// What a user does to check the file: a second read with openssl.
			start = time.Now()
			o, err := exec.Command("openssl", "dgst", "-sha256", dst).CombinedOutput()
			if err != nil || !strings.Contains(string(o), sum.Hex) {
				b.Fatalf("openssl dgst: %v\n%s", err, o)
			}
			check = best(time.Since(start), check)
			os.Remove(dst) // dropped before it is written back, like ours below
		}
		runOurs := func() {
			dst := filepath.Join(out, "ours.bin")
			syscall.Sync()
			cpu0 := processCPU(b)
			ours = best(fetchOnce(b, f, url, dst, model.Want{Checksum: sum, Size: size}), ours)
			oursCPU = best(processCPU(b)-cpu0, oursCPU)
			os.Remove(dst)
		}
		// Alternate the order so neither side always runs first.
		runCurl()
		runOurs()
		runOurs()
		runCurl()
		mb := float64(size) / (1 << 20)
		b.ReportMetric(mb/ours.Seconds(), "MiB/s")
		b.ReportMetric(mb/curl.Seconds(), "curl_MiB/s")
		b.ReportMetric(curl.Seconds()/ours.Seconds(), "x_vs_curl")
		b.ReportMetric((curl+check).Seconds()/ours.Seconds(), "x_vs_curl+openssl")
		// CPU seconds (user+system) of the downloader alone, the server excluded: on a shared
		// machine this is steadier than the throughput, and it is what the throughput costs.
		b.ReportMetric(oursCPU.Seconds(), "cpu_s")
		b.ReportMetric(curlCPU.Seconds(), "curl_cpu_s")
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
