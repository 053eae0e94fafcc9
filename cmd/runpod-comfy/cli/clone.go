package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/internal/atomicfile"
	"github.com/runpod-comfy/runpod-comfy/lang"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// CloneOptions are the arguments of clone.
type CloneOptions struct {
	Src, Dst string
}

func newCloneCmd(g *Globals) *cobra.Command {
	o := &CloneOptions{}
	cmd := &cobra.Command{
		Use:   "clone <src> <dst>",
		Short: "Copy a spec to a new version id (same language, version_id rewritten)",
		Long: `clone copies the spec of version <src> (an id, or a spec file) to <dst>.json or <dst>.hcl
beside it, in the same language, with version_id set to <dst>. Everything else, comments and
layout included, is kept. The copy is then validated.`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeVersionIDs(g, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Src, o.Dst = args[0], args[1]
			return runClone(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	return cmd
}

func runClone(ctx context.Context, g *Globals, o *CloneOptions, stdout, stderr io.Writer) error {
	if err := specs.CheckVersionID(o.Dst); err != nil {
		return usageError(err)
	}
	src, err := specPath(g, o.Src)
	if err != nil {
		return err
	}
	ext := filepath.Ext(src)
	dir := filepath.Dir(src)
	dst := filepath.Join(dir, o.Dst+ext)
	for _, e := range []string{".json", ".hcl"} {
		p := filepath.Join(dir, o.Dst+e)
		if _, err := os.Stat(p); err == nil {
			return usageError(fmt.Errorf("%s exists: delete it first or pick another id", p))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("reading spec: %w", err)
	}
	out, err := lang.SetVersionID(src, data, o.Dst)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(dst, out, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cloned %s to %s\n", src, dst)
	s, _, diags, err := loadSpecDiags(ctx, g, dst, nil)
	printWarnings(stderr, diags)
	if err != nil {
		return fmt.Errorf("the copy is not valid (fix %s or delete it): %w", dst, err)
	}
	fmt.Fprintf(stdout, "ok %s\n", s.VersionID)
	return nil
}

// specPath returns the spec file named by arg: a version id in the versions directory, or a
// path to a .json or .hcl file.
func specPath(g *Globals, arg string) (string, error) {
	if isSpecPath(arg) {
		if _, err := os.Stat(arg); err != nil {
			return "", usageError(fmt.Errorf("spec file: %w", err))
		}
		return arg, nil
	}
	p, err := lang.FindVersion(g.VersionsDir, arg)
	if err != nil {
		var se *lang.SpecError
		if errors.As(err, &se) {
			return "", err
		}
		return "", usageError(err)
	}
	return p, nil
}
