package worker

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeQueue is a RunPod queue on httptest: it hands out scripted job-take answers, lists jobs
// to stop on job-stop, records every request and answers posts with scripted statuses.
type fakeQueue struct {
	t   *testing.T
	srv *httptest.Server

	takes chan takeAnswer // job-take answers, in order; the poll waits for one
	stops chan []string   // job-stop answers

	mu          sync.Mutex
	reqs        []recorded
	doneStatus  []int // statuses for the next job-done posts (then 200)
	finals      chan recorded
	progress    chan recorded
	pings       chan recorded
	holdTimeout time.Duration
}

type takeAnswer struct {
	status      int
	contentType string
	body        string
}

// recorded is one request the worker made.
type recorded struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
	Status                 int // what the fake answered
}

const (
	fakeEndpoint = "ep1"
	fakeWorkerID = "pod-7"
	fakeAPIKey   = "rpa_TESTKEY"
)

func newFakeQueue(t *testing.T) *fakeQueue {
	q := &fakeQueue{
		t:           t,
		takes:       make(chan takeAnswer, 64),
		stops:       make(chan []string, 8),
		finals:      make(chan recorded, 64),
		progress:    make(chan recorded, 256),
		pings:       make(chan recorded, 1024),
		holdTimeout: 3 * time.Second,
	}
	q.srv = httptest.NewServer(http.HandlerFunc(q.serve))
	t.Cleanup(q.srv.Close)
	return q
}

// config returns a worker config pointing at the fake, with short delays for tests.
func (q *fakeQueue) config() Config {
	base := q.srv.URL + "/v2/" + fakeEndpoint
	return Config{
		GetJobURL:            base + "/job-take/$ID?gpu=NVIDIA+H200",
		PostOutputURL:        base + "/job-done/$RUNPOD_POD_ID/$ID?gpu=NVIDIA+H200",
		PingURL:              base + "/ping/$RUNPOD_POD_ID?gpu=NVIDIA+H200",
		APIKey:               fakeAPIKey,
		WorkerID:             fakeWorkerID,
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

func (q *fakeQueue) job(id string, input any) {
	b, err := json.Marshal(map[string]any{"id": id, "input": input})
	if err != nil {
		q.t.Fatal(err)
	}
	q.takes <- takeAnswer{status: 200, contentType: "application/json", body: string(b)}
}

func (q *fakeQueue) serve(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := recorded{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: body, Status: 200}
	prefix := "/v2/" + fakeEndpoint + "/"
	route := strings.SplitN(strings.TrimPrefix(r.URL.Path, prefix), "/", 2)[0]
	switch route {
	case "job-take":
		select {
		case a := <-q.takes:
			rec.Status = a.status
			q.record(rec)
			if a.contentType != "" {
				rw.Header().Set("Content-Type", a.contentType)
			}
			rw.WriteHeader(a.status)
			io.WriteString(rw, a.body)
		case <-r.Context().Done():
		case <-time.After(q.holdTimeout):
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
		case <-time.After(q.holdTimeout):
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
				q.progress <- rec
			} else {
				q.finals <- rec
			}
		}
	case "ping":
		q.record(rec)
		select {
		case q.pings <- rec:
		default:
		}
	default:
		rec.Status = 404
		q.record(rec)
		http.NotFound(rw, r)
	}
}

func (q *fakeQueue) record(r recorded) {
	q.mu.Lock()
	q.reqs = append(q.reqs, r)
	q.mu.Unlock()
}

// requests returns the requests made so far.
func (q *fakeQueue) requests() []recorded {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]recorded(nil), q.reqs...)
}

// final waits for the next final job-done post.
func (q *fakeQueue) final(t *testing.T, timeout time.Duration) recorded {
	t.Helper()
	select {
	case r := <-q.finals:
		return r
	case <-time.After(timeout):
		t.Fatalf("no job-done post within %s; requests: %s", timeout, q.summary())
		return recorded{}
	}
}

func (q *fakeQueue) summary() string {
	var b strings.Builder
	for _, r := range q.requests() {
		b.WriteString("\n  " + r.Method + " " + r.Path + "?" + r.RawQuery + " -> " + http.StatusText(r.Status) + " " + truncate(string(r.Body), 300))
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// checkRequests checks the headers, paths and queries of every request made so far.
func (q *fakeQueue) checkRequests(t *testing.T) {
	t.Helper()
	prefix := "/v2/" + fakeEndpoint + "/"
	for _, r := range q.requests() {
		where := r.Method + " " + r.Path + "?" + r.RawQuery
		if got := r.Header.Get("Authorization"); got != fakeAPIKey {
			t.Errorf("%s: Authorization = %q, want the raw key", where, got)
		}
		if got := r.Header.Get("User-Agent"); !strings.HasPrefix(got, "RunPod-Python-SDK/"+SDKVersion+" ") {
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
			if r.Method != "GET" || route != "job-take/"+fakeWorkerID || r.Header.Get("Content-Type") != "application/json" ||
				!(r.RawQuery == "gpu=NVIDIA+H200&job_in_progress=0" || r.RawQuery == "gpu=NVIDIA+H200&job_in_progress=1") {
				t.Errorf("bad job-take request %s (Content-Type %q)", where, r.Header.Get("Content-Type"))
			}
		case strings.HasPrefix(route, "job-stop/"):
			if r.Method != "GET" || route != "job-stop/"+fakeWorkerID || r.RawQuery != "gpu=NVIDIA+H200" {
				t.Errorf("bad job-stop request %s", where)
			}
		case strings.HasPrefix(route, "ping/"):
			if r.Method != "GET" || route != "ping/"+fakeWorkerID || !strings.HasSuffix(r.RawQuery, "runpod_version="+SDKVersion) || len(r.Body) != 0 {
				t.Errorf("bad ping request %s", where)
			}
		case strings.HasPrefix(route, "job-done/"):
			parts := strings.Split(route, "/")
			if r.Method != "POST" || len(parts) != 3 || parts[1] != fakeWorkerID || r.RawQuery != "gpu=NVIDIA+H200&isStream=false" {
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
				t.Errorf("%s: body is not JSON: %s", where, truncate(string(r.Body), 200))
			}
		default:
			t.Errorf("unexpected request %s", where)
		}
	}
}
