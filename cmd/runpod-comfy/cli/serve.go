package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/builder"
	"github.com/runpod-comfy/runpod-comfy/internal/inputfile"
	"github.com/runpod-comfy/runpod-comfy/internal/netguard"
	"github.com/runpod-comfy/runpod-comfy/runner"
	"github.com/runpod-comfy/runpod-comfy/runner/comfyjob"
	"github.com/runpod-comfy/runpod-comfy/runner/worker"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// ServeOptions are the flags of serve.
type ServeOptions struct {
	VersionID     string
	BuildMissing  bool
	TestInput     string
	APIPort       int
	APIHost       string
	OutputMode    string
	GCSBucket     string
	GCSPrefix     string
	ResponseLimit int
	JobTimeout    time.Duration
	StateDir      string
	ModelsDir     string
	ComfyArgs     []string
	ReadyTimeout  time.Duration
	ShutdownGrace time.Duration
	Quiet         bool
	// AllowPrivateURLs lets jobs' workflow_url and image URLs reach loopback, link-local and
	// private addresses (refused by default).
	AllowPrivateURLs bool
}

const serveLong = `serve is a RunPod serverless worker (queue-based endpoint) for ComfyUI versions built in the
store on the network volume. It speaks RunPod's queue protocol itself: job-take long poll,
results, progress updates, heartbeat, job-stop (cancelled jobs interrupt ComfyUI).

ComfyUI stays warm between jobs. A job's version_id (else --version-id or $COMFY_VERSION_NAME)
picks the version; a job for another version built on the volume switches to it. A version that
is not built fails the job, unless --build-missing builds it inside the job.

Input: worker-comfyui's {"workflow", "images": [{name, image}], "comfy_org_api_key"} works
unchanged, plus version_id, workflow_url, input_images {name: url}, output_mode
(base64|gcs|s3), gcs_bucket, gcs_prefix and timeout_s. Output: "outputs" (every file and text
with node id, mime, size, sha256 and data or url), worker-comfyui's "images" (type base64, or
s3_url with the URL in data), version_id, prompt_id, timings.

S3 (as worker-comfyui): with BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID and
BUCKET_SECRET_ACCESS_KEY every output is uploaded (default output mode s3) and returned as a
pre-signed URL; the key pair is checked with a probe object before the worker takes a job.

worker-comfyui's settings: REFRESH_WORKER=true (a fresh worker after every job),
COMFY_LOG_LEVEL (ComfyUI's --verbose), WEBSOCKET_RECONNECT_ATTEMPTS x
WEBSOCKET_RECONNECT_DELAY_S (how long ComfyUI may stop answering in a job), WEBSOCKET_TRACE=true
(log every frame); SERVE_API_LOCALLY is refused for --api-port. Models in
/runpod-volume/models: RUNPOD_COMFY_MODELS_DIR=/runpod-volume/models (or --models-dir).

Modes:
  RUNPOD_WEBHOOK_GET_JOB set     the queue worker (on RunPod)
  --test-input FILE              run one job from FILE ({"input": ...}), print the result
  no queue and ./test_input.json run that one job (as RunPod's SDK does)
  --api-port N                   serve /run, /runsync, /status/<id>, /cancel/<id>, /health

Environment: RUNPOD_WEBHOOK_GET_JOB, RUNPOD_WEBHOOK_POST_OUTPUT, RUNPOD_WEBHOOK_PING,
RUNPOD_PING_INTERVAL (ms), RUNPOD_AI_API_KEY, RUNPOD_POD_ID, RUNPOD_POD_HOSTNAME,
RUNPOD_INIT_TIMEOUT (s), COMFY_VERSION_NAME, OUTPUT_MODE, BUCKET_* (see run-handler --help), GCS_BUCKET, GCS_PREFIX, GCS_PROJECT
(or GOOGLE_CLOUD_PROJECT), GCS_CREDENTIALS_FILE (or GOOGLE_APPLICATION_CREDENTIALS),
GCS_CREDENTIALS_JSON, GCS_PUBLIC, GCS_PUBLIC_BASE_URL, GCS_SIGNED_URL_TTL, GCS_RETRIES,
GCS_RETRY_BASE_SLEEP, GCS_VALIDATE, GCS_ENDPOINT, COMFY_ORG_API_KEY,
RUNPOD_COMFY_ALLOW_PRIVATE_URLS, RUNPOD_COMFY_PASS_ENV; for --build-missing also
those of build (HF_TOKEN, CIVITAI_API_TOKEN, GIT_TOKEN, RUNPOD_COMFY_SUBSTITUTERS,
RUNPOD_COMFY_TRUSTED_KEYS). See docs/runpod.md.`

func newServeCmd(g *Globals) *cobra.Command {
	o := &ServeOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the RunPod serverless worker (or its local test modes)",
		Long:  serveLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServe(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.VersionID, "version-id", os.Getenv("COMFY_VERSION_NAME"), "version of jobs without version_id, started before the first job (default $COMFY_VERSION_NAME)")
	f.BoolVar(&o.BuildMissing, "build-missing", false, "build a version that is not built yet inside the job (slow; default: fail the job)")
	f.StringVar(&o.TestInput, "test-input", "", "run the one job in FILE ({\"input\": ...}), print the result and exit (1 if it failed)")
	f.IntVar(&o.APIPort, "api-port", 0, "serve a local test API on this port instead of the RunPod queue")
	f.StringVar(&o.APIHost, "api-host", "127.0.0.1", "address of the local test API")
	defMode := runner.SinkBase64
	if os.Getenv("BUCKET_ENDPOINT_URL") != "" {
		defMode = runner.SinkS3 // as worker-comfyui: S3 configured means every output goes there
	}
	f.StringVar(&o.OutputMode, "output-mode", serveEnv("OUTPUT_MODE", defMode), "default output mode: "+comfyjob.OutputModes()+" (default $OUTPUT_MODE, else s3 with $BUCKET_ENDPOINT_URL, else base64)")
	f.StringVar(&o.GCSBucket, "gcs-bucket", os.Getenv("GCS_BUCKET"), "default GCS bucket for gcs output and oversized results (default $GCS_BUCKET)")
	f.StringVar(&o.GCSPrefix, "gcs-prefix", os.Getenv("GCS_PREFIX"), "object name prefix in the bucket; the job id is appended (default $GCS_PREFIX)")
	f.IntVar(&o.ResponseLimit, "response-limit", comfyjob.DefaultResponseLimit, "largest result body in bytes; larger base64 results go to GCS or fail")
	f.DurationVar(&o.JobTimeout, "job-timeout", 30*time.Minute, "deadline of a job without timeout_s; ComfyUI is interrupted after it (0: none)")
	f.StringVar(&o.StateDir, "state-dir", filepath.Join(os.TempDir(), "runpod-comfy-worker", "state"), "parent of ComfyUI's per-version state dirs; private to this worker (cleared after each job)")
	f.StringVar(&o.ModelsDir, "models-dir", os.Getenv("RUNPOD_COMFY_MODELS_DIR"), "extra models directory whose folders (checkpoints, loras, ...) ComfyUI also searches, e.g. worker-comfyui's /runpod-volume/models (default $RUNPOD_COMFY_MODELS_DIR)")
	f.StringArrayVar(&o.ComfyArgs, "comfy-arg", nil, "extra argument for ComfyUI's command line (repeatable), e.g. --comfy-arg=--cpu")
	f.DurationVar(&o.ReadyTimeout, "ready-timeout", serveEnvSeconds("RUNPOD_INIT_TIMEOUT", 7*time.Minute), "how long ComfyUI may take to start (default $RUNPOD_INIT_TIMEOUT s, else 7m)")
	f.DurationVar(&o.ShutdownGrace, "shutdown-grace", 30*time.Second, "on SIGTERM, how long the job in hand may still run before it is failed")
	f.BoolVar(&o.Quiet, "quiet-comfy", false, "do not copy ComfyUI's log to stderr")
	f.BoolVar(&o.AllowPrivateURLs, "allow-private-urls", serveEnvBool(AllowPrivateURLsVar), "let jobs' workflow_url and image URLs reach loopback, link-local and private addresses (default $"+AllowPrivateURLsVar+", else refused)")
	return cmd
}

// AllowPrivateURLsVar names the setting behind --allow-private-urls.
const AllowPrivateURLsVar = "RUNPOD_COMFY_ALLOW_PRIVATE_URLS"

// serveEnvBool returns $name read as a bool; a value that does not parse leaves false here and
// is refused by checkServeEnvBool when serve runs.
func serveEnvBool(name string) bool {
	b, _ := strconv.ParseBool(os.Getenv(name))
	return b
}

// checkServeEnvBool refuses a set $name that is not a bool.
func checkServeEnvBool(name string) error {
	if v := os.Getenv(name); v != "" {
		if _, err := strconv.ParseBool(v); err != nil {
			return fmt.Errorf("%s=%q: want 1 or 0 (true or false)", name, v)
		}
	}
	return nil
}

// serveEnv returns $name, else def.
func serveEnv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// serveEnvSeconds returns $name as whole seconds, else def. A value that is not a positive
// whole number leaves def here; checkServeEnvSeconds refuses it when serve runs.
func serveEnvSeconds(name string, def time.Duration) time.Duration {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return def
}

// checkServeEnvSeconds refuses a set $name that serveEnvSeconds could not read, rather than
// silently using the default.
func checkServeEnvSeconds(name string) error {
	v := os.Getenv(name)
	if v == "" {
		return nil
	}
	if n, err := strconv.Atoi(v); err != nil || n <= 0 {
		return fmt.Errorf("%s=%q: want whole seconds > 0", name, v)
	}
	return nil
}

func runServe(ctx context.Context, g *Globals, o *ServeOptions, stdout, stderr io.Writer) error {
	if o.APIPort < 0 || o.APIPort > 65535 {
		return usageError(fmt.Errorf("--api-port %d: not a port", o.APIPort))
	}
	if o.TestInput != "" && o.APIPort != 0 {
		return usageError(errors.New("--test-input and --api-port exclude each other"))
	}
	if err := checkServeEnvBool(AllowPrivateURLsVar); err != nil {
		return usageError(err)
	}
	if err := checkServeEnvSeconds("RUNPOD_INIT_TIMEOUT"); err != nil {
		return usageError(err)
	}
	resultFormat := os.Getenv("RUNPOD_COMFY_RESULT_FORMAT")
	switch resultFormat {
	case "", comfyjob.ResultDefault, comfyjob.ResultSeed:
	default:
		return usageError(fmt.Errorf("RUNPOD_COMFY_RESULT_FORMAT=%q: want %q (the seed tool's output fields beside ours) or %q", resultFormat, comfyjob.ResultSeed, comfyjob.ResultDefault))
	}
	wc, err := readWorkerComfyUISettings(o.APIPort != 0)
	if err != nil {
		return usageError(err)
	}
	s3, err := s3OptionsFromEnvironment()
	if err != nil {
		return usageError(err)
	}
	if o.OutputMode == runner.SinkS3 && s3.Endpoint == "" {
		return usageError(errors.New("output mode s3 needs BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY"))
	}
	level := slog.LevelInfo
	if g.Verbose {
		level = slog.LevelDebug
	}
	var log *slog.Logger
	if g.JSON {
		log = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	} else {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	}

	// Which mode: decided before anything starts, so a misconfigured worker fails fast.
	getJob := os.Getenv("RUNPOD_WEBHOOK_GET_JOB")
	var testDoc []byte
	switch {
	case o.TestInput != "":
		b, err := inputfile.Read(o.TestInput, inputfile.MaxWorkflow)
		if err != nil {
			return fmt.Errorf("--test-input: %w", err)
		}
		testDoc = b
	case o.APIPort != 0, getJob != "":
	default:
		b, err := inputfile.Read("test_input.json", inputfile.MaxWorkflow)
		if err != nil {
			return fmt.Errorf("RUNPOD_WEBHOOK_GET_JOB is not set (not running on RunPod) and ./test_input.json cannot be read (%w): give --test-input FILE or --api-port N to test locally", err)
		}
		log.Info("RUNPOD_WEBHOOK_GET_JOB is not set: running ./test_input.json")
		testDoc = b
	}

	var cfg worker.Config
	if testDoc == nil && o.APIPort == 0 {
		var err error
		if cfg, err = serveWorkerConfig(log); err != nil {
			return err
		}
	}

	// Unusable S3 credentials stop the worker before it takes a job (a probe object).
	if s3.Endpoint != "" && s3.Validate {
		if _, err := runner.NewS3Sink(ctx, s3); err != nil {
			return fmt.Errorf("S3 output (BUCKET_ENDPOINT_URL): %w", err)
		}
		log.Info("S3 output ready", "endpoint", s3.Endpoint)
	}
	if o.ModelsDir == "" {
		if fi, err := os.Stat(filepath.Join(g.Root, "models")); err == nil && fi.IsDir() {
			log.Warn("ROOT/models exists (worker-comfyui's layout) but ComfyUI does not search it: set RUNPOD_COMFY_MODELS_DIR (or --models-dir) to it", "dir", filepath.Join(g.Root, "models"))
		}
	}

	st, err := store.Open(g.Root)
	if err != nil {
		return fmt.Errorf("opening the store at %s: %w", g.Root, err)
	}
	gcs, err := gcsOptionsFromEnvironment(o.GCSBucket, o.GCSPrefix)
	if err != nil {
		return usageError(err)
	}
	copts := comfyjob.Options{
		Root:           g.Root,
		Store:          st,
		DefaultVersion: o.VersionID,
		StateBase:      o.StateDir,
		OutputMode:     o.OutputMode,
		GCS:            gcs,
		S3:             s3,
		ResponseLimit:  o.ResponseLimit,
		JobTimeout:     o.JobTimeout,
		ComfyOrgAPIKey: os.Getenv("COMFY_ORG_API_KEY"),
		ResultFormat:   resultFormat,
		ExtraArgs:      o.ComfyArgs,
		ModelsDir:      o.ModelsDir,
		ReadyTimeout:   o.ReadyTimeout,
		Logger:         log,
		BaseEnv:        comfyEnviron(),

		RefreshWorker:      wc.RefreshWorker,
		LogLevel:           wc.LogLevel,
		UnreachableTimeout: wc.Unreachable,
		TraceWebSocket:     wc.TraceWebSocket,
		HTTPClient:         netguard.NewClient(o.AllowPrivateURLs),
	}
	if !o.Quiet {
		copts.ComfyLog = stderr
	}
	if o.BuildMissing {
		copts.Build = func(ctx context.Context, id string) error {
			bo, done, err := prepareVersion(ctx, g, id, nil, &SubstituterFlags{}, stderr)
			if err != nil {
				return err
			}
			defer done()
			bo.DownloadJobs = 4
			_, err = builder.Build(ctx, bo)
			return err
		}
	}
	h, err := comfyjob.New(copts)
	if err != nil {
		return usageError(err)
	}
	defer h.Close(context.WithoutCancel(ctx))

	switch {
	case testDoc != nil:
		body, failed, err := worker.RunTestInput(ctx, h, testDoc, log)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", body)
		if failed {
			return silentExit(ExitFailure)
		}
		return nil
	case o.APIPort != 0:
		ln, err := net.Listen("tcp", net.JoinHostPort(o.APIHost, strconv.Itoa(o.APIPort)))
		if err != nil {
			return fmt.Errorf("--api-port: %w", err)
		}
		return worker.NewLocalAPI(h, log).Serve(ctx, ln)
	}
	cfg.ShutdownGrace = o.ShutdownGrace
	w, err := worker.New(cfg, h)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// serveWorkerConfig reads the RUNPOD_* variables of the queue protocol.
func serveWorkerConfig(log *slog.Logger) (worker.Config, error) {
	cfg := worker.Config{
		GetJobURL:     os.Getenv("RUNPOD_WEBHOOK_GET_JOB"),
		PostOutputURL: os.Getenv("RUNPOD_WEBHOOK_POST_OUTPUT"),
		PingURL:       os.Getenv("RUNPOD_WEBHOOK_PING"),
		APIKey:        os.Getenv("RUNPOD_AI_API_KEY"),
		WorkerID:      os.Getenv("RUNPOD_POD_ID"),
		Hostname:      os.Getenv("RUNPOD_POD_HOSTNAME"),
		Logger:        log,
	}
	if cfg.PostOutputURL == "" {
		return cfg, errors.New("RUNPOD_WEBHOOK_GET_JOB is set but RUNPOD_WEBHOOK_POST_OUTPUT is not: both come from RunPod")
	}
	// As the SDK: a random worker id without RUNPOD_POD_ID, and no heartbeat without an id
	// or an API key.
	if cfg.WorkerID == "" {
		cfg.WorkerID = uuid.NewString()
		cfg.PingURL = ""
		log.Warn("RUNPOD_POD_ID is not set: using a random worker id, no heartbeat", "worker_id", cfg.WorkerID)
	}
	if cfg.APIKey == "" {
		cfg.PingURL = ""
		log.Warn("RUNPOD_AI_API_KEY is not set: calls go without Authorization, no heartbeat")
	}
	if v := os.Getenv("RUNPOD_PING_INTERVAL"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			return cfg, fmt.Errorf("RUNPOD_PING_INTERVAL=%q: want milliseconds > 0", v)
		}
		cfg.PingInterval = time.Duration(ms) * time.Millisecond
	}
	return cfg, nil
}
