package worker

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// funcHandler is a Handler made of functions: the protocol tests drive the loop with it; the
// ComfyUI handler is tested against the stand-in in comfy_test.go.
type funcHandler struct {
	ready  func(ctx context.Context) error
	handle func(ctx context.Context, job *Job, progress ProgressFunc) (Result, error)
}

func (f funcHandler) Ready(ctx context.Context) error {
	if f.ready == nil {
		return nil
	}
	return f.ready(ctx)
}

func (f funcHandler) Handle(ctx context.Context, job *Job, progress ProgressFunc) (Result, error) {
	return f.handle(ctx, job, progress)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// startWorker runs a worker on q with h until the test ends; it returns the cancel func and a
// wait func returning Run's error.
func startWorker(t *testing.T, q *fakeQueue, cfg Config, h Handler) (context.CancelFunc, func() error) {
	t.Helper()
	cfg.Logger = testLogger(t)
	w, err := New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = w.Run(ctx)
	}()
	wait := func() error {
		select {
		case <-done:
			return runErr
		case <-time.After(20 * time.Second):
			return errors.New("worker did not stop")
		}
	}
	t.Cleanup(func() {
		cancel()
		if err := wait(); err != nil {
			t.Error(err)
		}
	})
	return cancel, wait
}

func decodeBody(t *testing.T, r recorded) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body %q: %v", r.Body, err)
	}
	return m
}

func jobIDOf(r recorded) string {
	return r.Path[strings.LastIndexByte(r.Path, '/')+1:]
}

func TestTemplates(t *testing.T) {
	if got := expandTemplate("https://x/v2/e/job-done/$RUNPOD_POD_ID/$ID?gpu=A", "w1", "j1"); got != "https://x/v2/e/job-done/w1/j1?gpu=A" {
		t.Errorf("done: %s", got)
	}
	if got := expandTemplate("https://x/v2/e/job-take/$RUNPOD_POD_ID", "w1", "w1"); got != "https://x/v2/e/job-take/w1" {
		t.Errorf("old take template: %s", got)
	}
	for _, c := range []struct{ in, q, want string }{
		{"http://a/b?gpu=X", "k=1", "http://a/b?gpu=X&k=1"},
		{"http://a/b", "k=1", "http://a/b?k=1"},
		{"http://a/b?", "k=1", "http://a/b?k=1"},
		{"http://a/b?x=1&", "k=1", "http://a/b?x=1&k=1"},
		{"http://a/b?x=1", "", "http://a/b?x=1"},
	} {
		if got := appendQuery(c.in, c.q); got != c.want {
			t.Errorf("appendQuery(%q, %q) = %q, want %q", c.in, c.q, got, c.want)
		}
	}
	if got := stopTemplate("http://a/v2/e/job-take/$ID?gpu=X"); got != "http://a/v2/e/job-stop/$ID?gpu=X" {
		t.Errorf("stop: %s", got)
	}
	if got := stopTemplate("http://a/v2/e/take/$ID"); got != "" {
		t.Errorf("stop without /job-take/: %q", got)
	}
	if got := pingQuery([]string{"a", "b c"}); got != "job_id=a%2Cb+c&runpod_version="+SDKVersion {
		t.Errorf("pingQuery: %s", got)
	}
	if got := pingQuery(nil); got != "runpod_version="+SDKVersion {
		t.Errorf("pingQuery idle: %s", got)
	}
}

func TestFinalBody(t *testing.T) {
	for _, c := range []struct {
		name string
		res  Result
		want string
	}{
		{"object", Result{Output: map[string]any{"a": 1, "t": "é<>"}}, `{"output":{"a":1,"t":"é<>"}}`},
		{"nil", Result{}, `{"output":{}}`},
		{"scalar", Result{Output: "x"}, `{"output":"x"}`},
		{"error", Result{Error: "boom", Output: map[string]any{"details": []string{"d"}}}, `{"error":"boom","output":{"details":["d"]}}`},
		{"error without details", Result{Error: "boom", Output: map[string]any{}}, `{"error":"boom"}`},
		{"stop pod", Result{Output: 1, StopPod: true}, `{"output":1,"stopPod":true}`},
	} {
		got, err := buildFinalBody(c.res, nil, "h", "w")
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	got, _ := buildFinalBody(Result{}, errors.New("bad thing"), "host-1", "pod-7")
	var outer map[string]string
	if err := json.Unmarshal(got, &outer); err != nil {
		t.Fatal(err)
	}
	var exc map[string]string
	if err := json.Unmarshal([]byte(outer["error"]), &exc); err != nil {
		t.Fatalf("exception error is not a JSON text: %v", err)
	}
	want := map[string]string{"error_type": "*errors.errorString", "error_message": "bad thing", "error_traceback": "", "hostname": "host-1", "worker_id": "pod-7", "runpod_version": SDKVersion}
	if d := cmp.Diff(want, exc); d != "" {
		t.Errorf("exception (-want +got):\n%s", d)
	}
}

// TestWorkerQueue drives the loop through the take answers of reference section 5, progress,
// handler failures, a retried post and a batch, then checks every request.
func TestWorkerQueue(t *testing.T) {
	q := newFakeQueue(t)
	var handled []string
	release := make(chan struct{})
	h := funcHandler{handle: func(ctx context.Context, job *Job, progress ProgressFunc) (Result, error) {
		var in map[string]any
		if err := json.Unmarshal(job.Input, &in); err != nil {
			return Result{}, err
		}
		handled = append(handled, job.ID)
		switch in["do"] {
		case "progress":
			for i := 1; i <= 3; i++ {
				progress(map[string]any{"step": i})
				time.Sleep(30 * time.Millisecond)
			}
			<-release
			return Result{Output: map[string]any{"text": "naïve ✓", "n": in["n"]}}, nil
		case "fail":
			return Result{Error: "workflow failed", Output: map[string]any{"details": []any{"node 3: bad"}}}, nil
		case "error":
			return Result{}, fmt.Errorf("opening thing: %w", io.ErrUnexpectedEOF)
		case "panic":
			panic("kaboom")
		}
		return Result{Output: in}, nil
	}}
	// Answers that are no job, then real jobs.
	q.takes <- takeAnswer{status: 204}
	q.takes <- takeAnswer{status: 400, body: "flashboot"}
	q.takes <- takeAnswer{status: 429}
	q.takes <- takeAnswer{status: 503, body: "busy"}
	q.takes <- takeAnswer{status: 200, contentType: "application/json", body: ""}
	q.takes <- takeAnswer{status: 200, contentType: "text/plain", body: `{"id":"x","input":{}}`}
	q.takes <- takeAnswer{status: 200, contentType: "application/json", body: `{"id":"no-input"}`}
	q.takes <- takeAnswer{status: 200, contentType: "application/json; charset=utf-8", body: `{"id":"j1","input":{"do":"progress","n":1},"webhook":"https://hook","batchId":"b1","extra":true}`}
	cancel, wait := startWorker(t, q, q.config(), h)

	// Progress while j1 runs; the heartbeat lists j1.
	p := <-q.progress
	if got := decodeBody(t, p); got["status"] != "IN_PROGRESS" || got["output"].(map[string]any)["step"] == nil {
		t.Errorf("progress body %s", p.Body)
	}
	waitPing(t, q, "job_id=j1&")
	close(release)
	f := q.final(t, 10*time.Second)
	if jobIDOf(f) != "j1" || string(f.Body) != `{"output":{"n":1,"text":"naïve ✓"}}` {
		t.Errorf("j1 final %s %s", f.Path, f.Body)
	}

	// A failure with details, an error, a panic, and a 502 that is retried.
	q.mu.Lock()
	q.doneStatus = []int{502}
	q.mu.Unlock()
	q.job("j2", map[string]any{"do": "fail"})
	f = q.final(t, 10*time.Second)
	if jobIDOf(f) != "j2" || string(f.Body) != `{"error":"workflow failed","output":{"details":["node 3: bad"]}}` {
		t.Errorf("j2 final %s", f.Body)
	}
	q.job("j3", map[string]any{"do": "error"})
	f = q.final(t, 10*time.Second)
	var exc map[string]string
	if err := json.Unmarshal([]byte(decodeBody(t, f)["error"].(string)), &exc); err != nil || exc["error_message"] != "opening thing: unexpected EOF" || exc["worker_id"] != fakeWorkerID || exc["hostname"] != "host-1" {
		t.Errorf("j3 final %s (%v)", f.Body, err)
	}
	q.takes <- takeAnswer{status: 200, contentType: "application/json", body: `not json`}
	q.job("j4", `{"do":"panic"}`) // input as a JSON string: this handler does not unwrap it
	f = q.final(t, 10*time.Second)
	exc = nil
	json.Unmarshal([]byte(decodeBody(t, f)["error"].(string)), &exc)
	if jobIDOf(f) != "j4" || !strings.Contains(exc["error_message"], "cannot unmarshal string") {
		t.Errorf("j4 final %s", f.Body)
	}
	q.job("j5", map[string]any{"do": "panic"})
	f = q.final(t, 10*time.Second)
	exc = nil
	json.Unmarshal([]byte(decodeBody(t, f)["error"].(string)), &exc)
	if jobIDOf(f) != "j5" || exc["error_type"] != "panic" || exc["error_message"] != "panic: kaboom" || !strings.Contains(exc["error_traceback"], "goroutine") {
		t.Errorf("j5 final %s", f.Body)
	}

	// A batch (array) of two jobs runs in order.
	q.takes <- takeAnswer{status: 200, contentType: "application/json", body: `[{"id":"b1","input":{"k":"v"}},{"id":"b2","input":[1,2]}]`}
	f1, f2 := q.final(t, 10*time.Second), q.final(t, 10*time.Second)
	if jobIDOf(f1) != "b1" || string(f1.Body) != `{"output":{"k":"v"}}` || jobIDOf(f2) != "b2" || !strings.Contains(string(f2.Body), "cannot unmarshal array") {
		t.Errorf("batch finals %s %s / %s %s", f1.Path, f1.Body, f2.Path, f2.Body)
	}

	cancel()
	if err := wait(); err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	if d := cmp.Diff([]string{"j1", "j2", "j3", "j5", "b1"}, handled); d != "" {
		t.Errorf("handled jobs (-want +got):\n%s", d)
	}
	q.checkRequests(t)

	// The 502 was retried once; no job id other than these was posted; pings came while idle too.
	var doneFor = map[string]int{}
	var idlePing, takeAfter429 bool
	reqs := q.requests()
	for i, r := range reqs {
		if strings.Contains(r.Path, "/job-done/") && !bytes.Contains(r.Body, []byte("IN_PROGRESS")) {
			doneFor[jobIDOf(r)]++
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

func waitPing(t *testing.T, q *fakeQueue, substr string) recorded {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case p := <-q.pings:
			if strings.Contains(p.RawQuery, substr) {
				return p
			}
		case <-deadline:
			t.Fatalf("no ping with %q; requests: %s", substr, q.summary())
		}
	}
}

// TestWorkerStop checks that a job listed by job-stop is cancelled with ErrJobStopped, that
// nothing is posted for it and that the next job runs.
func TestWorkerStop(t *testing.T) {
	q := newFakeQueue(t)
	started := make(chan struct{}, 1)
	var cause atomic.Value
	h := funcHandler{handle: func(ctx context.Context, job *Job, progress ProgressFunc) (Result, error) {
		if job.ID == "long" {
			started <- struct{}{}
			<-ctx.Done()
			cause.Store(context.Cause(ctx))
			return Result{Error: "interrupted"}, nil
		}
		return Result{Output: "ok"}, nil
	}}
	q.job("long", map[string]any{})
	startWorker(t, q, q.config(), h)
	<-started
	q.stops <- []string{"someone-else", "long"}
	q.job("next", map[string]any{})
	f := q.final(t, 10*time.Second)
	if jobIDOf(f) != "next" {
		t.Errorf("first final is for %s: %s", jobIDOf(f), f.Body)
	}
	if c, _ := cause.Load().(error); !errors.Is(c, ErrJobStopped) {
		t.Errorf("cause %v", c)
	}
	for _, r := range q.requests() {
		if strings.HasSuffix(r.Path, "/long") {
			t.Errorf("posted for the stopped job: %s %s", r.Path, r.Body)
		}
	}
	q.checkRequests(t)
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
			q := newFakeQueue(t)
			started := make(chan struct{})
			h := funcHandler{handle: func(ctx context.Context, job *Job, progress ProgressFunc) (Result, error) {
				close(started)
				select {
				case <-ctx.Done():
					return Result{Error: "interrupted: " + context.Cause(ctx).Error()}, nil
				case <-time.After(300 * time.Millisecond):
					return Result{Output: "finished"}, nil
				}
			}}
			q.job("j", map[string]any{})
			cfg := q.config()
			cfg.ShutdownGrace = c.grace
			cancel, wait := startWorker(t, q, cfg, h)
			<-started
			cancel()
			if err := wait(); err != nil {
				t.Fatal(err)
			}
			f := q.final(t, time.Second)
			if string(f.Body) != c.want {
				t.Errorf("final %s, want %s", f.Body, c.want)
			}
			takes := 0
			for _, r := range q.requests() {
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
	q := newFakeQueue(t)
	h := funcHandler{ready: func(ctx context.Context) error { return errors.New("version v9 is not built") }}
	cfg := q.config()
	cfg.Logger = testLogger(t)
	w, err := New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	err = w.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "v9 is not built") {
		t.Fatalf("Run: %v", err)
	}
	found := false
	for _, r := range q.requests() {
		if strings.Contains(r.Path, "/job-take/") {
			t.Errorf("took a job while not ready")
		}
		if strings.Contains(r.RawQuery, "status=unhealthy") {
			found = r.RawQuery == "gpu=NVIDIA+H200&status=unhealthy&check=handler_ready&reason=version+v9+is+not+built&runpod_version="+SDKVersion
		}
	}
	if !found {
		t.Errorf("no unhealthy report: %s", q.summary())
	}
}

func TestNewRequiresSettings(t *testing.T) {
	h := funcHandler{}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{PostOutputURL: "x", WorkerID: "w"}, "RUNPOD_WEBHOOK_GET_JOB"},
		{Config{GetJobURL: "x", WorkerID: "w"}, "RUNPOD_WEBHOOK_POST_OUTPUT"},
		{Config{GetJobURL: "x", PostOutputURL: "x"}, "RUNPOD_POD_ID"},
	} {
		if _, err := New(c.cfg, h); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
}

func TestRunTestInput(t *testing.T) {
	h := funcHandler{handle: func(ctx context.Context, job *Job, progress ProgressFunc) (Result, error) {
		if job.ID != LocalJobID && job.ID != "given" {
			return Result{Error: "bad id " + job.ID}, nil
		}
		var in map[string]any
		json.Unmarshal(job.Input, &in)
		if in["fail"] == true {
			return Result{Error: "failed as asked"}, nil
		}
		return Result{Output: in}, nil
	}}
	body, failed, err := RunTestInput(context.Background(), h, []byte(`{"input":{"a":1}}`), testLogger(t))
	if err != nil || failed || string(body) != `{"output":{"a":1}}` {
		t.Errorf("ok: %s %v %v", body, failed, err)
	}
	body, failed, err = RunTestInput(context.Background(), h, []byte(`{"id":"given","input":{"fail":true}}`), testLogger(t))
	if err != nil || !failed || string(body) != `{"error":"failed as asked"}` {
		t.Errorf("fail: %s %v %v", body, failed, err)
	}
	if _, _, err := RunTestInput(context.Background(), h, []byte(`{"inptu":{}}`), nil); err == nil || !strings.Contains(err.Error(), `no "input"`) {
		t.Errorf("missing input: %v", err)
	}
}

func TestLocalAPI(t *testing.T) {
	gate := make(chan struct{})
	h := funcHandler{handle: func(ctx context.Context, job *Job, progress ProgressFunc) (Result, error) {
		var in map[string]any
		json.Unmarshal(job.Input, &in)
		if in["wait"] == true {
			progress(map[string]any{"step": 1})
			select {
			case <-gate:
			case <-ctx.Done():
				return Result{Error: "interrupted"}, nil
			}
		}
		if in["fail"] == true {
			return Result{Error: "failed", Output: map[string]any{"details": "d"}}, nil
		}
		return Result{Output: in}, nil
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	api := NewLocalAPI(h, testLogger(t))
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

// TestTakeGzip checks that a job-take answer compressed as Accept-Encoding allows is decoded
// (Go decodes only what it asked for itself).
func TestTakeGzip(t *testing.T) {
	for _, enc := range []string{"gzip", "deflate"} {
		var buf bytes.Buffer
		var zw io.WriteCloser
		if enc == "gzip" {
			zw = gzip.NewWriter(&buf)
		} else {
			zw = zlib.NewWriter(&buf)
		}
		io.WriteString(zw, `{"id":"z1","input":{"a":"é"}}`)
		zw.Close()
		srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Content-Type", "application/json")
			rw.Header().Set("Content-Encoding", enc)
			rw.Write(buf.Bytes())
		}))
		w, err := New(Config{GetJobURL: srv.URL + "/job-take/$ID", PostOutputURL: srv.URL + "/done/$ID", WorkerID: "w", Logger: testLogger(t)}, funcHandler{})
		if err != nil {
			t.Fatal(err)
		}
		jobs := w.take(context.Background())
		srv.Close()
		if len(jobs) != 1 || jobs[0].ID != "z1" || string(jobs[0].Input) != `{"a":"é"}` {
			t.Errorf("%s: jobs %+v", enc, jobs)
		}
	}
}
