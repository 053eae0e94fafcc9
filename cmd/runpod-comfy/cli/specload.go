package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/lang"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// addVarFlag adds the repeatable --var name=value flag (HCL variable overrides) to cmd.
func addVarFlag(cmd *cobra.Command, vars *[]string) {
	cmd.Flags().StringArrayVar(vars, "var", nil, "set an HCL spec variable: --var name=value (repeatable)")
}

// parseVars turns --var name=value flags into a map; a malformed one is a usage error.
func parseVars(vars []string) (map[string]string, error) {
	if len(vars) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(vars))
	for _, kv := range vars {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError(fmt.Errorf("--var %q: write name=value", kv))
		}
		out[k] = v
	}
	return out, nil
}

// isSpecPath reports whether arg names a spec file rather than a version id.
func isSpecPath(arg string) bool {
	return strings.HasSuffix(arg, ".json") || strings.HasSuffix(arg, ".hcl") || strings.ContainsRune(arg, filepath.Separator)
}

// loadSpec reads the spec named by arg, a version id (looked up in g.VersionsDir) or a path to a
// .json or .hcl file, with the --var overrides vars. Warnings go to stderr. It returns the
// evaluated spec and the path of its file. An invalid spec gives an error that exits 2 and
// lists every problem as file:line:col; an unknown id is a usage error.
func loadSpec(ctx context.Context, g *Globals, arg string, vars []string) (*specs.Spec, string, error) {
	s, path, diags, err := loadSpecDiags(ctx, g, arg, vars)
	printWarnings(os.Stderr, diags)
	if err != nil {
		return nil, path, err
	}
	return s, path, nil
}

// loadSpecDiags is loadSpec without printing: it returns the diagnostics as well.
func loadSpecDiags(ctx context.Context, g *Globals, arg string, vars []string) (*specs.Spec, string, lang.Diagnostics, error) {
	vm, err := parseVars(vars)
	if err != nil {
		return nil, "", nil, err
	}
	path := arg
	if !isSpecPath(arg) {
		path, err = lang.FindVersion(g.VersionsDir, arg)
		if err != nil {
			var se *lang.SpecError
			if errors.As(err, &se) {
				return nil, "", se.Diags, err
			}
			return nil, "", nil, usageError(err)
		}
	} else if _, err := os.Stat(path); err != nil {
		return nil, path, nil, usageError(fmt.Errorf("spec file: %w", err))
	}
	opts := lang.Options{Vars: vm, VersionsDir: g.VersionsDir}
	if isSpecPath(arg) {
		opts.VersionsDir = filepath.Dir(path)
	}
	s, diags, err := lang.LoadFile(ctx, path, opts)
	if err != nil {
		var se *lang.SpecError
		if errors.As(err, &se) {
			return nil, path, diags, fmt.Errorf("invalid spec %s:\n%w", path, err)
		}
		return nil, path, diags, err
	}
	return s, path, diags, nil
}

// printWarnings prints the warnings of diags, one a line.
func printWarnings(w io.Writer, diags lang.Diagnostics) {
	for _, d := range diags.Warnings() {
		fmt.Fprintln(w, d.String())
	}
}
