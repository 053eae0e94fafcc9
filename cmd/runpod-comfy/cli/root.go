package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// Globals are the flags every command shares.
type Globals struct {
	Root        string // ROOT: the volume (docs/design.md section 3)
	VersionsDir string
	JSON        bool
	Verbose     bool
	NoColor     bool
}

// commands is every command of runpod-comfy, one constructor each (one file per command);
// a new command is added here.
var commands = []func(g *Globals) *cobra.Command{
	newBuildCmd,
	newCacheCmd,
	newCheckCmd,
	newCloneCmd,
	newCompletionCmd,
	newConvertCmd,
	newCreateCmd,
	newDeleteCmd,
	newDiffCmd,
	newGCCmd,
	newInitCmd,
	newPlanCmd,
	newPushCmd,
	newResolveCmd,
	newRollbackCmd,
	newRunHandlerCmd,
	newRunUICmd,
	newServeCmd,
	newSnapshotCmd,
	newStoreCmd,
	newValidateCmd,
	newVerifyModelsCmd,
	newVersionCmd,
}

const rootLong = `runpod-comfy builds ComfyUI environments (ComfyUI, custom nodes, a Python venv, models)
from a declarative version spec into a content-addressed store on a RunPod network volume, runs
them, and keeps the volume clean.

ROOT is --root, else $RUNPOD_COMFY_ROOT, else /runpod-volume when mounted (serverless), else
/workspace when mounted (pods), else $XDG_DATA_HOME/runpod-comfy (~/.local/share/runpod-comfy).

Exit codes:
  0    ok
  1    failure (build failed, check found a difference, ...)
  2    bad usage or an invalid spec
  130  interrupted`

func newRootCmd(ctx context.Context) *cobra.Command {
	g := &Globals{}
	root := &cobra.Command{
		Use:           "runpod-comfy",
		Short:         "Nix for ComfyUI on RunPod: reproducible environments in a shared store",
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if g.Root == "" {
				g.Root = defaultRoot()
			}
			abs, err := filepath.Abs(g.Root)
			if err != nil {
				return usageError(fmt.Errorf("--root: %w", err))
			}
			g.Root = abs
			if os.Getenv("NO_COLOR") != "" {
				g.NoColor = true
			}
			return nil
		},
	}
	root.SetContext(ctx)
	pf := root.PersistentFlags()
	pf.StringVar(&g.Root, "root", os.Getenv("RUNPOD_COMFY_ROOT"), "ROOT directory: the volume holding store/, builds/, state/ and cache/")
	pf.StringVar(&g.VersionsDir, "versions-dir", "versions", "directory of version specs (<id>.json or <id>.hcl)")
	pf.BoolVar(&g.JSON, "json", false, "machine-readable JSON output")
	pf.BoolVarP(&g.Verbose, "verbose", "v", false, "more detail")
	pf.BoolVar(&g.NoColor, "no-color", false, "no colours in output (also $NO_COLOR)")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usageError(err) })
	for _, f := range commands {
		root.AddCommand(f(g))
	}
	return root
}

// defaultRoot picks ROOT as docs/design.md section 3 says, when neither --root nor
// $RUNPOD_COMFY_ROOT is set.
func defaultRoot() string {
	for _, mount := range []string{"/runpod-volume", "/workspace"} {
		if fi, err := os.Stat(mount); err == nil && fi.IsDir() {
			return mount
		}
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "runpod-comfy")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "."
	}
	return filepath.Join(home, ".local", "share", "runpod-comfy")
}

// isFlagError reports whether err came from cobra's argument or command parsing.
func isFlagError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "requires at most", "invalid argument", "flag needs an argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
