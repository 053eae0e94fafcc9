package cli

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/runner"
)

// RunUIOptions are the flags and arguments of run-ui.
type RunUIOptions struct {
	Arg          string
	Vars         []string
	Listen       string
	Port         int
	ModelsDir    string
	ReadyTimeout time.Duration
	// ExtraArgs are ComfyUI arguments given after "--" (e.g. --use-sage-attention).
	ExtraArgs []string
}

func newRunUICmd(g *Globals) *cobra.Command {
	o := &RunUIOptions{}
	cmd := &cobra.Command{
		Use:   "run-ui <id>|<file> [-- <ComfyUI arguments>...]",
		Short: "Run ComfyUI's browser UI from a version, in the foreground",
		Long: `run-ui builds the version if needed, then runs ComfyUI from its runtime root in the
foreground, with its state (input, output, temp, user, writable custom nodes, database) in
ROOT/state/comfy-<id>. ComfyUI's log is streamed to stderr with a "[comfyui] " prefix. Ctrl-C
stops it gracefully (interrupt, then terminate, then kill), with everything it started.

On a RunPod pod, listen on all interfaces to reach it through the pod's HTTP proxy:
  runpod-comfy run-ui sdxl --listen 0.0.0.0 --port 8188`,
		Example: `  runpod-comfy run-ui sdxl
  runpod-comfy run-ui sdxl --listen 0.0.0.0 --port 3000
  runpod-comfy run-ui sdxl -- --use-sage-attention --preview-method auto`,
		Args: func(cmd *cobra.Command, args []string) error {
			n := len(args)
			if d := cmd.ArgsLenAtDash(); d >= 0 {
				n = d
			}
			if n != 1 {
				return fmt.Errorf("accepts 1 arg before \"--\" (the version), received %d", n)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Arg = args[0]
			if d := cmd.ArgsLenAtDash(); d >= 0 {
				o.ExtraArgs = args[d:]
			}
			return runRunUI(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Listen, "listen", "127.0.0.1", "address ComfyUI listens on (0.0.0.0 for all interfaces)")
	f.IntVar(&o.Port, "port", 8188, "port ComfyUI listens on")
	f.StringVar(&o.ModelsDir, "models-dir", "", "extra models directory searched by ComfyUI")
	f.DurationVar(&o.ReadyTimeout, "ready-timeout", 10*time.Minute, "how long ComfyUI may take to start (custom node imports)")
	addVarFlag(cmd, &o.Vars)
	return cmd
}

func runRunUI(ctx context.Context, g *Globals, o *RunUIOptions, stdout, stderr io.Writer) error {
	if o.Port < 1 || o.Port > 65535 {
		return usageError(fmt.Errorf("--port %d: want 1-65535", o.Port))
	}
	rootDir, id, err := ensureBuilt(ctx, g, o.Arg, o.Vars, stderr)
	if err != nil {
		return err
	}
	rootDir, release, err := holdRoot(ctx, g.Root, rootDir)
	if err != nil {
		return err
	}
	defer release()
	return runner.RunUI(ctx, runner.StartOptions{
		RuntimeRoot:  rootDir,
		StateDir:     runner.StateDir(g.Root, id),
		Listen:       o.Listen,
		Port:         o.Port,
		ModelsDir:    o.ModelsDir,
		ExtraArgs:    o.ExtraArgs,
		BaseEnv:      comfyEnviron(),
		Log:          stderr,
		ReadyTimeout: o.ReadyTimeout,
	}, func(url string) {
		fmt.Fprintf(stdout, "ComfyUI (%s) is ready at %s; Ctrl-C stops it\n", id, url)
	})
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
