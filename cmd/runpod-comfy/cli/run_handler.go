package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/builder"
	"github.com/runpod-comfy/runpod-comfy/internal/inputfile"
	"github.com/runpod-comfy/runpod-comfy/internal/netguard"
	"github.com/runpod-comfy/runpod-comfy/lang"
	"github.com/runpod-comfy/runpod-comfy/runner"
)

// RunHandlerOptions are the flags and arguments of run-handler.
type RunHandlerOptions struct {
	Arg       string // version id (or spec file)
	Spec      string
	Vars      []string
	Workflow  string
	Images    []string // name=file|url
	Output    string
	OutDir    string
	GCSBucket string
	GCSPrefix string
	ModelsDir string
	Timeout   time.Duration
}

func newRunHandlerCmd(g *Globals) *cobra.Command {
	o := &RunHandlerOptions{}
	cmd := &cobra.Command{
		Use:   "run-handler <id> | --spec FILE --workflow FILE",
		Short: "Run one workflow on a version and print the result as JSON",
		Long: `run-handler runs one ComfyUI workflow from the command line or CI, as the serverless worker
would: it builds the version if needed (a spec without a lock is resolved first), starts
ComfyUI from its runtime root with its state in ROOT/state/comfy-<id>, runs the workflow
(API format: in ComfyUI use Workflow > Export (API)), writes the result JSON to stdout and
stops ComfyUI.

Outputs (--output):
  base64   each output in the JSON with filename, node id, mime, size, sha256 and data
  file     each output written to --out-dir atomically; the JSON has its path
  gcs      each output uploaded to the bucket under <prefix>/<prompt id>/; the JSON has a URL
  s3       each output uploaded to an S3-compatible bucket under <prefix>/<prompt id>/; the
           JSON has a pre-signed URL (valid 7 days unless BUCKET_URL_TTL says otherwise)

GCS settings: --gcs-bucket or GCS_BUCKET, --gcs-prefix or GCS_PREFIX, project
GOOGLE_CLOUD_PROJECT or GCS_PROJECT, credentials GOOGLE_APPLICATION_CREDENTIALS (a service
account key also signs URLs), GCS_RETRIES (default 3) and GCS_RETRY_BASE_SLEEP (seconds,
default 1) for retries with backoff, GCS_PUBLIC=1 for public URLs instead of V4 signed URLs
valid GCS_SIGNED_URL_TTL seconds (default 3600), GCS_VALIDATE=1 to check the bucket before
running anything, GCS_ENDPOINT for an emulator.

S3 settings (worker-comfyui's names): BUCKET_ENDPOINT_URL (https://<bucket>.s3.<region>.amazonaws.com,
or https://host/<bucket>), BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY; also BUCKET_NAME,
BUCKET_REGION, BUCKET_SESSION_TOKEN, BUCKET_PATH_STYLE=1, BUCKET_PREFIX, BUCKET_URL_TTL (s),
BUCKET_PUBLIC_BASE_URL, BUCKET_RETRIES and BUCKET_VALIDATE=0 (skip the probe object written
before anything runs). See docs/runpod.md.

Progress goes to stderr (a bar on a terminal); --verbose also streams ComfyUI's log there.`,
		Example: `  runpod-comfy run-handler sdxl --workflow workflows/sdxl-txt2img.json
  runpod-comfy run-handler --spec versions/sdxl.hcl --workflow wf.json --image input.png=photo.png --output file --out-dir out/
  GCS_BUCKET=my-bucket runpod-comfy run-handler sdxl --workflow wf.json --output gcs --timeout 10m`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Arg = args[0]
			}
			return runRunHandler(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Spec, "spec", "", "spec file (.json or .hcl) instead of a version id")
	f.StringVar(&o.Workflow, "workflow", "", "workflow file in ComfyUI's API format (- for stdin)")
	f.StringArrayVar(&o.Images, "image", nil, "input image NAME=FILE or NAME=URL; the workflow's references to NAME are rewritten (repeatable)")
	f.StringVar(&o.Output, "output", runner.SinkBase64, "where outputs go: "+runner.SinkNames(nil))
	f.StringVar(&o.OutDir, "out-dir", "", "directory for --output file")
	f.StringVar(&o.GCSBucket, "gcs-bucket", "", "bucket for --output gcs (default $GCS_BUCKET)")
	f.StringVar(&o.GCSPrefix, "gcs-prefix", "", "object name prefix for --output gcs (default $GCS_PREFIX)")
	f.StringVar(&o.ModelsDir, "models-dir", "", "extra models directory searched by ComfyUI (folders such as checkpoints/ below it)")
	f.DurationVar(&o.Timeout, "timeout", 0, "interrupt the job after this long, e.g. 10m (default: no limit)")
	addVarFlag(cmd, &o.Vars)
	return cmd
}

func runRunHandler(ctx context.Context, g *Globals, o *RunHandlerOptions, stdout, stderr io.Writer) error {
	arg := o.Arg
	switch {
	case arg != "" && o.Spec != "":
		return usageError(errors.New("give a version id or --spec FILE, not both"))
	case arg == "" && o.Spec == "":
		return usageError(errors.New("give a version id or --spec FILE"))
	case o.Spec != "":
		arg = o.Spec
	}
	if o.Workflow == "" {
		return usageError(errors.New("--workflow FILE is required"))
	}
	if o.Timeout < 0 {
		return usageError(fmt.Errorf("--timeout %s: must be positive", o.Timeout))
	}
	var wf []byte
	var err error
	if o.Workflow == "-" {
		wf, err = inputfile.ReadAll(os.Stdin, "standard input", inputfile.MaxWorkflow)
	} else {
		wf, err = inputfile.Read(o.Workflow, inputfile.MaxWorkflow)
	}
	if err != nil {
		return usageError(fmt.Errorf("--workflow: %w", err))
	}
	if _, err := runner.CheckWorkflow(wf); err != nil {
		return usageError(fmt.Errorf("%s: %w", o.Workflow, err))
	}
	images, err := parseImages(o.Images)
	if err != nil {
		return err
	}
	// The sink first: with GCS_VALIDATE=1 a bad bucket stops us before any build or start.
	sink, closeSink, err := outputSink(ctx, o)
	if err != nil {
		return err
	}
	defer closeSink()
	rootDir, id, err := ensureBuilt(ctx, g, arg, o.Vars, stderr)
	if err != nil {
		return err
	}
	rootDir, release, err := holdRoot(ctx, g.Root, rootDir)
	if err != nil {
		return err
	}
	defer release()
	tty := false
	if f, ok := stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		tty = true
	}
	start := runner.StartOptions{RuntimeRoot: rootDir, StateDir: runner.StateDir(g.Root, id), ModelsDir: o.ModelsDir, BaseEnv: comfyEnviron()}
	// --image URLs are the user's own, fetched as curl would: private addresses included.
	run := runner.RunOptions{Images: images, ImageHTTP: netguard.NewClient(true)}
	if g.Verbose {
		start.Log = stderr
	}
	if g.Verbose || tty {
		run.Progress = runner.ProgressPrinter(stderr, tty && !g.Verbose)
	}
	res, err := runner.RunOnce(ctx, runner.OnceOptions{Start: start, Workflow: wf, Run: run, Sink: sink, Timeout: o.Timeout})
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // URLs keep their & as is
	return enc.Encode(res)
}

// parseImages reads --image NAME=FILE|URL flags.
func parseImages(flags []string) ([]runner.InputImage, error) {
	var out []runner.InputImage
	for _, f := range flags {
		name, src, ok := strings.Cut(f, "=")
		if !ok || name == "" || src == "" {
			return nil, usageError(fmt.Errorf("--image %q: write NAME=FILE or NAME=URL", f))
		}
		if err := runner.CheckInputName(name); err != nil {
			return nil, usageError(fmt.Errorf("--image: %w", err))
		}
		if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
			out = append(out, runner.InputImage{Name: name, Image: src})
			continue
		}
		data, err := inputfile.Read(src, inputfile.MaxWorkflow)
		if err != nil {
			return nil, usageError(fmt.Errorf("--image %s: %w", name, err))
		}
		out = append(out, runner.InputImage{Name: name, Image: base64Std(data)})
	}
	return out, nil
}

// outputSink makes the sink of --output, looked up in runner's registry; bucket settings come
// from flags and the environment.
func outputSink(ctx context.Context, o *RunHandlerOptions) (runner.Sink, func(), error) {
	none := func() {}
	kind, err := runner.LookupSink(o.Output)
	if err != nil {
		return nil, none, usageError(fmt.Errorf("--output: %w", err))
	}
	cfg := runner.SinkConfig{Dir: o.OutDir}
	switch kind.Name {
	case runner.SinkGCS:
		if cfg.GCS, err = gcsOptionsFromEnvironment(o.GCSBucket, o.GCSPrefix); err != nil {
			return nil, none, usageError(err)
		}
	case runner.SinkS3:
		if cfg.S3, err = s3OptionsFromEnvironment(); err != nil {
			return nil, none, usageError(err)
		}
	}
	if err := kind.Check(cfg); err != nil {
		return nil, none, usageError(fmt.Errorf("--output %s: %w", kind.Name, err))
	}
	if kind.Local {
		if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
			return nil, none, fmt.Errorf("--out-dir: %w", err)
		}
	}
	s, err := kind.Open(ctx, cfg)
	if err != nil {
		return nil, none, err
	}
	return s, func() { runner.CloseSink(s) }, nil
}

// ensureBuilt returns the runtime root of the version named by arg (an id or a spec file),
// building it if needed (builder.Build: a no-op on a built version, resolving first when the
// lock is missing or stale). When the spec of an id cannot be found but ROOT/builds/comfy-<id>
// exists, that root is used as it is.
func ensureBuilt(ctx context.Context, g *Globals, arg string, vars []string, stderr io.Writer) (rootDir, id string, err error) {
	if !isSpecPath(arg) {
		if _, ferr := lang.FindVersion(g.VersionsDir, arg); ferr != nil {
			link := runner.RootDir(g.Root, arg)
			if _, serr := os.Stat(link); serr == nil {
				fmt.Fprintf(stderr, "no spec for %s in %s: running the built root %s as it is\n", arg, g.VersionsDir, link)
				return link, arg, nil
			}
		}
	}
	bo, done, err := prepareVersion(ctx, g, arg, vars, &SubstituterFlags{}, stderr)
	if err != nil {
		return "", "", err
	}
	defer done()
	res, err := builder.Build(ctx, bo)
	done()
	if err != nil {
		return "", "", fmt.Errorf("building %s: %w", bo.Spec.VersionID, err)
	}
	return res.Dir, bo.Spec.VersionID, nil
}
