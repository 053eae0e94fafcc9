package comfyjob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/runpod-comfy/runpod-comfy/internal/layout"
	"github.com/runpod-comfy/runpod-comfy/internal/netguard"
	"github.com/runpod-comfy/runpod-comfy/runner"
	"github.com/runpod-comfy/runpod-comfy/runner/worker"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// DefaultResponseLimit is the default limit of a job-done body: well under the 10 MB the
// platform documents for /run and the ~20 MB at which it rejects results.
const DefaultResponseLimit = 9 << 20

// Options configure a Handler. cmd fills them from flags and environment.
type Options struct {
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

// Handler is the worker.Handler that runs ComfyUI workflows from runtime roots. One ComfyUI
// process is kept warm between jobs; a job for another version (or for a version whose root
// was rebuilt) restarts it from that root. While a root is in use a temporary store root
// keeps GC on other machines from deleting it.
type Handler struct {
	o   Options
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

var _ worker.Handler = (*Handler)(nil)

// New returns a handler; call Close to stop ComfyUI.
func New(o Options) (*Handler, error) {
	if o.Root == "" || o.Store == nil {
		return nil, errors.New("comfy handler: Root and Store are required")
	}
	if o.OutputMode == "" {
		o.OutputMode = runner.SinkBase64
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
	return &Handler{o: o, log: o.Logger, life: life, cancel: cancel}, nil
}

// Ready makes ComfyUI ready before a job is taken: the version in use (restarted if it
// crashed), else the default version, if any.
func (h *Handler) Ready(ctx context.Context) error {
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
func (h *Handler) Close(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	err := h.stopLocked(ctx)
	h.cancel()
	return err
}

func (h *Handler) stopLocked(ctx context.Context) error {
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
func (h *Handler) ensure(ctx context.Context, version string) (*runner.Process, error) {
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
func (h *Handler) alive(ctx context.Context, proc *runner.Process) error {
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

// cleanState empties the input, output and temp dirs of the state dir after a job, so files
// do not pile up on a warm worker. The runner makes every filename_prefix unique per job, so
// ComfyUI's cache never names a deleted file.
func (h *Handler) cleanState(proc *runner.Process) {
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
