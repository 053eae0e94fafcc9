package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/lang"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// ValidateOptions are the flags and arguments of validate.
type ValidateOptions struct {
	Args []string // version ids or spec files; none means every spec in the versions directory
	Vars []string
}

func newValidateCmd(g *Globals) *cobra.Command {
	o := &ValidateOptions{}
	cmd := &cobra.Command{
		Use:   "validate [<id>|<file>...]",
		Short: "Check version specs and print every warning and error with file:line:col",
		Long: `validate reads each spec (a version id from --versions-dir, or a .json/.hcl file), evaluates
it and checks it. It prints each accepted quirk as a warning and each problem as an error with
file:line:col, then "ok <id>" for each valid spec. Without arguments it checks every spec in the
versions directory. Exit code 2 when any spec is invalid.`,
		ValidArgsFunction: completeVersionIDs(g, 1<<20),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Args = args
			return runValidate(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	addVarFlag(cmd, &o.Vars)
	return cmd
}

// validateResult is one spec's outcome in --json output.
type validateResult struct {
	Arg         string           `json:"arg"`
	File        string           `json:"file,omitempty"`
	VersionID   string           `json:"version_id,omitempty"`
	Valid       bool             `json:"valid"`
	SpecHash    string           `json:"spec_hash,omitempty"`
	Diagnostics []diagnosticJSON `json:"diagnostics"`
	Error       string           `json:"error,omitempty"`
}

type diagnosticJSON struct {
	Severity string `json:"severity"`
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Col      int    `json:"col,omitempty"`
	Field    string `json:"field,omitempty"`
	Message  string `json:"message"`
}

func runValidate(ctx context.Context, g *Globals, o *ValidateOptions, stdout, stderr io.Writer) error {
	args := o.Args
	if len(args) == 0 {
		var err error
		args, err = listVersions(g.VersionsDir)
		if err != nil {
			return err
		}
		if len(args) == 0 {
			return usageError(fmt.Errorf("no specs in %s: pass ids or files", g.VersionsDir))
		}
	}
	var results []validateResult
	invalid := false
	for _, arg := range args {
		s, path, diags, err := loadSpecDiags(ctx, g, arg, o.Vars)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r := validateResult{Arg: arg, File: path, Diagnostics: []diagnosticJSON{}}
		for _, d := range diags {
			r.Diagnostics = append(r.Diagnostics, diagnosticJSON{Severity: d.Severity.String(), File: d.Pos.File,
				Line: d.Pos.Line, Col: d.Pos.Col, Field: d.Field, Message: d.Message})
		}
		if !g.JSON {
			for _, d := range diags {
				fmt.Fprintln(stderr, d.String())
			}
		}
		var se *lang.SpecError
		switch {
		case err == nil:
			r.Valid, r.VersionID, r.SpecHash = true, s.VersionID, specs.Hash(s)
			switch {
			case g.JSON:
			case g.Verbose:
				fmt.Fprintf(stdout, "ok %s %s\n", s.VersionID, r.SpecHash)
			default:
				fmt.Fprintf(stdout, "ok %s\n", s.VersionID)
			}
		case errors.As(err, &se):
			invalid = true
			if !g.JSON {
				fmt.Fprintf(stderr, "invalid %s (%d errors)\n", arg, len(se.Diags))
			}
		default:
			invalid = true
			r.Error = err.Error()
			if !g.JSON {
				fmt.Fprintf(stderr, "invalid %s: %v\n", arg, err)
			}
		}
		results = append(results, r)
	}
	if g.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return err
		}
	}
	if invalid {
		return silentExit(ExitUsage)
	}
	return nil
}

// listVersions returns the ids of the specs in dir, sorted.
func listVersions(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading versions directory: %w", err)
	}
	seen := map[string]bool{}
	var ids []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		ext := filepath.Ext(name)
		if ext != ".json" && ext != ".hcl" {
			continue
		}
		id := strings.TrimSuffix(name, ext)
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}
