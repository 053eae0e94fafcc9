package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/builder"
	"github.com/runpod-comfy/runpod-comfy/diff"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// DiffOptions are the flags and arguments of diff.
type DiffOptions struct {
	A, B    string
	Vars    []string
	Offline bool
}

func newDiffCmd(g *Globals) *cobra.Command {
	o := &DiffOptions{}
	cmd := &cobra.Command{
		Use:   "diff <a> <b>",
		Short: "Show what changed between two versions, specs or locks",
		Long: `diff compares two versions. Each side is a version id, a spec file or a lock file
(*.lock.json). A version id or spec uses its lock, resolving it first when it is missing or
stale. It shows the ComfyUI commit change (and how many commits apart, when the local git mirror
has both), custom nodes added, removed or moved, Python packages added, removed, upgraded or
downgraded, models added, removed or changed, and the change in total size and in size new to
the store. --json prints the stable form documented in docs/check-and-diff.md.

Exit status: 0 whether or not the sides differ; 2 on usage or spec errors.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.A, o.B = args[0], args[1]
			return runDiff(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().BoolVar(&o.Offline, "offline", false, "no network when a side must be resolved")
	addVarFlag(cmd, &o.Vars)
	return cmd
}

func runDiff(ctx context.Context, g *Globals, o *DiffOptions, stdout, stderr io.Writer) error {
	s, err := store.Open(g.Root)
	if err != nil {
		return err
	}
	var sides [2]diff.Side
	for i, arg := range []string{o.A, o.B} {
		if sides[i], err = diffSide(ctx, g, s, o, arg, stderr); err != nil {
			return err
		}
	}
	rep := diff.Compare(sides[0], sides[1], builder.DiffOptions(ctx, s))
	if g.JSON {
		return writeIndentedJSON(stdout, rep)
	}
	return rep.WriteText(stdout)
}

// diffSide loads one side: a lock file as is, else a spec (id or file) with its lock.
func diffSide(ctx context.Context, g *Globals, s *store.Store, o *DiffOptions, arg string, stderr io.Writer) (diff.Side, error) {
	if isLockFile(arg) {
		l, err := specs.ReadLock(arg)
		if err != nil {
			return diff.Side{}, usageError(err)
		}
		return diff.Side{Label: filepath.Base(arg), Lock: l}, nil
	}
	bo, done, err := prepareVersion(ctx, g, arg, o.Vars, nil, stderr)
	if err != nil {
		return diff.Side{}, err
	}
	defer done()
	bo.Offline = o.Offline || bo.Offline
	lock, _, _, err := builder.EnsureLock(ctx, bo)
	done()
	if err != nil {
		return diff.Side{}, fmt.Errorf("resolving %s: %w", arg, err)
	}
	return builder.DiffSide(s, bo.Spec.VersionID, bo.Spec, lock), nil
}

// isLockFile reports whether arg is a lock file: named *.lock.json, or a JSON file with a
// lock_version field.
func isLockFile(arg string) bool {
	if strings.HasSuffix(arg, ".lock.json") {
		return true
	}
	if !strings.HasSuffix(arg, ".json") {
		return false
	}
	data, err := os.ReadFile(arg)
	if err != nil {
		return false
	}
	var probe struct {
		LockVersion *int `json:"lock_version"`
	}
	return json.Unmarshal(data, &probe) == nil && probe.LockVersion != nil
}
