package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/runner"
	"github.com/runpod-comfy/runpod-comfy/runner/standin"
)

// startBenchStandin starts the ComfyUI stand-in from a hand-made runtime root.
func startBenchStandin(b *testing.B) *runner.Process {
	b.Helper()
	dir := b.TempDir()
	root := filepath.Join(dir, "root")
	if err := standin.WriteRoot(root, standin.RootOptions{}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := runner.Start(ctx, runner.StartOptions{RuntimeRoot: root, StateDir: filepath.Join(dir, "state"), ReadyTimeout: time.Minute})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, c := context.WithTimeout(context.Background(), 30*time.Second)
		defer c()
		p.Stop(sctx)
		cancel()
	})
	return p
}

// executionTime is the stand-in's own execution time of a job, from its history entry
// (execution_start to execution_success timestamps, in ms).
func executionTime(b *testing.B, c *runner.Client, promptID string) time.Duration {
	e, err := c.History(context.Background(), promptID)
	if err != nil || e == nil {
		b.Fatalf("history of %s: %v", promptID, err)
	}
	var start, end int64
	for _, m := range e.Status.Messages {
		var kind string
		var data struct {
			Timestamp int64 `json:"timestamp"`
		}
		json.Unmarshal(m[0], &kind)
		json.Unmarshal(m[1], &data)
		switch kind {
		case "execution_start":
			start = data.Timestamp
		case "execution_success":
			end = data.Timestamp
		}
	}
	return time.Duration(end-start) * time.Millisecond
}

const benchJobs = 30

// tinyJob makes one 8x8 image: the stand-in's execution is about a millisecond, so a job's
// time is almost all overhead (ours and the HTTP handling of the Python stand-in).
const tinyJob = `{"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 255}},
 "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "%s"}}}`

// BenchmarkRunnerJobOverhead: per job, the runner's time (WebSocket, POST /prompt, events,
// history, /view, sha256, base64) minus the stand-in's own execution, beside a curl script
// doing the least a CI script does (POST, poll /history every 10 ms, GET /view | base64).
func BenchmarkRunnerJobOverhead(b *testing.B) {
	p := startBenchStandin(b)
	c := p.Client()
	ctx := context.Background()
	// warm up both paths once
	if _, err := c.Run(ctx, []byte(fmt.Sprintf(tinyJob, "warm")), runner.RunOptions{}); err != nil {
		b.Fatal(err)
	}
	script := filepath.Join(b.TempDir(), "job.sh")
	os.WriteFile(script, []byte(`set -e
resp=$(curl -s -X POST -H 'Content-Type: application/json' --data @"$2" "$1/prompt")
id=$(echo "$resp" | sed -n 's/.*"prompt_id": *"\([^"]*\)".*/\1/p')
while :; do h=$(curl -s "$1/history/$id"); [ "$h" != "{}" ] && break; sleep 0.01; done
fn=$(echo "$h" | sed -n 's/.*"filename": *"\([^"]*\)".*/\1/p')
curl -s "$1/view?filename=$fn&type=output" | base64 -w0 > /dev/null
`), 0o644)
	for i := 0; i < b.N; i++ {
		var ours, exec1 time.Duration
		for j := 0; j < benchJobs; j++ {
			t0 := time.Now()
			res, err := c.Run(ctx, []byte(fmt.Sprintf(tinyJob, "bench")), runner.RunOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if err := runner.Deliver(ctx, res.Outputs, runner.Base64Sink{}); err != nil {
				b.Fatal(err)
			}
			ours += time.Since(t0)
			exec1 += executionTime(b, c, res.PromptID)
			p.RemoveOutputs(res)
		}
		var curl time.Duration
		wf := filepath.Join(b.TempDir(), "wf.json")
		for j := 0; j < benchJobs; j++ {
			// a unique prefix per job, as the runner does, so the stand-in's cache is not hit
			os.WriteFile(wf, []byte(`{"prompt": `+fmt.Sprintf(tinyJob, fmt.Sprintf("curl%d_%d", i, j))+`}`), 0o644)
			t0 := time.Now()
			if out, err := exec.Command("sh", script, p.URL(), wf).CombinedOutput(); err != nil {
				b.Fatalf("curl script: %v\n%s", err, out)
			}
			curl += time.Since(t0)
		}
		perJob := ours / benchJobs
		overhead := (ours - exec1) / benchJobs
		b.ReportMetric(float64(perJob.Microseconds())/1000, "ms/job")
		b.ReportMetric(float64(overhead.Microseconds())/1000, "overhead_ms/job")
		b.ReportMetric(float64(curl.Microseconds())/1000/benchJobs, "curl_ms/job")
		b.ReportMetric(float64(ours)/float64(curl), "x_vs_curl")
	}
}

// BenchmarkRunnerCollect20MB: one ~20 MB PNG output (2600x2600 random pixels) collected
// through /view with sha256 and delivered as base64, beside curl | openssl dgst -sha256 and
// base64 on the same file. The job is resubmitted identically (KeepPrefix), so the stand-in
// serves it from its cache and the time is the collection.
func BenchmarkRunnerCollect20MB(b *testing.B) {
	p := startBenchStandin(b)
	c := p.Client()
	ctx := context.Background()
	wf, err := os.ReadFile(filepath.Join("..", "workflows", "standin-noise-20mb.json"))
	if err != nil {
		b.Fatal(err)
	}
	first, err := c.Run(ctx, wf, runner.RunOptions{KeepPrefix: true})
	if err != nil {
		b.Fatal(err)
	}
	size := first.Outputs[0].Size
	view := fmt.Sprintf("%s/view?filename=%s&type=output", p.URL(), first.Outputs[0].Filename)
	tmp := b.TempDir()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		const rounds = 5
		var ours, base time.Duration
		for j := 0; j < rounds; j++ {
			t0 := time.Now()
			res, err := c.Run(ctx, wf, runner.RunOptions{KeepPrefix: true})
			if err != nil {
				b.Fatal(err)
			}
			if err := runner.Deliver(ctx, res.Outputs, runner.Base64Sink{}); err != nil {
				b.Fatal(err)
			}
			if len(res.Cached) != 2 || int64(len(res.Outputs[0].Data)) < size*4/3 {
				b.Fatalf("not the cached 20 MB output: cached %v", res.Cached)
			}
			ours += time.Since(t0)
			t0 = time.Now()
			cmd := exec.Command("sh", "-c", `curl -s "$1" -o "$2/f" && openssl dgst -sha256 "$2/f" > /dev/null && base64 -w0 "$2/f" > /dev/null`, "sh", view, tmp)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("baseline: %v\n%s", err, out)
			}
			base += time.Since(t0)
		}
		b.ReportMetric(float64(size)/1e6, "MB")
		b.ReportMetric(float64(ours.Microseconds())/1000/rounds, "ms/collect")
		b.ReportMetric(float64(base.Microseconds())/1000/rounds, "curl_openssl_base64_ms")
		b.ReportMetric(float64(ours)/float64(base), "x_vs_curl")
	}
}
