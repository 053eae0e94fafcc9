package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/runpod-comfy/runpod-comfy/internal/layout"
	"github.com/runpod-comfy/runpod-comfy/internal/netguard"
	"github.com/runpod-comfy/runpod-comfy/runner"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// DefaultResponseLimit is the default limit of a job-done body: well under the 10 MB the
// platform documents for /run and the ~20 MB at which it rejects results.
const DefaultResponseLimit = 9 << 20

// ComfyOptions configure a ComfyHandler. cmd fills them from flags and environment.
type ComfyOptions struct {
	// Root is ROOT (the volume).
	Root string
	// Store is the store under Root, used for runtime roots and temporary roots.
	Store *store.Store
	// DefaultVersion is the version of jobs without version_id (COMFY_VERSION_NAME or
	// --version-id). When set, Ready starts it before the first job is taken.
	DefaultVersion string
	// Build, when set, builds a version that is not built yet (--build-missing); without it
	// such a job fails with an error saying how to build it.
	Build func(ctx context.Context, versionID string) error
	// StateBase is the parent of the per-version state dirs, <StateBase>/comfy-<id>. The
	// worker clears their input, output and temp dirs after each job, so it must be private
	// to this worker (default: a directory under os.TempDir(), on the container disk).
	StateBase string
	// OutputMode is the default output mode (OUTPUT_MODE): base64 (default), gcs or s3, a
	// name in runner's sink registry that returns or uploads.
	OutputMode string
	// GCS is the default GCS destination (GCS_BUCKET, GCS_PREFIX, credentials); a job's
	// gcs_bucket and gcs_prefix override Bucket and Prefix.
	GCS runner.GCSOptions
	// S3 is the S3-compatible destination (BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID,
	// BUCKET_SECRET_ACCESS_KEY ...); empty Endpoint means none. Objects go under
	// <prefix>/<job id>/.
	S3 runner.S3Options
	// ResponseLimit is the largest job-done body; larger base64 results are uploaded to GCS
	// when a bucket is known, else to S3 when configured, else fail. Default
	// DefaultResponseLimit.
	ResponseLimit int
	// JobTimeout is the deadline of a job without timeout_s; 0 means none.
	JobTimeout time.Duration
	// ComfyOrgAPIKey is the default Comfy.org API key (COMFY_ORG_API_KEY).
	ComfyOrgAPIKey string
	// ResultFormat is the default result format of jobs (RUNPOD_COMFY_RESULT_FORMAT):
	// ResultDefault, or ResultSeed to add the seed tool's output fields.
	ResultFormat string
	// Env, BaseEnv, ExtraArgs, ModelsDir, ReadyTimeout and StopTimeout are passed to
	// runner.Start.
	Env          map[string]string
	BaseEnv      []string
	ExtraArgs    []string
	ModelsDir    string
	ReadyTimeout time.Duration
	StopTimeout  time.Duration
	// ComfyLog receives ComfyUI's output (default: discarded; its tail is kept either way).
	ComfyLog io.Writer
	// LogTailLines is the number of ComfyUI log lines put into a crash error; default 40.
	LogTailLines int
	// RefreshWorker asks RunPod to replace the worker after every job, so each job starts on
	// a clean machine (worker-comfyui's REFRESH_WORKER).
	RefreshWorker bool
	// LogLevel is ComfyUI's --verbose level (worker-comfyui's COMFY_LOG_LEVEL); empty leaves
	// ComfyUI's default (INFO).
	LogLevel string
	// UnreachableTimeout is how long ComfyUI may stop answering during a job (its WebSocket
	// gone and /history failing) before the job fails; default 10 s. worker-comfyui's
	// WEBSOCKET_RECONNECT_ATTEMPTS x WEBSOCKET_RECONNECT_DELAY_S set it.
	UnreachableTimeout time.Duration
	// TraceWebSocket logs every WebSocket frame from ComfyUI (worker-comfyui's
	// WEBSOCKET_TRACE).
	TraceWebSocket bool
	// HTTPClient fetches a job's workflow_url and image URLs. The default,
	// netguard.NewClient(false), refuses loopback, link-local (the cloud metadata service) and
	// private addresses; cmd passes netguard.NewClient(true) when the worker allows them.
	HTTPClient *http.Client
	// Logger receives the handler's log lines; default slog.Default().
	Logger *slog.Logger
}

// ComfyHandler is the Handler that runs ComfyUI workflows from runtime roots. One ComfyUI
// process is kept warm between jobs; a job for another version (or for a version whose root
// was rebuilt) restarts it from that root. While a root is in use a temporary store root
// keeps GC on other machines from deleting it.
type ComfyHandler struct {
	o   ComfyOptions
	log *slog.Logger

	life   context.Context // ends with Close; ComfyUI processes live in it
	cancel context.CancelFunc

	mu       sync.Mutex // one job at a time; guards the fields below
	proc     *runner.Process
	version  string
	rootPath store.Path
	// lastVersion is the version of the last start, kept after a crash so Ready restarts it.
	lastVersion   string
	saidNoDefault bool
	// okRoots are the roots ComfyUI started from on this worker.
	okRoots  map[store.Path]bool
	tempRoot *store.TempRoot
	started  time.Duration // how long the last start took
}

var _ Handler = (*ComfyHandler)(nil)

// NewComfyHandler returns a handler; call Close to stop ComfyUI.
func NewComfyHandler(o ComfyOptions) (*ComfyHandler, error) {
	if o.Root == "" || o.Store == nil {
		return nil, errors.New("comfy handler: Root and Store are required")
	}
	if o.OutputMode == "" {
		o.OutputMode = OutputBase64
	}
	if _, err := outputKind(o.OutputMode); err != nil {
		return nil, fmt.Errorf("output mode: %w", err)
	}
	if o.StateBase == "" {
		o.StateBase = filepath.Join(os.TempDir(), "runpod-comfy-worker", "state")
	}
	if o.ResponseLimit <= 0 {
		o.ResponseLimit = DefaultResponseLimit
	}
	if o.LogTailLines <= 0 {
		o.LogTailLines = 40
	}
	if o.HTTPClient == nil {
		o.HTTPClient = netguard.NewClient(false)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	life, cancel := context.WithCancel(context.Background())
	return &ComfyHandler{o: o, log: o.Logger, life: life, cancel: cancel}, nil
}

// Ready makes ComfyUI ready before a job is taken: the version in use (restarted if it
// crashed), else the default version, if any.
func (h *ComfyHandler) Ready(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	version := h.lastVersion
	if version == "" {
		version = h.o.DefaultVersion
	}
	if version == "" {
		if !h.saidNoDefault {
			h.log.Info("no default version: ComfyUI starts with the first job's version_id")
			h.saidNoDefault = true
		}
		return nil
	}
	_, err := h.ensure(ctx, version)
	return err
}

// Close stops ComfyUI and releases the temporary root.
func (h *ComfyHandler) Close(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	err := h.stopLocked(ctx)
	h.cancel()
	return err
}

func (h *ComfyHandler) stopLocked(ctx context.Context) error {
	var err error
	if h.proc != nil {
		err = h.proc.Stop(ctx)
		h.proc = nil
	}
	if h.tempRoot != nil {
		if cerr := h.tempRoot.Close(); err == nil {
			err = cerr
		}
		h.tempRoot = nil
	}
	h.version, h.rootPath = "", store.Path{}
	return err
}

// NotBuiltError is a job for a version that has no runtime root on the volume.
type NotBuiltError struct {
	Version string
	Link    string
}

func (e *NotBuiltError) Error() string {
	return fmt.Sprintf("version %q is not built on this volume (%s does not exist): build it on a pod with `runpod-comfy build %s` (same volume), or start the worker with --build-missing", e.Version, e.Link, e.Version)
}

// brokenWorkerError is a ComfyUI that no longer starts from a root it started from before on
// this worker: the machine, not the version, is at fault (GPU, disk), so the worker asks to be
// replaced.
type brokenWorkerError struct{ err error }

func (e *brokenWorkerError) Error() string {
	return e.err.Error() + "; it started from this root before on this worker, so the worker asks RunPod to replace it"
}

func (e *brokenWorkerError) Unwrap() error { return e.err }

// ensure returns a running ComfyUI for version, starting or switching as needed. h.mu is held.
func (h *ComfyHandler) ensure(ctx context.Context, version string) (*runner.Process, error) {
	// After Close nothing may start ComfyUI or take a temporary root again: the worker loop's
	// Ready can run just after Close, and would otherwise leave a root nobody closes.
	if err := h.life.Err(); err != nil {
		return nil, fmt.Errorf("the handler is closed: %w", err)
	}
	if err := store.ValidateRootID(version); err != nil {
		return nil, &InputError{Field: "version_id", Err: err}
	}
	rp, err := h.o.Store.RootOf(version)
	if errors.Is(err, store.ErrNoRoot) && h.o.Build != nil {
		h.log.Info("building a missing version (--build-missing)", "version", version)
		if berr := h.o.Build(ctx, version); berr != nil {
			return nil, fmt.Errorf("building version %s: %w", version, berr)
		}
		rp, err = h.o.Store.RootOf(version)
	}
	if errors.Is(err, store.ErrNoRoot) {
		return nil, &NotBuiltError{Version: version, Link: h.o.Store.RootLink(version)}
	}
	if err != nil {
		return nil, fmt.Errorf("reading the root of version %s: %w", version, err)
	}
	if h.proc != nil && h.version == version && h.rootPath == rp {
		if err := h.alive(ctx, h.proc); err == nil {
			return h.proc, nil
		} else {
			h.log.Warn("ComfyUI is not answering; restarting it", "version", version, "err", err)
		}
	}
	if h.proc != nil {
		h.log.Info("switching ComfyUI", "from", h.version, "to", version)
	}
	if err := h.stopLocked(context.WithoutCancel(ctx)); err != nil { // a job deadline must not cut a stop short
		h.log.Warn("stopping ComfyUI", "err", err)
	}
	tr, err := h.o.Store.AddTempRoot(h.life, []store.Path{rp})
	if err != nil {
		return nil, fmt.Errorf("rooting version %s: %w", version, err)
	}
	if !h.o.Store.Valid(rp) {
		tr.Close()
		return nil, fmt.Errorf("version %s: its root %s is not a valid store object (deleted by GC or half-built); rebuild it", version, rp)
	}
	start := time.Now()
	proc, err := runner.Start(h.life, runner.StartOptions{
		RuntimeRoot:  h.o.Store.Abs(rp),
		StateDir:     layout.StateUnder(h.o.StateBase, version),
		Env:          h.o.Env,
		BaseEnv:      h.o.BaseEnv,
		ExtraArgs:    h.o.ExtraArgs,
		ModelsDir:    h.o.ModelsDir,
		Log:          h.o.ComfyLog,
		ReadyTimeout: h.o.ReadyTimeout,
		LogLevel:     h.o.LogLevel,
		StopTimeout:  h.o.StopTimeout,
	})
	if err != nil {
		tr.Close()
		err = fmt.Errorf("starting ComfyUI for version %s: %w", version, err)
		if h.okRoots[rp] {
			return nil, &brokenWorkerError{err: err}
		}
		return nil, err
	}
	if h.okRoots == nil {
		h.okRoots = map[store.Path]bool{}
	}
	h.okRoots[rp] = true
	h.started = time.Since(start)
	h.proc, h.version, h.rootPath, h.tempRoot = proc, version, rp, tr
	h.lastVersion = version
	h.log.Info("ComfyUI ready", "version", version, "root", rp.String(), "url", proc.URL(), "start", h.started.Round(time.Millisecond))
	return proc, nil
}

// alive checks that a warm ComfyUI still runs and answers.
func (h *ComfyHandler) alive(ctx context.Context, proc *runner.Process) error {
	select {
	case <-proc.Exited():
		return fmt.Errorf("exited: %v", proc.ExitErr())
	default:
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return proc.Client().Ready(rctx)
}

// crashed reports whether proc exited, waiting a moment for the exit to be seen: a crash
// during a request shows first as a broken connection.
func crashed(proc *runner.Process, wait time.Duration) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-proc.Exited():
		return true
	case <-t.C:
		return false
	}
}

// Handle runs one job: parse the input, make ComfyUI ready for its version, run the workflow,
// deliver every output as base64 or GCS URLs, and clean the state dirs.
// With RefreshWorker every result asks for the worker's replacement.
func (h *ComfyHandler) Handle(ctx context.Context, job *Job, progress ProgressFunc) (Result, error) {
	res, err := h.handle(ctx, job, progress)
	if h.o.RefreshWorker {
		res.StopPod = true
	}
	return res, err
}

// client returns a client for proc tuned by the options.
func (h *ComfyHandler) client(proc *runner.Process, jobID string) *runner.Client {
	c := proc.Client()
	if h.o.UnreachableTimeout > 0 {
		c.MaxPollFailures = max(1, int((h.o.UnreachableTimeout+c.PollInterval-1)/c.PollInterval))
	}
	if h.o.TraceWebSocket {
		log := h.log.With("job_id", jobID)
		c.Trace = func(binary bool, frame []byte) {
			if binary {
				log.Info("websocket frame", "binary_bytes", len(frame))
				return
			}
			log.Info("websocket frame", "text", truncateText(string(frame), 2048))
		}
	}
	return c
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("... (%d bytes)", len(s))
}

func (h *ComfyHandler) handle(ctx context.Context, job *Job, progress ProgressFunc) (Result, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t0 := time.Now()
	timings := map[string]int64{}
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	fail := func(msg string, extra map[string]any) Result {
		out := map[string]any{}
		for k, v := range extra {
			out[k] = v
		}
		timings["total_ms"] = ms(time.Since(t0))
		out["timings"] = timings
		return Result{Error: msg, Output: out}
	}

	in, warnings, err := ParseInput(job.Input)
	if err != nil {
		return fail(err.Error(), nil), nil
	}
	version := in.VersionID
	if version == "" {
		version = h.o.DefaultVersion
	}
	if version == "" {
		return fail("invalid input: version_id: missing, and the worker has no default version (set COMFY_VERSION_NAME or --version-id)", nil), nil
	}
	base := map[string]any{"version_id": version}
	mode := in.OutputMode
	if mode == "" {
		mode = h.o.OutputMode
	}
	gcsOpts := h.o.GCS
	if in.GCSBucket != "" {
		gcsOpts.Bucket = in.GCSBucket
	}
	if in.GCSPrefix != "" {
		gcsOpts.Prefix = in.GCSPrefix
	}
	format := in.ResultFormat
	if format == "" {
		format = h.o.ResultFormat
	}
	if format == ResultSeed && gcsOpts.Prefix == "" {
		gcsOpts.Prefix = seedGCSPrefix // the seed tool's default
	}
	sinks := runner.SinkConfig{GCS: gcsOpts, S3: h.o.S3}
	sinks.S3.Validate = false // once at start (cmd), not per job
	kind, err := outputKind(mode)
	if err == nil {
		err = kind.Check(sinks)
	}
	if err != nil {
		// Before anything runs: a job whose outputs cannot be delivered is not started.
		return fail(fmt.Sprintf("invalid input: output_mode %s: %v", mode, err), base), nil
	}

	// Deadline: timeout_s, else the worker's default.
	timeout := h.o.JobTimeout
	if in.TimeoutS > 0 {
		timeout = time.Duration(in.TimeoutS * float64(time.Second))
	}
	jctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		jctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	// An uploading sink (gcs, s3) is opened before the workflow runs: credentials, bucket
	// name and URL signing are checked now, so that a job that could not deliver fails before
	// it uses the GPU.
	var pre runner.Sink
	if !kind.Returned {
		if pre, err = kind.Open(jctx, sinks); err != nil {
			return fail(fmt.Sprintf("output_mode %s: %v", mode, err), base), nil
		}
		defer runner.CloseSink(pre)
	}

	ts := time.Now()
	proc, err := h.ensure(jctx, version)
	timings["comfy_ready_ms"] = ms(time.Since(ts))
	if err != nil {
		res := fail(err.Error(), base)
		var be *brokenWorkerError
		res.StopPod = errors.As(err, &be)
		return res, nil
	}
	defer h.cleanState(proc)

	workflow := in.Workflow
	if workflow == nil {
		tw := time.Now()
		workflow, err = fetchWorkflow(jctx, h.o.HTTPClient, in.WorkflowURL)
		timings["workflow_fetch_ms"] = ms(time.Since(tw))
		if err != nil {
			return fail(err.Error(), base), nil
		}
	}
	var images []runner.InputImage
	for _, img := range in.allImages() {
		images = append(images, runner.InputImage{Name: img.Name, Image: img.Image})
	}
	apiKey := in.ComfyOrgAPIKey
	if apiKey == "" {
		apiKey = h.o.ComfyOrgAPIKey
	}
	var extra map[string]any
	if apiKey != "" {
		extra = map[string]any{"api_key_comfy_org": apiKey}
	}

	tr := time.Now()
	res, err := h.client(proc, job.ID).Run(jctx, workflow, runner.RunOptions{
		Images:    images,
		ImageHTTP: h.o.HTTPClient,
		ExtraData: extra,
		Exited:    proc.Exited(),
		Progress: func(p runner.Progress) {
			progress(progressOutput(version, p))
		},
	})
	timings["run_ms"] = ms(time.Since(tr))
	if res != nil && res.PromptID != "" {
		base["prompt_id"] = res.PromptID
	}
	if err != nil {
		return h.runFailure(jctx, ctx, proc, err, timeout, base, fail), nil
	}
	base["prompt_id"] = res.PromptID

	// Deliver: as asked, and uploaded when base64 would be too large.
	to := time.Now()
	out, err := h.deliver(jctx, kind, sinks, pre, job.ID, res.Outputs, warnings)
	timings["outputs_ms"] = ms(time.Since(to))
	if err != nil {
		var te *tooLargeError
		if errors.As(err, &te) {
			meta := map[string]any{"outputs": te.outputs}
			for k, v := range base {
				meta[k] = v
			}
			return fail(err.Error(), meta), nil
		}
		return fail("delivering outputs: "+err.Error(), base), nil
	}
	out.VersionID, out.PromptID = version, res.PromptID
	if format == ResultSeed {
		out.SeedOutput = seedOutput(out.OutputMode, res.Outputs, gcsOpts.Public)
	}
	timings["total_ms"] = ms(time.Since(t0))
	out.Timings = timings
	return Result{Output: out}, nil
}

// runFailure turns a failed run into a job failure with details, restarting ComfyUI in the
// background when it crashed.
func (h *ComfyHandler) runFailure(jctx, ctx context.Context, proc *runner.Process, err error, timeout time.Duration, base map[string]any, fail func(string, map[string]any) Result) Result {
	details := map[string]any{}
	for k, v := range base {
		details[k] = v
	}
	var ve *runner.ValidationError
	var ee *runner.ExecutionError
	var we *runner.WorkflowError
	switch {
	case errors.As(err, &ve):
		details["details"] = validationDetails(ve)
		details["node_errors"] = ve.Nodes
		return fail(err.Error(), details)
	case errors.As(err, &ee):
		details["details"] = []string{ee.Error()}
		details["execution_error"] = ee
		return fail(err.Error(), details)
	case errors.As(err, &we):
		return fail("invalid input: "+err.Error(), details)
	case errors.Is(err, runner.ErrComfyExited) || (ctx.Err() == nil && jctx.Err() == nil && crashed(proc, 2*time.Second)):
		tail := proc.LogTail(h.o.LogTailLines)
		details["details"] = []string{fmt.Sprintf("ComfyUI exited: %v", proc.ExitErr())}
		details["log_tail"] = tail
		h.log.Error("ComfyUI crashed during a job; it is restarted for the next job", "version", h.version, "exit", proc.ExitErr())
		h.stopLocked(context.Background())
		return fail(fmt.Sprintf("ComfyUI exited during the job (%v); it is restarted for the next job. Last lines of its log:\n%s", proc.ExitErr(), strings.Join(tail, "\n")), details)
	case errors.Is(context.Cause(ctx), ErrJobStopped):
		return fail("job stopped by the platform; ComfyUI was interrupted", details)
	case errors.Is(context.Cause(ctx), ErrShutdown):
		return fail("worker shutting down; ComfyUI was interrupted", details)
	case errors.Is(jctx.Err(), context.DeadlineExceeded):
		return fail(fmt.Sprintf("job timed out after %s; ComfyUI was interrupted", timeout), details)
	case errors.Is(err, runner.ErrInterrupted):
		return fail("the job was interrupted in ComfyUI", details)
	}
	return fail(err.Error(), details)
}

// validationDetails lists a refused prompt's errors worker-comfyui's way: one line per node
// error, "Node <id> (<type>): <message>: <details>".
func validationDetails(ve *runner.ValidationError) []string {
	var out []string
	ids := make([]string, 0, len(ve.Nodes))
	for id := range ve.Nodes {
		ids = append(ids, id)
	}
	sortIDs(ids)
	for _, id := range ids {
		n := ve.Nodes[id]
		for _, e := range n.Errors {
			line := fmt.Sprintf("Node %s (%s): %s", id, n.ClassType, e.Message)
			if e.Details != "" {
				line += ": " + e.Details
			}
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		msg := ve.Message
		if ve.Details != "" {
			msg += ": " + ve.Details
		}
		out = append(out, msg)
	}
	return out
}

// sortIDs sorts node ids numerically when they are numbers.
func sortIDs(ids []string) {
	less := func(a, b string) bool {
		if len(a) != len(b) && allDigits(a) && allDigits(b) {
			return len(a) < len(b)
		}
		return a < b
	}
	for i := 1; i < len(ids); i++ {
		for j := i; j > 0 && less(ids[j], ids[j-1]); j-- {
			ids[j], ids[j-1] = ids[j-1], ids[j]
		}
	}
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// progressOutput is the progress a job reports: worker-comfyui PR #221's shape plus the
// node type, node counts, prompt and version.
func progressOutput(version string, p runner.Progress) map[string]any {
	m := map[string]any{
		"type":       "progress",
		"event":      p.Event,
		"node":       p.NodeID,
		"node_type":  p.NodeType,
		"value":      p.Value,
		"max":        p.Max,
		"prompt_id":  p.PromptID,
		"version_id": version,
	}
	if p.Max > 0 {
		m["percent"] = p.Value * 100 / p.Max
	}
	if p.Total > 0 {
		m["nodes_done"] = p.Done
		m["nodes_total"] = p.Total
	}
	return m
}

// OutputFile is one entry of a job's "outputs": every file or text the workflow produced.
type OutputFile struct {
	NodeID    string `json:"node_id"`
	Kind      string `json:"kind"` // image, video, audio, text, file
	Filename  string `json:"filename,omitempty"`
	Subfolder string `json:"subfolder,omitempty"`
	Type      string `json:"type"` // output, temp or text
	Mime      string `json:"mime,omitempty"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256,omitempty"`
	Text      string `json:"text,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

// CompatImage is one entry of worker-comfyui's "images" list: type "base64" with the data,
// or "s3_url" with a URL in data (an S3 pre-signed URL, or a GCS URL: the type is kept for
// worker-comfyui's clients).
type CompatImage struct {
	Filename string `json:"filename"`
	Type     string `json:"type"`
	Data     string `json:"data"`
}

// JobOutput is a successful job's output: "outputs" (everything), worker-comfyui's "images"
// (saved images and videos, not temp previews), the sink used, and what ran.
type JobOutput struct {
	Outputs    []OutputFile  `json:"outputs"`
	Images     []CompatImage `json:"images"`
	OutputMode string        `json:"output_mode"`
	VersionID  string        `json:"version_id"`
	PromptID   string        `json:"prompt_id"`
	// Status is "success_no_images" when no image or video was saved, as worker-comfyui.
	Status string `json:"status,omitempty"`
	// Errors are warnings (unused input fields, an upload instead of base64).
	Errors  []string         `json:"errors,omitempty"`
	Timings map[string]int64 `json:"timings"`
	// SeedOutput holds the seed tool's fields, for result_format seed.
	*SeedOutput
}

// outputKind looks a worker output mode up in runner's sink registry: one that returns the
// content or uploads it (not file: the worker's disk goes with it).
func outputKind(mode string) (runner.SinkKind, error) {
	kind, err := runner.LookupSink(mode)
	if err == nil && kind.Local {
		err = fmt.Errorf("%q writes on the worker's own disk, which nobody can read after the job", mode)
	}
	if err != nil {
		return kind, fmt.Errorf("%w; the worker takes %s", err, workerSinkNames())
	}
	return kind, nil
}

func workerSinkNames() string {
	return runner.SinkNames(func(k runner.SinkKind) bool { return !k.Local })
}

// tooLargeError is a base64 result over the response limit with no bucket to upload to.
type tooLargeError struct {
	size, limit int
	outputs     []OutputFile // without data
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("the result is too large to return: %d bytes (%.1f MB) with the outputs as base64, over the response limit of %d bytes (%.1f MB); set output_mode to gcs with gcs_bucket (or GCS_BUCKET on the worker), or configure S3 on the worker (BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY), to get URLs instead",
		e.size, float64(e.size)/(1<<20), e.limit, float64(e.limit)/(1<<20))
}

// deliver hands the outputs to kind's sink. A returned (base64) result whose body would exceed
// the response limit is uploaded instead, to the first uploading sink that cfg configures.
// pre is kind's sink when it was opened before the run (an uploading kind), else nil.
func (h *ComfyHandler) deliver(ctx context.Context, kind runner.SinkKind, cfg runner.SinkConfig, pre runner.Sink, jobID string, outs []*runner.Output, warnings []string) (*JobOutput, error) {
	if kind.Returned {
		sink, err := kind.Open(ctx, cfg)
		if err != nil {
			return nil, err
		}
		// Put, not Deliver: the bytes stay for an upload when the body is too large.
		for _, o := range outs {
			if err := sink.Put(ctx, o); err != nil {
				return nil, err
			}
		}
		out := buildOutput(outs, warnings, kind.Name)
		body, err := marshalBody(map[string]any{"output": out})
		if err != nil {
			return nil, err
		}
		if len(body) <= h.o.ResponseLimit {
			return out, nil
		}
		up, ok := fallbackSink(cfg)
		if !ok {
			meta := outputFiles(outs)
			for i := range meta {
				meta[i].Data = ""
			}
			return nil, &tooLargeError{size: len(body), limit: h.o.ResponseLimit, outputs: meta}
		}
		h.log.Info("result over the response limit; uploading the outputs", "bytes", len(body), "limit", h.o.ResponseLimit, "to", up.Name)
		warnings = append(warnings, fmt.Sprintf("outputs were %d bytes as base64, over the response limit of %d: uploaded to %s instead", len(body), h.o.ResponseLimit, strings.ToUpper(up.Name)))
		for _, o := range outs {
			o.Data = ""
		}
		kind = up
	}
	sink := pre
	if sink == nil {
		var err error
		if sink, err = kind.Open(ctx, cfg); err != nil {
			return nil, err
		}
		defer runner.CloseSink(sink)
	}
	if err := runner.Deliver(ctx, outs, runner.ForJob(sink, jobID)); err != nil {
		return nil, err
	}
	return buildOutput(outs, warnings, kind.Name), nil
}

// fallbackSink is the first uploading sink, in registry order, that cfg configures.
func fallbackSink(cfg runner.SinkConfig) (runner.SinkKind, bool) {
	for _, k := range runner.SinkKinds() {
		if k.Upload && k.Check(cfg) == nil {
			return k, true
		}
	}
	return runner.SinkKind{}, false
}

func outputFiles(outs []*runner.Output) []OutputFile {
	files := make([]OutputFile, 0, len(outs))
	for _, o := range outs {
		files = append(files, OutputFile{
			NodeID: o.NodeID, Kind: o.Kind, Filename: o.Filename, Subfolder: o.Subfolder, Type: o.Type,
			Mime: o.Mime, Size: o.Size, SHA256: o.SHA256, Text: o.Text, Data: o.Data, URL: o.URL,
		})
	}
	return files
}

// buildOutput is a successful job's output without what ran (version, prompt, timings).
func buildOutput(outs []*runner.Output, warnings []string, mode string) *JobOutput {
	files := outputFiles(outs)
	images := []CompatImage{}
	for _, f := range files {
		if f.Type != "output" || (f.Kind != runner.KindImage && f.Kind != runner.KindVideo) {
			continue
		}
		switch {
		case f.URL != "":
			images = append(images, CompatImage{Filename: f.Filename, Type: "s3_url", Data: f.URL})
		case f.Data != "":
			images = append(images, CompatImage{Filename: f.Filename, Type: "base64", Data: f.Data})
		}
	}
	out := &JobOutput{Outputs: files, Images: images, OutputMode: mode, Errors: warnings}
	if len(images) == 0 {
		out.Status = "success_no_images"
	}
	return out
}

// cleanState empties the input, output and temp dirs of the state dir after a job, so files
// do not pile up on a warm worker. The runner makes every filename_prefix unique per job, so
// ComfyUI's cache never names a deleted file.
func (h *ComfyHandler) cleanState(proc *runner.Process) {
	d := proc.Dirs()
	for _, dir := range []string{d.Input, d.Output, filepath.Join(d.Temp, "temp")} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				h.log.Warn("cleaning the state dir", "err", err)
			}
		}
	}
}
