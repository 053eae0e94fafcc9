package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"sort"
	"sync"
	"time"
)

// ErrJobStopped is the cancellation cause of a job that the platform listed on job-stop
// (cancelled, timed out or expired). Nothing is posted for such a job.
var ErrJobStopped = errors.New("job stopped by the platform")

// ErrShutdown is the cancellation cause of the job in hand when the worker was asked to stop
// and the job did not finish within Config.ShutdownGrace.
var ErrShutdown = errors.New("worker shutting down")

// Job is one job taken from the queue.
type Job struct {
	// ID is the job id, used in the done URL and X-Request-ID.
	ID string
	// Input is the client's input verbatim (any JSON, possibly a JSON string).
	Input json.RawMessage
	// Webhook is the client's webhook; the platform calls it, not the worker.
	Webhook string
	// BatchID prefixes log lines when set.
	BatchID string
	// S3Config is the client's s3Config, passed through untouched (nil when absent).
	S3Config json.RawMessage
	// Fields holds every field of the job object, including unknown ones.
	Fields map[string]json.RawMessage
}

// Result is what a handler returns for a job.
type Result struct {
	// Output is the job's output, any JSON-encodable value. With Error set it carries the
	// failure's details (e.g. ComfyUI's node errors) and is dropped when empty.
	Output any
	// Error, when not empty, fails the job with this message.
	Error string
	// StopPod asks the platform to replace this worker after the job; the worker exits once
	// the result is posted.
	StopPod bool
}

// ProgressFunc reports a job's progress; the worker posts the latest value, throttled. It
// never blocks.
type ProgressFunc func(progress any)

// Handler runs jobs for a Worker.
type Handler interface {
	// Ready returns once the handler can run jobs (e.g. ComfyUI answers), or an error. It is
	// called before the first job-take, where an error makes the worker unhealthy, and again
	// after each job, where an error is only logged.
	Ready(ctx context.Context) error
	// Handle runs one job. ctx is cancelled with cause ErrJobStopped when the platform stops
	// the job, or ErrShutdown when the worker stops; Handle must then abort promptly. A
	// returned error (or a panic) is reported as an exception, like the SDK does for an
	// uncaught exception; expected failures belong in Result.Error.
	Handle(ctx context.Context, job *Job, progress ProgressFunc) (Result, error)
}

// Config holds a worker's settings. cmd fills it from RUNPOD_* variables.
type Config struct {
	// GetJobURL, PostOutputURL and PingURL are the URL templates of RUNPOD_WEBHOOK_GET_JOB,
	// RUNPOD_WEBHOOK_POST_OUTPUT and RUNPOD_WEBHOOK_PING. GetJobURL and PostOutputURL are
	// required; an empty PingURL disables the heartbeat.
	GetJobURL, PostOutputURL, PingURL string
	// APIKey is sent verbatim as Authorization on every call (RUNPOD_AI_API_KEY).
	APIKey string
	// WorkerID is RUNPOD_POD_ID (required).
	WorkerID string
	// Hostname is copied into exception reports (RUNPOD_POD_HOSTNAME).
	Hostname string
	// PingInterval is the heartbeat period (RUNPOD_PING_INTERVAL ms); default 10 s.
	PingInterval time.Duration
	// ProgressInterval is the least time between two progress posts of a job; default 1 s.
	ProgressInterval time.Duration
	// TakeTimeout bounds one job-take or job-stop long poll; default 90 s.
	TakeTimeout time.Duration
	// PostTimeout bounds one attempt of a result or progress post; default 600 s.
	PostTimeout time.Duration
	// TooManyRequestsDelay is the sleep after a 429; default 5 s.
	TooManyRequestsDelay time.Duration
	// ErrorBackoff is the sleep after another failed take or stop poll; default 1 s.
	ErrorBackoff time.Duration
	// RetryBackoff is the unit of the Fibonacci backoff between post attempts (1, 1, 2 ...
	// units) and of the heartbeat's retry backoff; default 1 s.
	RetryBackoff time.Duration
	// PostAttempts is the number of attempts of a result post (network errors and 5xx are
	// retried, 4xx are not); default 3.
	PostAttempts int
	// ShutdownGrace is how long the job in hand may still run after the worker was asked to
	// stop before it is cancelled with ErrShutdown and failed; default 30 s.
	ShutdownGrace time.Duration
	// DisableStop turns the job-stop poll off.
	DisableStop bool
	// UserAgent overrides DefaultUserAgent.
	UserAgent string
	// HTTPClient is the one client for every platform call; it must have no global timeout
	// (long polls). Default: a new client.
	HTTPClient *http.Client
	// Logger receives the worker's log lines; default slog.Default().
	Logger *slog.Logger
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.PingInterval, 10*time.Second)
	def(&c.ProgressInterval, time.Second)
	def(&c.TakeTimeout, 90*time.Second)
	def(&c.PostTimeout, 600*time.Second)
	def(&c.TooManyRequestsDelay, 5*time.Second)
	def(&c.ErrorBackoff, time.Second)
	def(&c.RetryBackoff, time.Second)
	def(&c.ShutdownGrace, 30*time.Second)
	if c.PostAttempts <= 0 {
		c.PostAttempts = 3
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent()
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Worker runs the queue loop of one RunPod serverless worker.
type Worker struct {
	cfg Config
	h   Handler
	c   *client
	log *slog.Logger

	mu      sync.Mutex
	running map[string]*runningJob
}

type runningJob struct {
	cancel  context.CancelCauseFunc
	stopped bool
}

// New returns a worker for cfg and h, or an error naming a missing setting.
func New(cfg Config, h Handler) (*Worker, error) {
	switch {
	case cfg.GetJobURL == "":
		return nil, errors.New("worker: the job-take URL (RUNPOD_WEBHOOK_GET_JOB) is not set")
	case cfg.PostOutputURL == "":
		return nil, errors.New("worker: the job-done URL (RUNPOD_WEBHOOK_POST_OUTPUT) is not set")
	case cfg.WorkerID == "":
		return nil, errors.New("worker: the worker id (RUNPOD_POD_ID) is not set")
	case h == nil:
		return nil, errors.New("worker: no handler")
	}
	cfg.defaults()
	return &Worker{
		cfg:     cfg,
		h:       h,
		c:       &client{http: cfg.HTTPClient, apiKey: cfg.APIKey, userAgent: cfg.UserAgent},
		log:     cfg.Logger,
		running: map[string]*runningJob{},
	}, nil
}

// errStopPod ends Run after a result asked for the worker's replacement.
var errStopPod = errors.New("stop pod requested")

// Run runs the worker until ctx is cancelled (SIGTERM): heartbeat from the start, readiness,
// then job-take and job-stop long polls. When ctx is cancelled it stops taking jobs, lets the
// job in hand finish (or fails it after ShutdownGrace), posts its result and returns nil. A
// handler that is not ready is reported to the platform as unhealthy and returned as an error.
func (w *Worker) Run(ctx context.Context) error {
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() {
		stopBG()
		wg.Wait()
	}()
	if w.cfg.PingURL != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.heartbeat(bg)
		}()
	}
	w.log.Info("worker starting", "worker_id", w.cfg.WorkerID)
	if err := w.h.Ready(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		w.reportUnhealthy(bg, "handler_ready", err.Error())
		return fmt.Errorf("worker not ready: %w", err)
	}
	w.log.Info("worker ready")
	if st := stopTemplate(w.cfg.GetJobURL); st != "" && !w.cfg.DisableStop {
		// The stop poll runs until Run returns, so a job in hand during the shutdown grace
		// can still be stopped.
		pctx, cancelPoll := context.WithCancel(bg)
		defer cancelPoll() // runs before the wg.Wait deferred above
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.stopPoll(pctx, st)
		}()
	}
	for ctx.Err() == nil {
		jobs := w.take(ctx)
		for i, job := range jobs {
			if ctx.Err() != nil {
				for _, rest := range jobs[i:] {
					w.postFinal(bg, rest, Result{Error: "worker shutting down before the job started; submit it again"}, nil)
				}
				break
			}
			if err := w.runJob(ctx, job); errors.Is(err, errStopPod) {
				for _, rest := range jobs[i+1:] {
					w.postFinal(bg, rest, Result{Error: "worker being replaced before the job started; submit it again"}, nil)
				}
				w.log.Info("worker replacement requested; exiting")
				return nil
			}
		}
		if len(jobs) > 0 && ctx.Err() == nil {
			// Ready again before the next take: a handler whose backend crashed restarts it
			// now rather than inside the next job. A failure here is not fatal: the next job
			// tries again and reports the cause.
			if err := w.h.Ready(ctx); err != nil && ctx.Err() == nil {
				w.log.Error("handler not ready after a job", "err", err)
			}
		}
	}
	w.log.Info("worker stopped")
	return nil
}

// take does one job-take long poll and returns the jobs it got (none on every "no job").
func (w *Worker) take(ctx context.Context) []*Job {
	u := appendQuery(expandTemplate(w.cfg.GetJobURL, w.cfg.WorkerID, w.cfg.WorkerID), "job_in_progress="+w.inProgressFlag())
	rctx, cancel := context.WithTimeout(ctx, w.cfg.TakeTimeout)
	defer cancel()
	resp, err := w.c.get(rctx, u)
	if err != nil {
		if ctx.Err() == nil && rctx.Err() == nil {
			w.log.Warn("job-take failed", "err", err)
			sleepCtx(ctx, w.cfg.ErrorBackoff)
		}
		return nil
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNoContent, resp.StatusCode == http.StatusBadRequest:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests:
		w.log.Warn("job-take rate limited (429)", "sleep", w.cfg.TooManyRequestsDelay)
		sleepCtx(ctx, w.cfg.TooManyRequestsDelay)
		return nil
	case resp.StatusCode != http.StatusOK:
		body, _ := readBody(resp, 1024)
		w.log.Warn("job-take failed", "status", resp.StatusCode, "body", string(bytes.TrimSpace(body)))
		sleepCtx(ctx, w.cfg.ErrorBackoff)
		return nil
	}
	body, err := readBody(resp, 0)
	if err != nil {
		w.log.Warn("job-take: reading body", "err", err)
		return nil
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 || !isJSONContentType(resp.Header.Get("Content-Type")) {
		return nil
	}
	var raws []json.RawMessage
	if body[0] == '[' {
		if err := json.Unmarshal(body, &raws); err != nil {
			w.log.Warn("job-take: bad job array; dropped", "err", err)
			return nil
		}
	} else {
		raws = []json.RawMessage{body}
	}
	var jobs []*Job
	for _, raw := range raws {
		job, err := decodeJob(raw)
		if err != nil {
			w.log.Warn("job-take: job dropped", "err", err)
			continue
		}
		jobs = append(jobs, job)
	}
	return jobs
}

// decodeJob decodes one job object; it must have a string id and an input.
func decodeJob(raw json.RawMessage) (*Job, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("job is not a JSON object: %w", err)
	}
	job := &Job{Fields: fields}
	if err := json.Unmarshal(fields["id"], &job.ID); err != nil || job.ID == "" {
		return nil, errors.New("job has no string id")
	}
	in, ok := fields["input"]
	if !ok {
		return nil, fmt.Errorf("job %s has no input", job.ID)
	}
	job.Input = in
	_ = json.Unmarshal(fields["webhook"], &job.Webhook)
	_ = json.Unmarshal(fields["batchId"], &job.BatchID)
	if s3, ok := fields["s3Config"]; ok && string(s3) != "null" {
		job.S3Config = s3
	}
	return job, nil
}

// runJob runs one job and posts its result, unless the platform stopped it.
func (w *Worker) runJob(ctx context.Context, job *Job) error {
	log := w.log.With("job_id", job.ID)
	if job.BatchID != "" {
		log = log.With("batch_id", job.BatchID)
	}
	jctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	w.mu.Lock()
	rj := &runningJob{cancel: cancel}
	w.running[job.ID] = rj
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.running, job.ID)
		w.mu.Unlock()
	}()

	// Shutdown: let the job run ShutdownGrace more, then cancel it.
	jobDone := make(chan struct{})
	defer close(jobDone)
	go func() {
		select {
		case <-jobDone:
			return
		case <-ctx.Done():
		}
		log.Info("shutdown requested; waiting for the job in hand", "grace", w.cfg.ShutdownGrace)
		t := time.NewTimer(w.cfg.ShutdownGrace)
		defer t.Stop()
		select {
		case <-jobDone:
		case <-t.C:
			cancel(ErrShutdown)
		}
	}()

	pp := newProgressPoster(w, job, log)
	log.Info("job started")
	start := time.Now()
	res, herr := w.safeHandle(jctx, job, pp.report)
	pp.close()

	w.mu.Lock()
	stopped := rj.stopped
	w.mu.Unlock()
	if stopped {
		log.Info("job stopped by the platform; no result posted", "elapsed", time.Since(start).Round(time.Millisecond))
		return nil
	}
	w.postFinal(context.WithoutCancel(ctx), job, res, herr)
	log.Info("job finished", "failed", herr != nil || res.Error != "", "elapsed", time.Since(start).Round(time.Millisecond))
	if res.StopPod {
		return errStopPod
	}
	return nil
}

// safeHandle calls the handler, turning a panic into an error with its stack.
func (w *Worker) safeHandle(ctx context.Context, job *Job, progress ProgressFunc) (res Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: string(debug.Stack())}
		}
	}()
	return w.h.Handle(ctx, job, progress)
}

type panicError struct {
	value any
	stack string
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// postFinal posts a job's final body with retries; a result that cannot be posted is logged
// (the platform will time the job out).
func (w *Worker) postFinal(ctx context.Context, job *Job, res Result, herr error) {
	body, err := w.finalBody(res, herr)
	if err != nil {
		body, _ = w.finalBody(Result{}, fmt.Errorf("encoding the job result: %w", err))
	}
	u := appendQuery(expandTemplate(w.cfg.PostOutputURL, w.cfg.WorkerID, job.ID), "isStream=false")
	if err := w.postWithRetries(ctx, u, job.ID, body, w.cfg.PostAttempts); err != nil {
		w.log.Error("posting the job result failed; the result is lost", "job_id", job.ID, "err", err, "bytes", len(body))
	}
}

// finalBody builds the job-done body of reference section 6.
func (w *Worker) finalBody(res Result, herr error) ([]byte, error) {
	return buildFinalBody(res, herr, w.cfg.Hostname, w.cfg.WorkerID)
}

// doneBody is a job-done body: {"output": ...}, {"error": "...", "output"?: ...}, or the
// SDK's exception body, whose "error" is an exceptionReport as JSON text; stopPod asks for
// the worker's replacement. Fields are in the order the bodies have always had.
type doneBody struct {
	Error   string `json:"error,omitzero"`
	Output  any    `json:"output,omitzero"`
	StopPod bool   `json:"stopPod,omitzero"`
}

// exceptionReport is what the SDK posts for an uncaught exception (here: an error returned
// by the handler, or a panic), as the JSON text of the body's "error".
type exceptionReport struct {
	ErrorMessage   string `json:"error_message"`
	ErrorTraceback string `json:"error_traceback"`
	ErrorType      string `json:"error_type"`
	Hostname       string `json:"hostname"`
	RunpodVersion  string `json:"runpod_version"`
	WorkerID       string `json:"worker_id"`
}

// progressBody is a progress post.
type progressBody struct {
	Output any    `json:"output"`
	Status string `json:"status"` // IN_PROGRESS
}

// makeDoneBody is the job-done body of a handler's result, or of its error.
func makeDoneBody(res Result, herr error, hostname, workerID string) (doneBody, error) {
	var body doneBody
	switch {
	case herr != nil:
		exc := exceptionReport{
			ErrorType:     fmt.Sprintf("%T", herr),
			ErrorMessage:  herr.Error(),
			Hostname:      hostname,
			WorkerID:      workerID,
			RunpodVersion: SDKVersion,
		}
		var pe *panicError
		if errors.As(herr, &pe) {
			exc.ErrorType = "panic"
			exc.ErrorTraceback = pe.stack
		}
		text, err := marshalBody(exc)
		if err != nil {
			return body, err
		}
		body.Error = string(text)
	case res.Error != "":
		body.Error = res.Error
		if !emptyJSON(res.Output) {
			body.Output = res.Output
		}
	default:
		body.Output = res.Output
		if body.Output == nil {
			body.Output = struct{}{}
		}
	}
	body.StopPod = res.StopPod
	return body, nil
}

func buildFinalBody(res Result, herr error, hostname, workerID string) ([]byte, error) {
	body, err := makeDoneBody(res, herr, hostname, workerID)
	if err != nil {
		return nil, err
	}
	return marshalBody(body)
}

// EncodeResult returns the job-done body the worker posts for res, e.g. for a handler that
// compares its size with the platform's limit on results.
func EncodeResult(res Result) ([]byte, error) {
	return buildFinalBody(res, nil, "", "")
}

// emptyJSON reports whether v encodes as null, {} or [].
func emptyJSON(v any) bool {
	if v == nil {
		return true
	}
	b, err := json.Marshal(v)
	if err != nil {
		return false
	}
	s := string(bytes.TrimSpace(b))
	return s == "null" || s == "{}" || s == "[]"
}

// postWithRetries posts body up to attempts times, retrying network errors and 5xx after a
// Fibonacci backoff. ctx ends the backoff; each attempt has its own PostTimeout deadline so
// an attempt in flight completes.
func (w *Worker) postWithRetries(ctx context.Context, u, jobID string, body []byte, attempts int) error {
	a, b := w.cfg.RetryBackoff, w.cfg.RetryBackoff
	var err error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			if !sleepCtx(ctx, a) {
				return fmt.Errorf("%w (gave up: %v)", err, context.Cause(ctx))
			}
			a, b = b, a+b
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.PostTimeout)
		err = w.c.postJSON(actx, u, jobID, body)
		cancel()
		if err == nil || !retryable(err) {
			return err
		}
		w.log.Warn("post failed", "job_id", jobID, "attempt", i+1, "err", err)
	}
	return err
}

// inProgress returns the ids of the jobs in progress, sorted.
func (w *Worker) inProgress() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := make([]string, 0, len(w.running))
	for id := range w.running {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (w *Worker) inProgressFlag() string {
	if len(w.inProgress()) > 0 {
		return "1"
	}
	return "0"
}

// heartbeat pings every PingInterval, busy or idle, until ctx ends.
func (w *Worker) heartbeat(ctx context.Context) {
	for {
		w.ping(ctx, w.inProgress())
		if !sleepCtx(ctx, w.cfg.PingInterval) {
			return
		}
	}
}

// ping sends one heartbeat, retrying 429 and 5xx up to three times within 2 × PingInterval.
func (w *Worker) ping(ctx context.Context, ids []string) {
	u := appendQuery(expandTemplate(w.cfg.PingURL, w.cfg.WorkerID, w.cfg.WorkerID), pingQuery(ids))
	pctx, cancel := context.WithTimeout(ctx, 2*w.cfg.PingInterval)
	defer cancel()
	backoff := w.cfg.RetryBackoff
	for attempt := 0; ; attempt++ {
		resp, err := w.c.get(pctx, u)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("heartbeat failed", "err", err)
			}
			return
		}
		readBody(resp, 1024)
		resp.Body.Close()
		s := resp.StatusCode
		if s/100 == 2 {
			return
		}
		if attempt >= 3 || !(s == http.StatusTooManyRequests || s == 500 || s == 502 || s == 503 || s == 504) {
			w.log.Warn("heartbeat failed", "status", s)
			return
		}
		if !sleepCtx(pctx, backoff) {
			return
		}
		backoff *= 2
	}
}

// reportUnhealthy sends the one unhealthy ping of SDK 1.11.0 (2 s timeout).
func (w *Worker) reportUnhealthy(ctx context.Context, check, reason string) {
	if w.cfg.PingURL == "" {
		return
	}
	if len(reason) > 256 {
		reason = reason[:256]
	}
	q := "status=unhealthy&check=" + url.QueryEscape(check) + "&reason=" + url.QueryEscape(reason) + "&runpod_version=" + url.QueryEscape(SDKVersion)
	u := appendQuery(expandTemplate(w.cfg.PingURL, w.cfg.WorkerID, w.cfg.WorkerID), q)
	uctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := w.c.get(uctx, u)
	if err != nil {
		w.log.Warn("unhealthy report failed", "err", err)
		return
	}
	resp.Body.Close()
}

// stopPoll long-polls job-stop until ctx ends and stops the listed jobs in progress.
func (w *Worker) stopPoll(ctx context.Context, tmpl string) {
	u := expandTemplate(tmpl, w.cfg.WorkerID, w.cfg.WorkerID)
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, w.cfg.TakeTimeout)
		resp, err := w.c.get(rctx, u)
		if err != nil {
			timedOut := rctx.Err() != nil
			cancel()
			if ctx.Err() == nil && !timedOut {
				w.log.Warn("job-stop poll failed", "err", err)
				sleepCtx(ctx, w.cfg.ErrorBackoff)
			}
			continue
		}
		body, rerr := readBody(resp, 1<<20)
		resp.Body.Close()
		cancel()
		switch {
		case resp.StatusCode == http.StatusNoContent:
		case resp.StatusCode == http.StatusTooManyRequests:
			sleepCtx(ctx, w.cfg.TooManyRequestsDelay)
		case resp.StatusCode == http.StatusOK && rerr == nil && isJSONContentType(resp.Header.Get("Content-Type")):
			var msg struct {
				JobsToStop []string `json:"jobsToStop"`
			}
			if err := json.Unmarshal(body, &msg); err != nil {
				w.log.Warn("job-stop: bad body", "err", err)
				sleepCtx(ctx, w.cfg.ErrorBackoff)
				continue
			}
			for _, id := range msg.JobsToStop {
				w.stopJob(id)
			}
		default:
			sleepCtx(ctx, w.cfg.ErrorBackoff)
		}
	}
}

// stopJob cancels the job id if it is in progress; it reports whether it was.
func (w *Worker) stopJob(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	rj, ok := w.running[id]
	if !ok {
		return false
	}
	w.log.Info("stopping job at the platform's request", "job_id", id)
	rj.stopped = true
	rj.cancel(ErrJobStopped)
	return true
}

// progressPoster posts a job's latest progress, at most once per ProgressInterval, without
// blocking the handler.
type progressPoster struct {
	w      *Worker
	job    *Job
	log    *slog.Logger
	mu     sync.Mutex
	latest any
	has    bool
	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

func newProgressPoster(w *Worker, job *Job, log *slog.Logger) *progressPoster {
	ctx, cancel := context.WithCancel(context.Background())
	p := &progressPoster{w: w, job: job, log: log, kick: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go p.loop(ctx)
	return p
}

func (p *progressPoster) report(v any) {
	p.mu.Lock()
	p.latest, p.has = v, true
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// close stops posting and waits for a post in flight, so the final result comes last.
func (p *progressPoster) close() {
	p.cancel()
	<-p.done
}

func (p *progressPoster) loop(ctx context.Context) {
	defer close(p.done)
	u := appendQuery(expandTemplate(p.w.cfg.PostOutputURL, p.w.cfg.WorkerID, p.job.ID), "isStream=false")
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		}
		if !last.IsZero() {
			if !sleepCtx(ctx, time.Until(last.Add(p.w.cfg.ProgressInterval))) {
				return
			}
		}
		p.mu.Lock()
		v, has := p.latest, p.has
		p.has = false
		p.mu.Unlock()
		if !has {
			continue
		}
		body, err := marshalBody(progressBody{Status: "IN_PROGRESS", Output: v})
		if err != nil {
			p.log.Warn("progress not encodable", "err", err)
			continue
		}
		last = time.Now()
		if err := p.w.postWithRetries(ctx, u, p.job.ID, body, p.w.cfg.PostAttempts); err != nil && ctx.Err() == nil {
			p.log.Warn("progress post failed", "err", err)
		}
	}
}
