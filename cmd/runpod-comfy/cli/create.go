package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/internal/atomicfile"
	"github.com/runpod-comfy/runpod-comfy/internal/inputfile"
	"github.com/runpod-comfy/runpod-comfy/lang"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// CreateOptions are the flags and argument of create.
type CreateOptions struct {
	ID           string
	Format       string // json or hcl
	ComfyCommit  string
	ComfyRepo    string
	FromSnapshot string
	Force        bool
}

func newCreateCmd(g *Globals) *cobra.Command {
	o := &CreateOptions{}
	cmd := &cobra.Command{
		Use:   "create <id>",
		Short: "Write a starter spec versions/<id>.json (or .hcl), optionally from a ComfyUI-Manager snapshot",
		Long: `create writes a starter spec for version <id> into --versions-dir: ComfyUI from --comfy-repo
at --comfy-commit (without one, the default branch, pinned when you resolve).

--from-snapshot FILE imports a ComfyUI-Manager snapshot (JSON, or YAML as Manager saves it):
ComfyUI's commit, the git custom nodes at their commits, the Comfy Registry nodes
(cnr_custom_nodes) at their versions, and the pip packages as python.packages except the torch
family and nvidia-* (left to the base image). An enabled single-file node is refused, naming it:
it has no source to build from. What is not carried (disabled nodes, unusable URLs) is listed as
warnings. "runpod-comfy snapshot <id>" writes the other way.

An existing spec of that id is kept unless --force.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ID = args[0]
			return runCreate(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Format, "format", "json", "spec language: json or hcl")
	f.StringVar(&o.ComfyCommit, "comfy-commit", "", "ComfyUI commit to pin (40 hex digits)")
	f.StringVar(&o.ComfyRepo, "comfy-repo", lang.DefaultComfyRepo, "ComfyUI git repository")
	f.StringVar(&o.FromSnapshot, "from-snapshot", "", "import a ComfyUI-Manager snapshot (JSON or YAML)")
	f.BoolVar(&o.Force, "force", false, "overwrite an existing spec of that id")
	return cmd
}

func runCreate(ctx context.Context, g *Globals, o *CreateOptions, stdout, stderr io.Writer) error {
	if err := specs.CheckVersionID(o.ID); err != nil {
		return usageError(err)
	}
	if o.Format != "json" && o.Format != "hcl" {
		return usageError(fmt.Errorf("--format %q: json or hcl", o.Format))
	}
	if o.ComfyCommit != "" && !specs.IsFullCommit(o.ComfyCommit) {
		return usageError(fmt.Errorf("--comfy-commit %q is not a full commit (40 or 64 hex digits)", o.ComfyCommit))
	}
	if err := specs.CheckGitURL(o.ComfyRepo); err != nil {
		return usageError(fmt.Errorf("--comfy-repo: %w", err))
	}
	path := filepath.Join(g.VersionsDir, o.ID+"."+o.Format)
	other := filepath.Join(g.VersionsDir, o.ID+"."+map[string]string{"json": "hcl", "hcl": "json"}[o.Format])
	for _, p := range []string{path, other} {
		if _, err := os.Stat(p); err == nil && !o.Force {
			return usageError(fmt.Errorf("%s exists: pass --force to replace it", p))
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}

	s := &specs.Spec{SchemaVersion: specs.SchemaVersion, VersionID: o.ID, Comfy: specs.Comfy{Repo: o.ComfyRepo, Ref: "HEAD"}}
	var notes []string
	if o.FromSnapshot != "" {
		data, err := inputfile.Read(o.FromSnapshot, inputfile.MaxSnapshot)
		if err != nil {
			return usageError(fmt.Errorf("--from-snapshot: %w", err))
		}
		s, notes, err = lang.ImportSnapshot(data, o.ID, o.ComfyRepo)
		if err != nil {
			return usageError(fmt.Errorf("--from-snapshot %s: %w", o.FromSnapshot, err))
		}
	}
	if o.ComfyCommit != "" {
		s.Comfy.Commit, s.Comfy.Ref = strings.ToLower(o.ComfyCommit), ""
	}

	var data []byte
	var err error
	if o.Format == "hcl" {
		data, err = lang.FormatHCL(s)
		data = append([]byte(starterHCLHeader), data...)
		if len(s.CustomNodes) == 0 && len(s.Models) == 0 {
			data = append(data, []byte(starterHCLExamples)...)
		}
	} else {
		data, err = lang.FormatJSON(s)
	}
	if err != nil {
		return err
	}
	// What create writes must read back as the same spec.
	back, _, err := lang.LoadBytes(ctx, path, data, lang.Options{VersionsDir: g.VersionsDir})
	if err != nil {
		return fmt.Errorf("internal error: the starter spec does not read back: %w", err)
	}
	if specs.Hash(back) != specs.Hash(s) {
		return fmt.Errorf("internal error: the starter spec reads back differently")
	}
	if err := os.MkdirAll(g.VersionsDir, 0o755); err != nil {
		return fmt.Errorf("creating versions directory: %w", err)
	}
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	if o.Force {
		if err := os.Remove(other); err == nil {
			fmt.Fprintf(stderr, "removed %s (replaced by %s)\n", other, path)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	for _, n := range notes {
		fmt.Fprintf(stderr, "warning: %s\n", n)
	}
	fmt.Fprintf(stdout, "created %s\n", path)
	if o.FromSnapshot != "" {
		fmt.Fprintf(stdout, "imported %d custom node(s) and %d pip package(s); %d warning(s)\n", len(s.CustomNodes), pythonPackages(s), len(notes))
	}
	return nil
}

func pythonPackages(s *specs.Spec) int {
	if s.Python == nil {
		return 0
	}
	return len(s.Python.Packages)
}

const starterHCLHeader = `# A runpod-comfy version spec (docs/spec.md). Check it with: runpod-comfy validate <id>

`

const starterHCLExamples = `
# Add custom nodes and models, for example:
#
# custom_node "ComfyUI-Impact-Pack" {
#   repo   = "https://github.com/ltdrdata/ComfyUI-Impact-Pack"
#   commit = "<40-hex commit>"
# }
#
# model "sdxl" {
#   source        = "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors"
#   target_subdir = "checkpoints"
#   checksum      = "sha256:31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6174b4f9ac1fc"
# }
`
