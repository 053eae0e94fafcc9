package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/builder"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// RollbackOptions are the flags and arguments of rollback.
type RollbackOptions struct {
	ID string
	To int
}

func newRollbackCmd(g *Globals) *cobra.Command {
	o := &RollbackOptions{}
	cmd := &cobra.Command{
		Use:   "rollback <id> [--to N]",
		Short: "Point builds/comfy-<id> back at an earlier generation",
		Long: `rollback points ROOT/builds/comfy-<id> at the generation before the current one, or at
generation N with --to N. Every build that changes a version's root keeps the previous root as
a generation (ROOT/builds/.generations/comfy-<id>-<N>), so switching back is one atomic symlink
swap and builds nothing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ID = args[0]
			if o.To < 0 {
				return usageError(fmt.Errorf("--to %d: generations are numbered from 1", o.To))
			}
			return runRollback(cmd.Context(), g, o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().IntVar(&o.To, "to", 0, "generation to roll back to (default: the one before the current)")
	return cmd
}

func runRollback(ctx context.Context, g *Globals, o *RollbackOptions, stdout io.Writer) error {
	if err := store.ValidateRootID(o.ID); err != nil {
		return usageError(err)
	}
	p, err := builder.Rollback(ctx, g.Root, o.ID, o.To)
	if err != nil {
		return err
	}
	s, err := store.Open(g.Root)
	if err != nil {
		return err
	}
	gens, err := s.Generations(o.ID)
	if err != nil {
		return err
	}
	type genJSON struct {
		N       int    `json:"n"`
		Path    string `json:"path"`
		Current bool   `json:"current"`
	}
	out := struct {
		ID          string    `json:"id"`
		Root        string    `json:"root"`
		Generations []genJSON `json:"generations"`
	}{ID: o.ID, Root: p.String()}
	for _, gen := range gens {
		out.Generations = append(out.Generations, genJSON{N: gen.N, Path: gen.Path.String(), Current: gen.Current})
	}
	if g.JSON {
		return writeIndentedJSON(stdout, out)
	}
	fmt.Fprintf(stdout, "%s -> %s\n", s.RootLink(o.ID), s.Abs(p))
	for _, gen := range out.Generations {
		mark := " "
		if gen.Current {
			mark = "*"
		}
		fmt.Fprintf(stdout, "%s %3d  %s\n", mark, gen.N, gen.Path)
	}
	return nil
}
