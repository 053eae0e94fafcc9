package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/runner"
	"github.com/runpod-comfy/runpod-comfy/runner/comfyjob"
	"github.com/runpod-comfy/runpod-comfy/runner/standin"
	"github.com/runpod-comfy/runpod-comfy/runner/worker"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// workerVersion registers a runtime root for version id with the ComfyUI stand-in in a new
// store, laid out as the builder lays roots out, and returns the store.
func workerVersion(b testing.TB, id string) *store.Store {
	b.Helper()
	ctx := context.Background()
	st, err := store.Open(filepath.Join(b.TempDir(), "root"))
	if err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256([]byte("bench-standin"))
	comfy, _ := store.PathFor(store.DrvFingerprint(hex.EncodeToString(sum[:]), "comfyui"), "comfyui")
	if _, err := st.Add(ctx, comfy, store.AddOptions{Kind: "git"}, func(ctx context.Context, out string) error {
		return standin.WriteTree(out)
	}); err != nil {
		b.Fatal(err)
	}
	sum = sha256.Sum256([]byte("bench-root-" + id))
	rp, _ := store.PathFor(store.DrvFingerprint(hex.EncodeToString(sum[:]), "comfy-"+id), "comfy-"+id)
	m := specs.Manifest{ManifestVersion: specs.ManifestVersion, VersionID: id,
		Comfy: specs.ManifestComfy{Commit: strings.Repeat("0", 40), StorePath: comfy.String(), Flags: standin.Flags()}}
	if _, err := st.Add(ctx, rp, store.AddOptions{Kind: "root", References: []store.Path{comfy}}, func(ctx context.Context, out string) error {
		if err := os.MkdirAll(filepath.Join(out, "bin"), 0o755); err != nil {
			return err
		}
		if err := os.Symlink("../"+comfy.String(), filepath.Join(out, "comfyui")); err != nil {
			return err
		}
		if err := standin.WriteRootFiles(out, id, nil, false); err != nil {
			return err
		}
		mj, _ := json.Marshal(m)
		return os.WriteFile(filepath.Join(out, "manifest.json"), mj, 0o644)
	}); err != nil {
		b.Fatal(err)
	}
	if _, err := st.SetRoot(id, rp); err != nil {
		b.Fatal(err)
	}
	return st
}

// workerQueue is a minimal RunPod queue on httptest: job-take answers from a channel, the
// time of the first take, final job-done bodies to a channel.
type workerQueue struct {
	srv       *httptest.Server
	jobs      chan string
	finals    chan []byte
	firstTake chan time.Time
}

func newWorkerQueue(b *testing.B) *workerQueue {
	q := &workerQueue{jobs: make(chan string, 100), finals: make(chan []byte, 100), firstTake: make(chan time.Time, 1)}
	q.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch {
		case strings.Contains(r.URL.Path, "/job-take/"):
			select {
			case q.firstTake <- time.Now():
			default:
			}
			select {
			case j := <-q.jobs:
				rw.Header().Set("Content-Type", "application/json")
				io.WriteString(rw, j)
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
				rw.WriteHeader(http.StatusNoContent)
			}
		case strings.Contains(r.URL.Path, "/job-done/"):
			if !strings.Contains(string(body), `"status":"IN_PROGRESS"`) {
				q.finals <- body
			}
		case strings.Contains(r.URL.Path, "/job-stop/"):
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
				rw.WriteHeader(http.StatusNoContent)
			}
		}
	}))
	b.Cleanup(q.srv.Close)
	return q
}

func (q *workerQueue) config() worker.Config {
	base := q.srv.URL + "/v2/bench"
	return worker.Config{
		GetJobURL:     base + "/job-take/$ID?gpu=X",
		PostOutputURL: base + "/job-done/$RUNPOD_POD_ID/$ID?gpu=X",
		PingURL:       base + "/ping/$RUNPOD_POD_ID?gpu=X",
		APIKey:        "k",
		WorkerID:      "bench",
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func workerHandler(b *testing.B, st *store.Store) *comfyjob.Handler {
	h, err := comfyjob.New(comfyjob.Options{
		Root: st.Root(), Store: st, DefaultVersion: "v1", StateBase: b.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// BenchmarkWorkerStartToReady measures a worker's start until its first job-take, with a
// version built on the volume (store lookup, temporary root, ComfyUI start, readiness), beside
// starting the ComfyUI stand-in directly with python3 and polling it until it answers. The
// difference is the share of runpod-comfy (target: under one second); runpod_comfy_cpu_ms is
// the CPU time of this process (the worker, not ComfyUI) during the start, which machine load
// does not inflate.
func BenchmarkWorkerStartToReady(b *testing.B) {
	st := workerVersion(b, "v1")
	const reps = 3 // the best of three of each, against the noise of a shared machine
	var worker1, direct, cpu time.Duration
	for i := 0; i < b.N; i++ {
		bestW, bestD, bestC := time.Duration(1<<62), time.Duration(1<<62), time.Duration(1<<62)
		for r := 0; r < reps; r++ {
			c0 := cpuTime()
			bestW = min(bestW, workerStart(b, st))
			bestC = min(bestC, cpuTime()-c0)
			bestD = min(bestD, directStandinStart(b, st))
		}
		worker1 += bestW
		direct += bestD
		cpu += bestC
	}
	n := float64(b.N)
	b.ReportMetric(float64(worker1.Milliseconds())/n, "worker_ready_ms")
	b.ReportMetric(float64(direct.Milliseconds())/n, "python_direct_ms")
	b.ReportMetric(float64((worker1-direct).Milliseconds())/n, "runpod_comfy_share_ms")
	b.ReportMetric(float64(cpu.Microseconds())/1000/n, "runpod_comfy_cpu_ms")
	b.ReportMetric(float64(worker1)/float64(direct), "x_vs_python_direct")
}

// workerStart starts a worker on a new queue and returns the time until its first job-take.
func workerStart(b *testing.B, st *store.Store) time.Duration {
	q := newWorkerQueue(b)
	h := workerHandler(b, st)
	defer h.Close(context.Background())
	w, err := worker.New(q.config(), h)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case t := <-q.firstTake:
		return t.Sub(start)
	case err := <-done:
		b.Fatalf("worker ended: %v", err)
	}
	return 0
}

// directStandinStart starts the stand-in of the root with python3 and the flags the runner
// passes (no launcher, no runner) and polls GET /prompt every 10 ms until it answers; it
// returns the time taken.
func directStandinStart(b *testing.B, st *store.Store) time.Duration {
	rp, err := st.RootOf("v1")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	for _, d := range []string{"in", "out", "tmp", "user"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	start := time.Now()
	cmd := exec.Command("python3", filepath.Join(st.Abs(rp), "comfyui", "main.py"), "--listen", "127.0.0.1", "--port", strconv.Itoa(port),
		"--input-directory", filepath.Join(dir, "in"), "--output-directory", filepath.Join(dir, "out"),
		"--temp-directory", filepath.Join(dir, "tmp"), "--user-directory", filepath.Join(dir, "user"),
		"--database-url", "sqlite:///"+filepath.Join(dir, "user", "comfyui.db"), "--disable-auto-launch")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	u := fmt.Sprintf("http://127.0.0.1:%d/prompt", port)
	for time.Since(start) < time.Minute {
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(start)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatal("the stand-in did not answer within a minute")
	return 0
}

// benchWorkflow is a small job: an 8x8 image saved as PNG.
const benchWorkflow = `{"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 255}},
 "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}}}`

// BenchmarkWorkerJobOverhead measures jobs through the whole worker loop (job-take, input
// parsing, ComfyUI run, outputs as base64, job-done post, clean-up) against a warm stand-in,
// beside the same workflow submitted directly with the runner's client to a stand-in started
// from the same root. The difference per job is the worker loop's overhead.
func BenchmarkWorkerJobOverhead(b *testing.B) {
	const jobs = 20
	st := workerVersion(b, "v1")
	var viaWorker, direct time.Duration
	for i := 0; i < b.N; i++ {
		q := newWorkerQueue(b)
		h := workerHandler(b, st)
		w, err := worker.New(q.config(), h)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		runJob := func(n int) {
			q.jobs <- fmt.Sprintf(`{"id": "job-%d", "input": {"workflow": %s}}`, n, benchWorkflow)
			select {
			case body := <-q.finals:
				if strings.Contains(string(body), `"error"`) {
					b.Fatalf("job failed: %.500s", body)
				}
			case <-time.After(time.Minute):
				b.Fatal("no result within a minute")
			}
		}
		direct += directJobs(b, st, jobs/2)
		runJob(-1) // warm up
		start := time.Now()
		for n := 0; n < jobs; n++ {
			runJob(n)
		}
		viaWorker += time.Since(start)
		cancel()
		<-done
		h.Close(context.Background())

		// The direct runs go before and after the worker's, against the machine's drift.
		direct += directJobs(b, st, jobs/2)
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N*jobs) }
	b.ReportMetric(per(viaWorker), "worker_ms/job")
	b.ReportMetric(per(direct), "client_direct_ms/job")
	b.ReportMetric(per(viaWorker-direct), "overhead_ms/job")
	b.ReportMetric(float64(viaWorker)/float64(direct), "x_vs_client_direct")
}

// directJobs starts a stand-in from the root with the runner, runs the workflow once to warm
// it, then n times with the runner's client, and returns the time of the n runs.
func directJobs(b *testing.B, st *store.Store, n int) time.Duration {
	rp, _ := st.RootOf("v1")
	proc, err := runner.Start(context.Background(), runner.StartOptions{RuntimeRoot: st.Abs(rp), StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer proc.Stop(context.Background())
	c := proc.Client()
	if _, err := c.Run(context.Background(), json.RawMessage(benchWorkflow), runner.RunOptions{}); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := proc.Client().Run(context.Background(), json.RawMessage(benchWorkflow), runner.RunOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}
