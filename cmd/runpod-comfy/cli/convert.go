package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/internal/atomicfile"
	"github.com/runpod-comfy/runpod-comfy/lang"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// ConvertOptions are the flags and argument of convert.
type ConvertOptions struct {
	Arg    string // a spec file or version id
	To     string // hcl or json
	Output string // file; empty means stdout
	Vars   []string
}

func newConvertCmd(g *Globals) *cobra.Command {
	o := &ConvertOptions{}
	cmd := &cobra.Command{
		Use:   "convert <file|id> --to hcl|json [-o FILE]",
		Short: "Write a spec in the other language (the evaluated spec: variables, locals and extends applied)",
		Long: `convert reads a spec, evaluates it (variables, locals, functions and extends applied, quirks
rewritten into their meaning) and writes it in JSON or HCL, to stdout or -o FILE. The result
reads back as the same spec (same spec hash); convert checks that before writing.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeVersionIDs(g, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Arg = args[0]
			return runConvert(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&o.To, "to", "", "output language: hcl or json (default: the other one)")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "write to FILE instead of stdout")
	addVarFlag(cmd, &o.Vars)
	return cmd
}

func runConvert(ctx context.Context, g *Globals, o *ConvertOptions, stdout, stderr io.Writer) error {
	s, path, err := loadSpec(ctx, g, o.Arg, o.Vars)
	if err != nil {
		return err
	}
	to := o.To
	if to == "" {
		to = "hcl"
		if strings.HasSuffix(path, ".hcl") {
			to = "json"
		}
	}
	var data []byte
	switch to {
	case "json":
		data, err = lang.FormatJSON(s)
	case "hcl":
		data, err = lang.FormatHCL(s)
	default:
		return usageError(fmt.Errorf("--to %q: hcl or json", o.To))
	}
	if err != nil {
		return err
	}
	// Lossless for the evaluated spec: what is written reads back with the same hash.
	back, _, err := lang.LoadBytes(ctx, s.VersionID+"."+to, data, lang.Options{})
	if err != nil {
		return fmt.Errorf("internal error: converted spec does not read back: %w", err)
	}
	if specs.Hash(back) != specs.Hash(s) {
		return fmt.Errorf("internal error: converted spec reads back differently")
	}
	if o.Output == "" {
		_, err := stdout.Write(data)
		return err
	}
	if want := s.VersionID + "." + to; filepath.Base(o.Output) != want {
		fmt.Fprintf(stderr, "warning: %s is not named %s: version_id is %q, so validate will reject it under this name\n", o.Output, want, s.VersionID)
	}
	if err := atomicfile.WriteFile(o.Output, data, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", o.Output)
	return nil
}
