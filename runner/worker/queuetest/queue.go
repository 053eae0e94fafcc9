// Package queuetest is a RunPod queue on httptest for tests of a worker and its handlers: it
// hands out scripted job-take answers, lists jobs to stop on job-stop, records every request
// the worker makes and answers job-done posts with scripted statuses.
package queuetest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/runner/worker"
)

// The fake's endpoint, worker id and API key, as the URL templates of Config carry them.
const (
	Endpoint = "ep1"
	WorkerID = "pod-7"
	APIKey   = "rpa_TESTKEY"
)

// Queue is a fake RunPod queue.
type Queue struct {
	t   testing.TB
	srv *httptest.Server

	takes chan Take     // job-take answers, in order; the poll waits for one
	stops chan []string // job-stop answers

	mu         sync.Mutex
	reqs       []Request
	doneStatus []int // statuses for the next job-done posts (then 200)
	// Finals, Progress and Pings receive the final job-done posts, the progress posts and
	// the pings as they are answered (200 only; pings are dropped when nobody reads).
	Finals   chan Request
	Progress chan Request
	Pings    chan Request
	// HoldTimeout is how long a job-take or job-stop long poll is held before a 204.
	HoldTimeout time.Duration
}

// Take is one scripted job-take answer.
type Take struct {
	Status      int
	ContentType string
	Body        string
}

// Request is one request the worker made.
type Request struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
	Status                 int // what the fake answered
}

// JobID is the job id of a job-done post (the last path element).
func (r Request) JobID() string {
	return r.Path[strings.LastIndexByte(r.Path, '/')+1:]
}

// New starts a fake queue, stopped when the test ends.
func New(t testing.TB) *Queue {
	q := &Queue{
		t:           t,
		takes:       make(chan Take, 64),
		stops:       make(chan []string, 8),
		Finals:      make(chan Request, 64),
		Progress:    make(chan Request, 256),
		Pings:       make(chan Request, 1024),
		HoldTimeout: 3 * time.Second,
	}
	q.srv = httptest.NewServer(http.HandlerFunc(q.serve))
	t.Cleanup(q.srv.Close)
	return q
}

// Config returns a worker config pointing at the fake, with short delays for tests.
func (q *Queue) Config() worker.Config {
	base := q.srv.URL + "/v2/" + Endpoint
	return worker.Config{
		GetJobURL:            base + "/job-take/$ID?gpu=NVIDIA+H200",
		PostOutputURL:        base + "/job-done/$RUNPOD_POD_ID/$ID?gpu=NVIDIA+H200",
		PingURL:              base + "/ping/$RUNPOD_POD_ID?gpu=NVIDIA+H200",
		APIKey:               APIKey,
		WorkerID:             WorkerID,
		Hostname:             "host-1",
		PingInterval:         100 * time.Millisecond,
		ProgressInterval:     20 * time.Millisecond,
		TakeTimeout:          5 * time.Second,
		TooManyRequestsDelay: 50 * time.Millisecond,
		ErrorBackoff:         20 * time.Millisecond,
		RetryBackoff:         10 * time.Millisecond,
		ShutdownGrace:        5 * time.Second,
	}
}

// Job queues one job {"id": id, "input": input}.
func (q *Queue) Job(id string, input any) {
	b, err := json.Marshal(map[string]any{"id": id, "input": input})
	if err != nil {
		q.t.Fatal(err)
	}
	q.Answer(Take{Status: 200, ContentType: "application/json", Body: string(b)})
}

// Answer queues one job-take answer.
func (q *Queue) Answer(a Take) { q.takes <- a }

// Stop makes the next job-stop poll list ids.
func (q *Queue) Stop(ids ...string) { q.stops <- ids }

// FailDone makes the next job-done posts answer these statuses (then 200).
func (q *Queue) FailDone(statuses ...int) {
	q.mu.Lock()
	q.doneStatus = append(q.doneStatus, statuses...)
	q.mu.Unlock()
}

func (q *Queue) serve(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: body, Status: 200}
	prefix := "/v2/" + Endpoint + "/"
	route := strings.SplitN(strings.TrimPrefix(r.URL.Path, prefix), "/", 2)[0]
	switch route {
	case "job-take":
		select {
		case a := <-q.takes:
			rec.Status = a.Status
			q.record(rec)
			if a.ContentType != "" {
				rw.Header().Set("Content-Type", a.ContentType)
			}
			rw.WriteHeader(a.Status)
			io.WriteString(rw, a.Body)
		case <-r.Context().Done():
		case <-time.After(q.HoldTimeout):
			rec.Status = 204
			q.record(rec)
			rw.WriteHeader(204)
		}
	case "job-stop":
		select {
		case ids := <-q.stops:
			q.record(rec)
			rw.Header().Set("Content-Type", "application/json")
			json.NewEncoder(rw).Encode(map[string]any{"jobsToStop": ids})
		case <-r.Context().Done():
		case <-time.After(q.HoldTimeout):
			rec.Status = 204
			q.record(rec)
			rw.WriteHeader(204)
		}
	case "job-done":
		var msg map[string]json.RawMessage
		json.Unmarshal(body, &msg)
		q.mu.Lock()
		if len(q.doneStatus) > 0 {
			rec.Status = q.doneStatus[0]
			q.doneStatus = q.doneStatus[1:]
		}
		q.mu.Unlock()
		q.record(rec)
		rw.WriteHeader(rec.Status)
		if rec.Status == 200 {
			if string(msg["status"]) == `"IN_PROGRESS"` {
				q.Progress <- rec
			} else {
				q.Finals <- rec
			}
		}
	case "ping":
		q.record(rec)
		select {
		case q.Pings <- rec:
		default:
		}
	default:
		rec.Status = 404
		q.record(rec)
		http.NotFound(rw, r)
	}
}

func (q *Queue) record(r Request) {
	q.mu.Lock()
	q.reqs = append(q.reqs, r)
	q.mu.Unlock()
}

// Requests returns the requests made so far.
func (q *Queue) Requests() []Request {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]Request(nil), q.reqs...)
}

// Final waits for the next final job-done post.
func (q *Queue) Final(t testing.TB, timeout time.Duration) Request {
	t.Helper()
	select {
	case r := <-q.Finals:
		return r
	case <-time.After(timeout):
		t.Fatalf("no job-done post within %s; requests: %s", timeout, q.Summary())
		return Request{}
	}
}

// Summary lists the requests made so far, one a line, for a failure message.
func (q *Queue) Summary() string {
	var b strings.Builder
	for _, r := range q.Requests() {
		b.WriteString("\n  " + r.Method + " " + r.Path + "?" + r.RawQuery + " -> " + http.StatusText(r.Status) + " " + Truncate(string(r.Body), 300))
	}
	return b.String()
}

// Truncate cuts s to n bytes, marking the cut.
func Truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// CheckRequests checks the headers, paths and queries of every request made so far against
// what the RunPod SDK sends.
func (q *Queue) CheckRequests(t testing.TB) {
	t.Helper()
	prefix := "/v2/" + Endpoint + "/"
	for _, r := range q.Requests() {
		where := r.Method + " " + r.Path + "?" + r.RawQuery
		if got := r.Header.Get("Authorization"); got != APIKey {
			t.Errorf("%s: Authorization = %q, want the raw key", where, got)
		}
		if got := r.Header.Get("User-Agent"); !strings.HasPrefix(got, "RunPod-Python-SDK/"+worker.SDKVersion+" ") {
			t.Errorf("%s: User-Agent = %q", where, got)
		}
		if got := r.Header.Get("Accept-Encoding"); got != "gzip, deflate" {
			t.Errorf("%s: Accept-Encoding = %q", where, got)
		}
		if !strings.HasPrefix(r.RawQuery, "gpu=NVIDIA+H200") {
			t.Errorf("%s: the template's query is not kept first", where)
		}
		route := strings.TrimPrefix(r.Path, prefix)
		switch {
		case strings.HasPrefix(route, "job-take/"):
			if r.Method != "GET" || route != "job-take/"+WorkerID || r.Header.Get("Content-Type") != "application/json" ||
				!(r.RawQuery == "gpu=NVIDIA+H200&job_in_progress=0" || r.RawQuery == "gpu=NVIDIA+H200&job_in_progress=1") {
				t.Errorf("bad job-take request %s (Content-Type %q)", where, r.Header.Get("Content-Type"))
			}
		case strings.HasPrefix(route, "job-stop/"):
			if r.Method != "GET" || route != "job-stop/"+WorkerID || r.RawQuery != "gpu=NVIDIA+H200" {
				t.Errorf("bad job-stop request %s", where)
			}
		case strings.HasPrefix(route, "ping/"):
			if r.Method != "GET" || route != "ping/"+WorkerID || !strings.HasSuffix(r.RawQuery, "runpod_version="+worker.SDKVersion) || len(r.Body) != 0 {
				t.Errorf("bad ping request %s", where)
			}
		case strings.HasPrefix(route, "job-done/"):
			parts := strings.Split(route, "/")
			if r.Method != "POST" || len(parts) != 3 || parts[1] != WorkerID || r.RawQuery != "gpu=NVIDIA+H200&isStream=false" {
				t.Errorf("bad job-done request %s", where)
				continue
			}
			if got := r.Header.Get("X-Request-ID"); got != parts[2] {
				t.Errorf("%s: X-Request-ID = %q, want the job id", where, got)
			}
			if r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" || r.Header.Get("charset") != "utf-8" {
				t.Errorf("%s: Content-Type %q charset %q", where, r.Header.Get("Content-Type"), r.Header.Get("charset"))
			}
			if !json.Valid(r.Body) {
				t.Errorf("%s: body is not JSON: %s", where, Truncate(string(r.Body), 200))
			}
		default:
			t.Errorf("unexpected request %s", where)
		}
	}
}

// Logger is a logger that writes to the test's log, at debug level.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(LogWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// LogWriter writes each line to the test's log.
func LogWriter(t testing.TB) io.Writer { return testWriter{t} }

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// StartWorker runs a worker with cfg and h (its logger the test's) until the test ends; it
// returns the cancel func (the worker's SIGTERM) and a wait func returning Run's error.
func StartWorker(t testing.TB, cfg worker.Config, h worker.Handler) (context.CancelFunc, func() error) {
	t.Helper()
	cfg.Logger = Logger(t)
	w, err := worker.New(cfg, h)
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

// Decode decodes the request's JSON body.
func (r Request) Decode(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body %q: %v", r.Body, err)
	}
	return m
}
