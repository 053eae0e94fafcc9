// Package runner runs ComfyUI from a runtime root and drives it over its HTTP and WebSocket
// API: process control, the API client, one-shot workflows and their outputs. The serverless
// worker (runner/worker, the queue protocol, and runner/comfyjob, the ComfyUI job handler)
// and the commands run-ui and run-handler are built on it.
//
// # Words
//
// A runtime root is the directory ROOT/builds/comfy-<id> (a store object) holding comfyui,
// custom_nodes, models, venv, extra_model_paths.yaml, bin/comfyui and manifest.json. The
// state dir is the version's mutable state, ROOT/state/comfy-<id>, with input, output, temp,
// user and custom_nodes below it; the runner creates it. A process is one running ComfyUI
// started from a root. A job is one workflow submitted as one prompt; its prompt id is a
// lowercase UUID chosen by the client. An output is one file (image, animated image, video,
// audio, other file) or one text a job produced, fetched through /view. A sink delivers
// outputs: as base64 in the result, as files in a directory, or as objects in a GCS bucket.
//
// # Process control
//
//	func RootDir(root, id string) string  // ROOT/builds/comfy-<id>
//	func StateDir(root, id string) string // ROOT/state/comfy-<id>
//	func ReadManifest(root string) (*specs.Manifest, error)
//	func Start(ctx context.Context, opts StartOptions) (*Process, error)
//	type StartOptions struct {
//		RuntimeRoot  string            // the runtime root (symlinks are resolved once, at start)
//		StateDir     string            // input, output, temp, user, custom_nodes created below it
//		Listen       string            // default "127.0.0.1"
//		Port         int               // 0 picks a free port on Listen
//		Env          map[string]string // added after the manifest's env; wins over it
//		BaseEnv      []string          // the child's base environment; nil inherits this process's
//		ExtraArgs    []string          // appended to ComfyUI's command line
//		ModelsDir    string            // optional extra models directory (folders below it)
//		Log          io.Writer         // ComfyUI's stdout+stderr, line by line, with LogPrefix
//		LogPrefix    string            // default "[comfyui] "
//		ReadyTimeout time.Duration     // default 5 minutes
//		StopTimeout  time.Duration     // per signal step of Stop; default 10 seconds
//	}
//	func (p *Process) URL() string                    // "http://127.0.0.1:8188"
//	func (p *Process) Client() *Client                // a client for URL()
//	func (p *Process) Dirs() StateDirs                // Input, Output, Temp, User, CustomNodes
//	func (p *Process) RuntimeRoot() string            // the resolved root
//	func (p *Process) Exited() <-chan struct{}        // closed when the process has exited
//	func (p *Process) ExitErr() error                 // the exit status, once Exited is closed
//	func (p *Process) LogTail(n int) []string         // the last n lines ComfyUI wrote
//	func (p *Process) Stop(ctx context.Context) error // SIGINT, SIGTERM, SIGKILL to the group
//	func (p *Process) Run(ctx context.Context, workflow json.RawMessage, opts RunOptions) (*RunResult, error)
//	func (p *Process) RemoveOutputs(res *RunResult)   // delete a delivered job's files
//
// Start reads manifest.json, prepares the state dir, and passes every redirect flag the pinned
// ComfyUI supports (manifest comfy.flags; when it lists none, the 2023 set: output, input,
// temp): --output-directory <state>/output, --input-directory <state>/input,
// --temp-directory <state>/temp (ComfyUI uses <state>/temp/temp), --user-directory
// <state>/user, --database-url sqlite:////<state>/user/comfyui.db, plus --listen, --port and
// --disable-auto-launch. It runs the root's python (venv, else env COMFY_PYTHON, else
// python3) on <root>/comfyui/main.py, as bin/comfyui does, in its own process group (the
// kernel kills it if this process dies), with its working directory in the state dir and a
// <state>/extra_model_paths.yaml written at every start with absolute paths only (the root's
// models/<dir> and a custom_nodes folder when there is one), which every ComfyUI era reads
// alike whatever the working directory (ComfyUI before b9d9bcb takes relative paths against
// it). Custom nodes marked writable in the manifest are copied into <state>/custom_nodes/<name>
// (again only when their store path changes; the copy records it in .runpod-comfy-source);
// when a root has any, <state>/custom_nodes (copies of the writable nodes, links to the
// others) is ComfyUI's only custom_nodes folder, so each node is loaded exactly once. Nodes
// no longer in the manifest are renamed <name>.disabled (ComfyUI skips them; their data is
// kept). ModelsDir adds a generated <state>/models_dir.yaml (absolute paths too). Start returns when GET /prompt answers 200; a *StartError says
// whether the process exited early (errors.Is(err, ErrExited), with ExitCode) or did not answer
// in time (errors.Is(err, ErrNotReady)), with the last lines of its log. The process is stopped
// when ctx ends.
//
// # API client
//
//	func NewClient(baseURL string) *Client
//	type Client struct{ BaseURL string; HTTP *http.Client; Dialer *websocket.Dialer; PollInterval time.Duration; MaxPollFailures int }
//	func (c *Client) Run(ctx context.Context, workflow json.RawMessage, opts RunOptions) (*RunResult, error)
//	func (c *Client) Interrupt(ctx context.Context, promptID string) error
//	func (c *Client) Ready(ctx context.Context) error // GET /prompt answers 200
//	func (c *Client) History(ctx context.Context, promptID string) (*HistoryEntry, error)
//	type RunOptions struct {
//		Images      []InputImage    // uploaded as <tag>-<name>; references rewritten
//		Progress    func(Progress)  // called from Run's goroutine for each event
//		PromptID    string          // default a new lowercase UUID
//		ClientID    string          // default a new UUID
//		KeepPrefix  bool            // do not make filename_prefix unique (see the cache gotcha)
//		IncludeTemp bool            // previews (type temp) too, even when the job saved files
//		Exited      <-chan struct{} // when closed the run fails with ErrComfyExited
//	}
//	type InputImage struct{ Name, Image string } // Image: base64, data URI or http(s) URL
//	func CheckInputName(name string) error
//	type Progress struct{ PromptID, Event, NodeID, NodeType string; Value, Max, Done, Total int }
//	func ProgressPrinter(w io.Writer, tty bool) func(Progress) // a bar, or plain lines
//	type RunResult struct {
//		PromptID, ClientID string; Outputs []*Output; Cached, Uploaded []string
//		Polled bool; Elapsed time.Duration
//	}
//	type Workflow map[string]map[string]any
//	func CheckWorkflow(workflow json.RawMessage) (Workflow, error)
//
// The job tag is the first 8 hex digits of the prompt id. Run checks the workflow is in API
// format (a UI-format workflow, with "nodes" and "links", gets *WorkflowError saying how to
// export the API format), uploads the input images (names escaping the input dir refused),
// appends "_<tag>" to every filename_prefix (so an identical resubmission is not served from
// ComfyUI's cache naming old files; KeepPrefix turns this off), connects the WebSocket with the
// client id (no Origin header), posts the prompt, reports progress, waits for
// executing{node:null} with its prompt id (or, when the socket drops, polls /history/<id>),
// reads the history entry and fetches every output through /view (any list entry with a
// filename: images, animated images, video, audio, VHS gifs; and "text" strings). Each of
// these steps is one method in client.go (uploadInputs, openEvents, postPrompt, await,
// readHistory, collect); Run only composes them. Errors:
// *WorkflowError; *ValidationError (HTTP 400 or non-empty node_errors) with
// Nodes[id].Errors[].Message, each node's messages in Error(); *ExecutionError
// (execution_error) with the node id, type, exception and traceback; ErrInterrupted;
// ErrComfyExited (Process.Run: an *ExitedError with the exit status and log tail); ctx's error
// after the prompt was interrupted with POST /interrupt. Process.Run also deletes the job's
// input images afterwards.
//
// # Outputs
//
//	type Output struct {
//		NodeID, Filename, Subfolder string
//		Type   string // output | temp | text
//		Kind   string // image | video | audio | text | file (KindImage...)
//		Mime   string; Size int64; SHA256 string // hex
//		Text   string `json:"text,omitempty"` // text outputs
//		Data   string `json:"data,omitempty"` // Base64Sink
//		URL    string `json:"url,omitempty"`  // GCSSink, S3Sink
//		Path   string `json:"path,omitempty"` // FileSink
//		Bytes  []byte `json:"-"`              // the content, until delivered
//	}
//	type Sink interface{ Put(ctx context.Context, o *Output) error }
//	func Deliver(ctx context.Context, outs []*Output, s Sink) error
//	type Base64Sink struct{}           // sets Data
//	type FileSink struct{ Dir string } // atomic write to Dir/<subfolder>/<filename>; sets Path
//	func NewGCSSink(ctx context.Context, o GCSOptions) (*GCSSink, error) // sets URL
//	func (s *GCSSink) ForJob(jobID string) Sink // objects under <prefix>/<jobID>/
//	func (s *GCSSink) Close() error
//	func NewS3Sink(ctx context.Context, o S3Options) (*S3Sink, error) // SigV4 (minio-go); sets a pre-signed URL
//	func (s *S3Sink) ForJob(jobID string) Sink // objects under <prefix>/<jobID>/
//	type S3Options struct {
//		Endpoint, Bucket, Region string // https://<bucket>.s3.<region>.amazonaws.com, https://host/<bucket>, ...
//		AccessKeyID, SecretAccessKey, SessionToken string
//		Addressing string                // auto | path | virtual
//		Prefix string; URLTTL time.Duration; PublicBaseURL string; Retries int
//		Validate bool                    // NewS3Sink writes a probe object
//		Transport http.RoundTripper
//	}
//
// The sinks are looked up by name in one registry: LookupSink("s3") returns a SinkKind with
// its Check (what settings are missing, no I/O) and Open; SinkKinds lists base64, file, gcs and
// s3; ForJob narrows a JobSink to a job; CloseSink releases a sink's client.
//
//	type SinkConfig struct{ Dir string; GCS GCSOptions; S3 S3Options }
//	type SinkKind struct{ Name string; Upload, Returned, Local bool; Check func(SinkConfig) error; Open func(context.Context, SinkConfig) (Sink, error) }
//	type GCSOptions struct {
//		Bucket, Prefix, Project string
//		CredentialsFile string; CredentialsJSON []byte // a service account key also signs URLs
//		Endpoint string                  // an emulator's JSON API (e.g. fake-gcs-server + "/storage/v1/"), no auth
//		Retries int; RetryBaseSleep time.Duration // attempts = Retries+1, pause doubles, default 1 s
//		Public bool; PublicBaseURL string // public URLs instead of V4 signed URLs
//		SignedURLTTL time.Duration       // default 1 hour, at most 7 days
//		Validate bool                    // NewGCSSink writes (and deletes) a probe object
//		SignedURLHost string; SignedURLInsecure bool // for emulators
//	}
//
// # One-shot jobs
//
//	func RunOnce(ctx context.Context, o OnceOptions) (*Result, error)
//	type OnceOptions struct{ Start StartOptions; Workflow json.RawMessage; Run RunOptions; Sink Sink; Timeout time.Duration; KeepFiles bool }
//	type Result struct{ Status, PromptID string; Outputs []*Output; Cached []string; StartMS, ElapsedMS int64 }
//
// RunOnce checks the workflow, starts ComfyUI, runs the workflow (interrupting it after
// Timeout), delivers the outputs to the sink (default Base64Sink; a GCSSink is narrowed to the
// job), deletes the job's files from the state dir and stops ComfyUI. run-handler prints the
// Result as JSON: {"status":"success","prompt_id":...,"outputs":[...],"start_ms":...,"elapsed_ms":...}.
//
// The ComfyUI stand-in used by tests is package runner/standin.
package runner
