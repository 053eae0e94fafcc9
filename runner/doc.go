// Package runner runs ComfyUI from a runtime root and drives it over its HTTP and WebSocket
// API: process control, the API client, one-shot workflows and their outputs. The serverless
// worker (runner/worker) and the commands run-ui and run-handler are built on it.
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
//	func Start(ctx context.Context, opts StartOptions) (*Process, error)
//	type StartOptions struct {
//		RuntimeRoot  string            // absolute path of the runtime root (symlinks are fine)
//		StateDir     string            // absolute; input, output, temp, user, custom_nodes created
//		Listen       string            // default "127.0.0.1"
//		Port         int               // 0 picks a free port on Listen
//		Env          map[string]string // added to the manifest's env and BaseEnv; wins over both
//		BaseEnv      []string          // the child's base environment; nil inherits this process's
//		ExtraArgs    []string          // appended to ComfyUI's command line
//		ModelsDir    string            // optional extra models directory (folders below it)
//		Log          io.Writer         // ComfyUI's stdout+stderr, line by line, with LogPrefix
//		LogPrefix    string            // default "[comfyui] "
//		ReadyTimeout time.Duration     // default 5 minutes
//		StopTimeout  time.Duration     // per signal step of Stop; default 10 seconds
//	}
//	func (p *Process) URL() string              // "http://127.0.0.1:8188"
//	func (p *Process) Client() *Client           // a client for URL()
//	func (p *Process) Dirs() StateDirs          // Input, Output, Temp, User, CustomNodes
//	func (p *Process) Exited() <-chan struct{}  // closed when the process has exited
//	func (p *Process) ExitErr() error           // the exit status, once Exited is closed
//	func (p *Process) LogTail(n int) []string   // the last n lines ComfyUI wrote
//	func (p *Process) Stop(ctx context.Context) error // SIGINT, SIGTERM, SIGKILL to the group
//	func (p *Process) Run(ctx context.Context, workflow json.RawMessage, opts RunOptions) (*RunResult, error)
//
// Start reads manifest.json, prepares the state dir, passes every redirect flag the pinned
// ComfyUI supports (manifest comfy.flags: --output-directory, --input-directory,
// --temp-directory, --user-directory, --database-url sqlite:////<state>/user/comfyui.db) plus
// --listen, --port and --disable-auto-launch when supported, and launches <root>/bin/comfyui
// in its own process group. Custom nodes marked writable in the manifest are copied into
// <state>/custom_nodes/<name> (again when their store path changes); when there are any,
// Start does not use the launcher: it runs the root's python with <root>/comfyui/main.py and
// a generated <state>/extra_model_paths.yaml whose custom_nodes folder is
// <state>/custom_nodes (links to the read-only nodes, copies of the writable ones) and whose
// model folders are the root's, so each node is loaded exactly once. Start returns when
// GET /prompt answers 200; a *StartError says whether the process exited early
// (errors.Is(err, ErrExited)) or did not answer in time (errors.Is(err, ErrNotReady)), with
// the last lines of its log. The process is stopped when ctx ends.
//
// # API client
//
//	func NewClient(baseURL string) *Client
//	type Client struct{ BaseURL string; HTTP *http.Client; PollInterval time.Duration }
//	func (c *Client) Run(ctx context.Context, workflow json.RawMessage, opts RunOptions) (*RunResult, error)
//	func (c *Client) Interrupt(ctx context.Context, promptID string) error
//	func (c *Client) Ready(ctx context.Context) error // GET /prompt answers 200
//	type RunOptions struct {
//		Images     []InputImage   // uploaded under a unique name per run; references rewritten
//		Progress   func(Progress) // called from the run's goroutine for each event
//		PromptID   string         // default a new lowercase UUID
//		ClientID   string         // default a new UUID
//		KeepPrefix bool           // do not make filename_prefix unique (see the cache gotcha)
//		Exited     <-chan struct{} // when closed the run fails with ErrComfyExited
//	}
//	type InputImage struct{ Name, Image string } // Image: base64, data URI or http(s) URL
//	type Progress struct{ PromptID, Event, NodeID, NodeType string; Value, Max int; Done, Total int }
//	type RunResult struct {
//		PromptID string; Outputs []*Output; Cached []string; Elapsed time.Duration
//	}
//	func CheckWorkflow(workflow json.RawMessage) (map[string]json.RawMessage, error)
//
// Run checks the workflow is in API format (a UI-format workflow, with "nodes" and "links",
// gets *WorkflowError saying how to export the API format), uploads the input images, makes
// every filename_prefix unique to the job (so an identical resubmission does not hit
// ComfyUI's cache and name old files), connects the WebSocket with the client id (no Origin
// header), posts the prompt, reports progress, waits for executing{node:null} with its
// prompt id (or, when the socket drops, polls /history/<id>), reads the history entry and
// fetches every output through /view. Errors: *ValidationError (HTTP 400 or non-empty
// node_errors) with Nodes[id].Errors[].Message; *ExecutionError (execution_error) with the
// node id, type, exception and traceback; ErrInterrupted; ErrComfyExited; ctx errors after
// the prompt was interrupted with POST /interrupt.
//
// # Outputs
//
//	type Output struct {
//		NodeID, Filename, Subfolder, Type string // Type: output | temp | text
//		Kind   string // image | video | audio | text | file
//		Mime   string; Size int64; SHA256 string // hex
//		Text   string `json:"text,omitempty"`  // text outputs
//		Data   string `json:"data,omitempty"`  // base64 sink
//		URL    string `json:"url,omitempty"`   // gcs sink
//		Path   string `json:"path,omitempty"`  // file sink
//		Bytes  []byte `json:"-"`               // the content, until delivered
//	}
//	type Sink interface{ Put(ctx context.Context, o *Output) error }
//	func Deliver(ctx context.Context, outs []*Output, s Sink) error
//	type Base64Sink struct{}                // sets Data
//	type FileSink struct{ Dir string }      // atomic write to Dir/<subfolder>/<filename>; sets Path
//	func NewGCSSink(ctx context.Context, o GCSOptions) (*GCSSink, error) // sets URL; Close()
//	type GCSOptions struct {
//		Bucket, Prefix, Project string
//		CredentialsFile string; CredentialsJSON []byte // service account key: also signs URLs
//		Endpoint string                  // e.g. fake-gcs-server's URL + "/storage/v1/"; no auth
//		Retries int; RetryBaseSleep time.Duration // exponential backoff between attempts
//		Public bool                      // public URLs instead of V4 signed URLs
//		SignedURLTTL time.Duration       // default 1 hour
//		Validate bool                    // check bucket access in NewGCSSink
//		SignedURLHost string; SignedURLInsecure bool // for emulators
//	}
//
// # One-shot jobs
//
//	func RunOnce(ctx context.Context, opts OnceOptions) (*Result, error)
//
// RunOnce starts ComfyUI (StartOptions), runs one workflow (RunOptions), delivers the outputs
// to a sink, stops ComfyUI and returns the Result written by run-handler as JSON:
// {"status":"success","prompt_id":...,"outputs":[Output...],"elapsed_ms":...}.
package runner
