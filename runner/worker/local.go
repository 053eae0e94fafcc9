package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// LocalJobID is the job id of a test input without an "id", as in the SDK.
const LocalJobID = "local_test"

// RunTestInput runs the one job of a test input document ({"input": ..., "id"?}, the shape of
// test_input.json) with h and returns the job-done body the worker would post. failed is true
// when the body has an "error". Progress is logged to log.
func RunTestInput(ctx context.Context, h Handler, doc []byte, log *slog.Logger) (body []byte, failed bool, err error) {
	if log == nil {
		log = slog.Default()
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(doc, &fields); err != nil {
		return nil, false, fmt.Errorf("test input is not a JSON object: %w", err)
	}
	if _, ok := fields["input"]; !ok {
		return nil, false, errors.New(`test input has no "input" field`)
	}
	if _, ok := fields["id"]; !ok {
		fields["id"], _ = json.Marshal(LocalJobID)
	}
	raw, _ := json.Marshal(fields)
	job, err := decodeJob(raw)
	if err != nil {
		return nil, false, fmt.Errorf("test input: %w", err)
	}
	if err := h.Ready(ctx); err != nil {
		return nil, false, fmt.Errorf("handler not ready: %w", err)
	}
	res, herr := safeHandleWith(ctx, h, job, func(p any) { log.Info("progress", "job_id", job.ID, "progress", p) })
	if ctx.Err() != nil && herr == nil && res.Error == "" {
		res = Result{Error: "interrupted"}
	}
	body, err = buildFinalBody(res, herr, "local", "local")
	if err != nil {
		return nil, false, err
	}
	return body, herr != nil || res.Error != "", nil
}

func safeHandleWith(ctx context.Context, h Handler, job *Job, progress ProgressFunc) (Result, error) {
	w := &Worker{h: h}
	return w.safeHandle(ctx, job, progress)
}

// LocalAPI serves a RunPod endpoint's client API on a local port for testing: POST /run
// (queued, run in order), POST /runsync (waits), GET or POST /status/<id>, POST /cancel/<id>
// and GET /health. Routes are also accepted under /v2/<endpoint>/. Jobs run one at a time.
type LocalAPI struct {
	h   Handler
	log *slog.Logger

	mu    sync.Mutex
	jobs  map[string]*localJob
	queue chan *localJob
	ready bool
}

type localJob struct {
	id       string
	job      *Job
	status   string // IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED
	progress any
	final    *doneBody
	cancel   context.CancelCauseFunc
	done     chan struct{}
}

// NewLocalAPI returns a local API over h.
func NewLocalAPI(h Handler, log *slog.Logger) *LocalAPI {
	if log == nil {
		log = slog.Default()
	}
	return &LocalAPI{h: h, log: log, jobs: map[string]*localJob{}, queue: make(chan *localJob, 1024)}
}

// Serve makes h ready, then serves the API on ln until ctx ends; jobs in the queue are
// dropped then, and the running one is cancelled.
func (a *LocalAPI) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	defer wg.Wait()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	defer srv.Close()
	if err := a.h.Ready(ctx); err != nil {
		return fmt.Errorf("handler not ready: %w", err)
	}
	a.mu.Lock()
	a.ready = true
	a.mu.Unlock()
	a.log.Info("local API ready", "addr", ln.Addr().String())
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.runQueue(ctx)
	}()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

func (a *LocalAPI) runQueue(ctx context.Context) {
	for {
		var lj *localJob
		select {
		case <-ctx.Done():
			return
		case lj = <-a.queue:
		}
		jctx, cancel := context.WithCancelCause(ctx)
		a.mu.Lock()
		if lj.status != "IN_QUEUE" { // cancelled while queued
			a.mu.Unlock()
			cancel(nil)
			continue
		}
		lj.status = "IN_PROGRESS"
		lj.cancel = cancel
		a.mu.Unlock()
		res, herr := safeHandleWith(jctx, a.h, lj.job, func(p any) {
			a.mu.Lock()
			lj.progress = p
			a.mu.Unlock()
		})
		stopped := errors.Is(context.Cause(jctx), ErrJobStopped)
		cancel(nil)
		body, err := makeDoneBody(res, herr, "local", "local")
		if err != nil {
			body, _ = makeDoneBody(Result{}, err, "local", "local")
		}
		a.mu.Lock()
		switch {
		case stopped:
			lj.status = "CANCELLED"
		case body.Error != "":
			lj.status = "FAILED"
		default:
			lj.status = "COMPLETED"
		}
		lj.final = &body
		a.mu.Unlock()
		close(lj.done)
	}
}

// ServeHTTP routes the local API.
func (a *LocalAPI) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	p := strings.TrimSuffix(r.URL.Path, "/")
	if strings.HasPrefix(p, "/v2/") { // /v2/<endpoint>/<route>
		if rest := strings.SplitN(strings.TrimPrefix(p, "/v2/"), "/", 2); len(rest) == 2 {
			p = "/" + rest[1]
		}
	}
	switch {
	case p == "/health" && r.Method == http.MethodGet:
		a.health(rw)
	case (p == "/run" || p == "/runsync") && r.Method == http.MethodPost:
		a.submit(rw, r, p == "/runsync")
	case strings.HasPrefix(p, "/status/") && (r.Method == http.MethodGet || r.Method == http.MethodPost):
		a.status(rw, strings.TrimPrefix(p, "/status/"))
	case strings.HasPrefix(p, "/cancel/") && r.Method == http.MethodPost:
		a.cancelJob(rw, strings.TrimPrefix(p, "/cancel/"))
	default:
		writeJSON(rw, http.StatusNotFound, localError{Error: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)})
	}
}

func (a *LocalAPI) submit(rw http.ResponseWriter, r *http.Request, wait bool) {
	var req map[string]json.RawMessage
	if err := json.NewDecoder(http.MaxBytesReader(rw, r.Body, 20<<20)).Decode(&req); err != nil {
		writeJSON(rw, http.StatusBadRequest, localError{Error: "request body is not a JSON object: " + err.Error()})
		return
	}
	if _, ok := req["input"]; !ok {
		writeJSON(rw, http.StatusBadRequest, localError{Error: `request has no "input"`})
		return
	}
	id := "test-" + uuid.NewString()
	req["id"], _ = json.Marshal(id)
	raw, _ := json.Marshal(req)
	job, err := decodeJob(raw)
	if err != nil {
		writeJSON(rw, http.StatusBadRequest, localError{Error: err.Error()})
		return
	}
	lj := &localJob{id: id, job: job, status: "IN_QUEUE", done: make(chan struct{})}
	a.mu.Lock()
	a.jobs[id] = lj
	a.mu.Unlock()
	select {
	case a.queue <- lj:
	default:
		writeJSON(rw, http.StatusTooManyRequests, localError{Error: "local queue full"})
		return
	}
	if !wait {
		writeJSON(rw, http.StatusOK, localStatus{ID: id, Status: "IN_QUEUE"})
		return
	}
	select {
	case <-lj.done:
	case <-r.Context().Done():
		return
	}
	a.status(rw, id)
}

func (a *LocalAPI) status(rw http.ResponseWriter, id string) {
	a.mu.Lock()
	lj, ok := a.jobs[id]
	var resp localStatus
	if ok {
		resp = localStatus{ID: id, Status: lj.status}
		if lj.final != nil {
			resp.Error, resp.Output, resp.StopPod = lj.final.Error, lj.final.Output, lj.final.StopPod
		} else {
			resp.Output = lj.progress
		}
	}
	a.mu.Unlock()
	if !ok {
		writeJSON(rw, http.StatusNotFound, localStatus{ID: id, Status: "FAILED", Error: "Job ID not found"})
		return
	}
	writeJSON(rw, http.StatusOK, resp)
}

func (a *LocalAPI) cancelJob(rw http.ResponseWriter, id string) {
	a.mu.Lock()
	lj, ok := a.jobs[id]
	running := false
	if ok {
		switch lj.status {
		case "IN_QUEUE":
			lj.status = "CANCELLED"
			close(lj.done)
		case "IN_PROGRESS":
			running = true
			lj.cancel(ErrJobStopped)
		}
	}
	a.mu.Unlock()
	if !ok {
		writeJSON(rw, http.StatusNotFound, localStatus{ID: id, Status: "FAILED", Error: "Job ID not found"})
		return
	}
	if running {
		<-lj.done
	}
	a.status(rw, id)
}

func (a *LocalAPI) health(rw http.ResponseWriter) {
	a.mu.Lock()
	var h localHealth
	for _, lj := range a.jobs {
		switch lj.status {
		case "COMPLETED":
			h.Jobs.Completed++
		case "FAILED":
			h.Jobs.Failed++
		case "IN_PROGRESS":
			h.Jobs.InProgress++
			h.Workers.Running = 1
		case "IN_QUEUE":
			h.Jobs.InQueue++
		}
	}
	if a.ready && h.Workers.Running == 0 {
		h.Workers.Idle = 1
	}
	a.mu.Unlock()
	writeJSON(rw, http.StatusOK, h)
}

// localStatus is the answer of /run, /runsync, /status and /cancel: the job's id and status,
// then its final body's fields (or its latest progress as output).
type localStatus struct {
	Error   string `json:"error,omitzero"`
	ID      string `json:"id"`
	Output  any    `json:"output,omitzero"`
	Status  string `json:"status"` // IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED
	StopPod bool   `json:"stopPod,omitzero"`
}

// localError is the answer to a request the local API refuses.
type localError struct {
	Error string `json:"error"`
}

// localHealth is the answer of /health: job counts and the worker's state.
type localHealth struct {
	Jobs struct {
		Completed  int `json:"completed"`
		Failed     int `json:"failed"`
		InProgress int `json:"inProgress"`
		InQueue    int `json:"inQueue"`
		Retried    int `json:"retried"`
	} `json:"jobs"`
	Workers struct {
		Idle    int `json:"idle"`
		Running int `json:"running"`
	} `json:"workers"`
}

func writeJSON(rw http.ResponseWriter, status int, v any) {
	body, err := marshalBody(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"encoding the response failed"}`)
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	rw.Write(body)
	rw.Write([]byte("\n"))
}
