package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/runpod-comfy/runpod-comfy/runner/worker"
	"github.com/runpod-comfy/runpod-comfy/runner/worker/queuetest"
)

// funcHandler is a Handler made of functions: the protocol tests drive the loop with it; the
// ComfyUI handler is tested against the stand-in in runner/comfyjob.
type funcHandler struct {
	ready  func(ctx context.Context) error
	handle func(ctx context.Context, job *worker.Job, progress worker.ProgressFunc) (worker.Result, error)
}

func (f funcHandler) Ready(ctx context.Context) error {
	if f.ready == nil {
		return nil
	}
	return f.ready(ctx)
}

func (f funcHandler) Handle(ctx context.Context, job *worker.Job, progress worker.ProgressFunc) (worker.Result, error) {
	return f.handle(ctx, job, progress)
}

func TestWorkerQueue(t *testing.T) {
	q := queuetest.New(t)
	var handled []string
	release := make(chan struct{})
	h := funcHandler{handle: func(ctx context.Context, job *worker.Job, progress worker.ProgressFunc) (worker.Result, error) {
		var in map[string]any
		if err := json.Unmarshal(job.Input, &in); err != nil {
			return worker.Result{}, err
		}
		handled = append(handled, job.ID)
		switch in["do"] {
		case "progress":
			for i := 1; i <= 3; i++ {
				progress(map[string]any{"step": i})
				time.Sleep(30 * time.Millisecond)
			}
			<-release
			return worker.Result{Output: map[string]any{"text": "naïve ✓", "n": in["n"]}}, nil
		case "fail":
			return worker.Result{Error: "workflow failed", Output: map[string]any{"details": []any{"node 3: bad"}}}, nil
		case "error":
			return worker.Result{}, fmt.Errorf("opening thing: %w", io.ErrUnexpectedEOF)
		case "panic":
			panic("kaboom")
		}
		return worker.Result{Output: in}, nil
	}}
	// Answers that are no job, then real jobs.
	q.Answer(queuetest.Take{Status: 204})
	q.Answer(queuetest.Take{Status: 400, Body: "flashboot"})
	q.Answer(queuetest.Take{Status: 429})
	q.Answer(queuetest.Take{Status: 503, Body: "busy"})
	q.Answer(queuetest.Take{Status: 200, ContentType: "application/json", Body: ""})
	q.Answer(queuetest.Take{Status: 200, ContentType: "text/plain", Body: `{"id":"x","input":{}}`})
	q.Answer(queuetest.Take{Status: 200, ContentType: "application/json", Body: `{"id":"no-input"}`})
	q.Answer(queuetest.Take{Status: 200, ContentType: "application/json; charset=utf-8", Body: `{"id":"j1","input":{"do":"progress","n":1},"webhook":"https://hook","batchId":"b1","extra":true}`})
	cancel, wait := queuetest.StartWorker(t, q.Config(), h)

	// Progress while j1 runs; the heartbeat lists j1.
	p := <-q.Progress
	if got := p.Decode(t); got["status"] != "IN_PROGRESS" || got["output"].(map[string]any)["step"] == nil {
		t.Errorf("progress body %s", p.Body)
	}
	waitPing(t, q, "job_id=j1&")
	close(release)
	f := q.Final(t, 10*time.Second)
	if f.JobID() != "j1" || string(f.Body) != `{"output":{"n":1,"text":"naïve ✓"}}` {
		t.Errorf("j1 final %s %s", f.Path, f.Body)
	}

	// A failure with details, an error, a panic, and a 502 that is retried.
	q.FailDone(502)
	q.Job("j2", map[string]any{"do": "fail"})
	f = q.Final(t, 10*time.Second)
	if f.JobID() != "j2" || string(f.Body) != `{"error":"workflow failed","output":{"details":["node 3: bad"]}}` {
		t.Errorf("j2 final %s", f.Body)
	}
	q.Job("j3", map[string]any{"do": "error"})
	f = q.Final(t, 10*time.Second)
	var exc map[string]string
	if err := json.Unmarshal([]byte(f.Decode(t)["error"].(string)), &exc); err != nil || exc["error_message"] != "opening thing: unexpected EOF" || exc["worker_id"] != queuetest.WorkerID || exc["hostname"] != "host-1" {
		t.Errorf("j3 final %s (%v)", f.Body, err)
	}
	q.Answer(queuetest.Take{Status: 200, ContentType: "application/json", Body: `not json`})
	q.Job("j4", `{"do":"panic"}`) // input as a JSON string: this handler does not unwrap it
	f = q.Final(t, 10*time.Second)
	exc = nil
	json.Unmarshal([]byte(f.Decode(t)["error"].(string)), &exc)
	if f.JobID() != "j4" || !strings.Contains(exc["error_message"], "cannot unmarshal string") {
		t.Errorf("j4 final %s", f.Body)
	}
	q.Job("j5", map[string]any{"do": "panic"})
	f = q.Final(t, 10*time.Second)
	exc = nil
	json.Unmarshal([]byte(f.Decode(t)["error"].(string)), &exc)
	if f.JobID() != "j5" || exc["error_type"] != "panic" || exc["error_message"] != "panic: kaboom" || !strings.Contains(exc["error_traceback"], "goroutine") {
		t.Errorf("j5 final %s", f.Body)
	}

	// A batch (array) of two jobs runs in order.
	q.Answer(queuetest.Take{Status: 200, ContentType: "application/json", Body: `[{"id":"b1","input":{"k":"v"}},{"id":"b2","input":[1,2]}]`})
	f1, f2 := q.Final(t, 10*time.Second), q.Final(t, 10*time.Second)
	if f1.JobID() != "b1" || string(f1.Body) != `{"output":{"k":"v"}}` || f2.JobID() != "b2" || !strings.Contains(string(f2.Body), "cannot unmarshal array") {
		t.Errorf("batch finals %s %s / %s %s", f1.Path, f1.Body, f2.Path, f2.Body)
	}

	cancel()
	if err := wait(); err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	if d := cmp.Diff([]string{"j1", "j2", "j3", "j5", "b1"}, handled); d != "" {
		t.Errorf("handled jobs (-want +got):\n%s", d)
	}
	q.CheckRequests(t)

	// The 502 was retried once; no job id other than these was posted; pings came while idle too.
	var doneFor = map[string]int{}
	var idlePing, takeAfter429 bool
	reqs := q.Requests()
	for i, r := range reqs {
		if strings.Contains(r.Path, "/job-done/") && !bytes.Contains(r.Body, []byte("IN_PROGRESS")) {
			doneFor[r.JobID()]++
		}
		if strings.Contains(r.Path, "/ping/") && !strings.Contains(r.RawQuery, "job_id=") {
			idlePing = true
		}
		if r.Status == 429 && i+1 < len(reqs) {
			takeAfter429 = true
		}
	}
	if d := cmp.Diff(map[string]int{"j1": 1, "j2": 2, "j3": 1, "j4": 1, "j5": 1, "b1": 1, "b2": 1}, doneFor); d != "" {
		t.Errorf("job-done posts per job (-want +got):\n%s", d)
	}
	if !idlePing || !takeAfter429 {
		t.Errorf("idle ping %v, take after 429 %v", idlePing, takeAfter429)
	}
}

func waitPing(t *testing.T, q *queuetest.Queue, substr string) queuetest.Request {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case p := <-q.Pings:
			if strings.Contains(p.RawQuery, substr) {
				return p
			}
		case <-deadline:
			t.Fatalf("no ping with %q; requests: %s", substr, q.Summary())
		}
	}
}

// TestWorkerStop checks that a job listed by job-stop is cancelled with ErrJobStopped, that
// nothing is posted for it and that the next job runs.
func TestWorkerStop(t *testing.T) {
	q := queuetest.New(t)
	started := make(chan struct{}, 1)
	var cause atomic.Value
	h := funcHandler{handle: func(ctx context.Context, job *worker.Job, progress worker.ProgressFunc) (worker.Result, error) {
		if job.ID == "long" {
			started <- struct{}{}
			<-ctx.Done()
			cause.Store(context.Cause(ctx))
			return worker.Result{Error: "interrupted"}, nil
		}
		return worker.Result{Output: "ok"}, nil
	}}
	q.Job("long", map[string]any{})
	queuetest.StartWorker(t, q.Config(), h)
	<-started
	q.Stop("someone-else", "long")
	q.Job("next", map[string]any{})
	f := q.Final(t, 10*time.Second)
	if f.JobID() != "next" {
		t.Errorf("first final is for %s: %s", f.JobID(), f.Body)
	}
	if c, _ := cause.Load().(error); !errors.Is(c, worker.ErrJobStopped) {
		t.Errorf("cause %v", c)
	}
	for _, r := range q.Requests() {
		if strings.HasSuffix(r.Path, "/long") {
			t.Errorf("posted for the stopped job: %s %s", r.Path, r.Body)
		}
	}
	q.CheckRequests(t)
}

// TestWorkerShutdown checks that SIGTERM (ctx cancel) lets the job in hand finish and post,
// and that a job outliving the grace is failed with a posted error.
func TestWorkerShutdown(t *testing.T) {
	for _, c := range []struct {
		name  string
		grace time.Duration
		want  string
	}{
		{"finishes", 5 * time.Second, `{"output":"finished"}`},
		{"grace exceeded", 50 * time.Millisecond, `{"error":"interrupted: worker shutting down"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := queuetest.New(t)
			started := make(chan struct{})
			h := funcHandler{handle: func(ctx context.Context, job *worker.Job, progress worker.ProgressFunc) (worker.Result, error) {
				close(started)
				select {
				case <-ctx.Done():
					return worker.Result{Error: "interrupted: " + context.Cause(ctx).Error()}, nil
				case <-time.After(300 * time.Millisecond):
					return worker.Result{Output: "finished"}, nil
				}
			}}
			q.Job("j", map[string]any{})
			cfg := q.Config()
			cfg.ShutdownGrace = c.grace
			cancel, wait := queuetest.StartWorker(t, cfg, h)
			<-started
			cancel()
			if err := wait(); err != nil {
				t.Fatal(err)
			}
			f := q.Final(t, time.Second)
			if string(f.Body) != c.want {
				t.Errorf("final %s, want %s", f.Body, c.want)
			}
			takes := 0
			for _, r := range q.Requests() {
				if strings.Contains(r.Path, "/job-take/") {
					takes++
				}
			}
			if takes != 1 {
				t.Errorf("%d job-takes recorded, want 1 (no take after shutdown)", takes)
			}
		})
	}
}

// TestWorkerUnhealthy checks that a handler that cannot get ready is reported once as
// unhealthy and that Run fails.
func TestWorkerUnhealthy(t *testing.T) {
	q := queuetest.New(t)
	h := funcHandler{ready: func(ctx context.Context) error { return errors.New("version v9 is not built") }}
	cfg := q.Config()
	cfg.Logger = queuetest.Logger(t)
	w, err := worker.New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	err = w.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "v9 is not built") {
		t.Fatalf("Run: %v", err)
	}
	found := false
	for _, r := range q.Requests() {
		if strings.Contains(r.Path, "/job-take/") {
			t.Errorf("took a job while not ready")
		}
		if strings.Contains(r.RawQuery, "status=unhealthy") {
			found = r.RawQuery == "gpu=NVIDIA+H200&status=unhealthy&check=handler_ready&reason=version+v9+is+not+built&runpod_version="+worker.SDKVersion
		}
	}
	if !found {
		t.Errorf("no unhealthy report: %s", q.Summary())
	}
}

func TestNewRequiresSettings(t *testing.T) {
	h := funcHandler{}
	for _, c := range []struct {
		cfg  worker.Config
		want string
	}{
		{worker.Config{PostOutputURL: "x", WorkerID: "w"}, "RUNPOD_WEBHOOK_GET_JOB"},
		{worker.Config{GetJobURL: "x", WorkerID: "w"}, "RUNPOD_WEBHOOK_POST_OUTPUT"},
		{worker.Config{GetJobURL: "x", PostOutputURL: "x"}, "RUNPOD_POD_ID"},
	} {
		if _, err := worker.New(c.cfg, h); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
}

func TestRunTestInput(t *testing.T) {
	h := funcHandler{handle: func(ctx context.Context, job *worker.Job, progress worker.ProgressFunc) (worker.Result, error) {
		if job.ID != worker.LocalJobID && job.ID != "given" {
			return worker.Result{Error: "bad id " + job.ID}, nil
		}
		var in map[string]any
		json.Unmarshal(job.Input, &in)
		if in["fail"] == true {
			return worker.Result{Error: "failed as asked"}, nil
		}
		return worker.Result{Output: in}, nil
	}}
	body, failed, err := worker.RunTestInput(context.Background(), h, []byte(`{"input":{"a":1}}`), queuetest.Logger(t))
	if err != nil || failed || string(body) != `{"output":{"a":1}}` {
		t.Errorf("ok: %s %v %v", body, failed, err)
	}
	body, failed, err = worker.RunTestInput(context.Background(), h, []byte(`{"id":"given","input":{"fail":true}}`), queuetest.Logger(t))
	if err != nil || !failed || string(body) != `{"error":"failed as asked"}` {
		t.Errorf("fail: %s %v %v", body, failed, err)
	}
	if _, _, err := worker.RunTestInput(context.Background(), h, []byte(`{"inptu":{}}`), nil); err == nil || !strings.Contains(err.Error(), `no "input"`) {
		t.Errorf("missing input: %v", err)
	}
}

func TestLocalAPI(t *testing.T) {
	gate := make(chan struct{})
	h := funcHandler{handle: func(ctx context.Context, job *worker.Job, progress worker.ProgressFunc) (worker.Result, error) {
		var in map[string]any
		json.Unmarshal(job.Input, &in)
		if in["wait"] == true {
			progress(map[string]any{"step": 1})
			select {
			case <-gate:
			case <-ctx.Done():
				return worker.Result{Error: "interrupted"}, nil
			}
		}
		if in["fail"] == true {
			return worker.Result{Error: "failed", Output: map[string]any{"details": "d"}}, nil
		}
		return worker.Result{Output: in}, nil
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	api := worker.NewLocalAPI(h, queuetest.Logger(t))
	errc := make(chan error, 1)
	go func() { errc <- api.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	base := "http://" + ln.Addr().String()
	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	if code, m := call("POST", "/runsync", `{"input":{"x":"y"}}`); code != 200 || m["status"] != "COMPLETED" || m["output"].(map[string]any)["x"] != "y" || !strings.HasPrefix(m["id"].(string), "test-") {
		t.Errorf("runsync: %d %v", code, m)
	}
	if code, m := call("POST", "/v2/local/runsync", `{"input":{"fail":true}}`); code != 200 || m["status"] != "FAILED" || m["error"] != "failed" {
		t.Errorf("runsync fail: %d %v", code, m)
	}
	_, m := call("POST", "/run", `{"input":{"wait":true}}`)
	id := m["id"].(string)
	if m["status"] != "IN_QUEUE" {
		t.Errorf("run: %v", m)
	}
	_, m2 := call("POST", "/run", `{"input":{"k":2}}`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, s := call("GET", "/status/"+id, "")
		if s["status"] == "IN_PROGRESS" && s["output"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never IN_PROGRESS with progress: %v", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, hl := call("GET", "/health", ""); hl["workers"].(map[string]any)["running"] != 1.0 || hl["jobs"].(map[string]any)["inQueue"] != 1.0 {
		t.Errorf("health: %v", hl)
	}
	if _, c := call("POST", "/cancel/"+id, ""); c["status"] != "CANCELLED" {
		t.Errorf("cancel: %v", c)
	}
	for {
		_, s := call("POST", "/status/"+m2["id"].(string), "")
		if s["status"] == "COMPLETED" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second job: %v", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, s := call("GET", "/status/nope", ""); code != 404 || s["error"] != "Job ID not found" {
		t.Errorf("unknown id: %d %v", code, s)
	}
	if code, _ := call("POST", "/runsync", `{"nope":1}`); code != 400 {
		t.Errorf("no input: %d", code)
	}
	close(gate)
}
