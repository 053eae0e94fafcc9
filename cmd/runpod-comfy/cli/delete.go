package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/builder"
	"github.com/runpod-comfy/runpod-comfy/lang"
	"github.com/runpod-comfy/runpod-comfy/runner"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// DeleteOptions are the flags and argument of delete.
type DeleteOptions struct {
	ID    string
	Force bool
	// Unroot also removes the version's root link and its generations, so that gc can free
	// what only they kept.
	Unroot bool
}

func newDeleteCmd(g *Globals) *cobra.Command {
	o := &DeleteOptions{}
	cmd := &cobra.Command{
		Use:   "delete <id>",
		Short: "Remove a version's spec file, and with --unroot its root and generations",
		Long: `delete removes versions/<id>.json or versions/<id>.hcl. With --unroot it also removes the
version's root link builds/comfy-<id> and every generation builds/.generations/comfy-<id>-<n>,
so that the next runpod-comfy gc frees what only they kept. It prints every path it removes.
Its lock (cache/runpod-comfy/resolved/<id>.lock.json) and its state (state/comfy-<id>: inputs,
outputs, user files) are never removed by delete. A spec that other specs extend is kept
unless --force.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeVersionIDs(g, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ID = args[0]
			return runDelete(g, o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&o.Force, "force", false, "delete even when other specs extend it")
	cmd.Flags().BoolVar(&o.Unroot, "unroot", false, "also remove builds/comfy-<id> and its generations, so that gc can free them")
	return cmd
}

func runDelete(g *Globals, o *DeleteOptions, out io.Writer) error {
	if isSpecPath(o.ID) {
		return usageError(fmt.Errorf("delete takes a version id, not a file: %s", o.ID))
	}
	path, err := specPath(g, o.ID)
	if err != nil {
		return err
	}
	if !o.Force {
		ids, err := listVersions(g.VersionsDir)
		if err != nil {
			return err
		}
		var users []string
		for _, id := range ids {
			p := filepath.Join(g.VersionsDir, id+".hcl")
			base, err := lang.BaseOf(p)
			if err == nil && base == o.ID {
				users = append(users, id)
			}
		}
		if len(users) > 0 {
			return usageError(fmt.Errorf("%s is extended by %v: delete those first or pass --force", o.ID, users))
		}
	}
	// The version's id is its version_id, which a seed tool's spec may set apart from the
	// file name.
	id := o.ID
	if s, _, err := lang.LoadFile(context.Background(), path, lang.Options{VersionsDir: g.VersionsDir}); err == nil {
		id = s.VersionID
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("deleting spec: %w", err)
	}
	fmt.Fprintf(out, "removed spec %s\n", path)
	if !o.Unroot {
		fmt.Fprintf(out, "kept: builds/comfy-%s and its generations (what it built stays in the store; delete --unroot removes them so that gc can free it), its lock and state/comfy-%s\n", id, id)
		return nil
	}
	st, err := store.Open(g.Root)
	if err != nil {
		return err
	}
	removed, err := st.RemoveRoot(id)
	for _, p := range removed {
		fmt.Fprintf(out, "removed root link %s\n", p)
	}
	if err != nil {
		return err
	}
	if len(removed) == 0 {
		fmt.Fprintf(out, "no root link or generation of %s to remove\n", id)
	}
	fmt.Fprintf(out, "kept: the lock %s and the state %s; run runpod-comfy gc to free the store objects nothing else uses\n",
		builder.LockPath(g.Root, id), runner.StateDir(g.Root, id))
	return nil
}
