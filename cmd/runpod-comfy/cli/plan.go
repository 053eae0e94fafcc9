package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/builder"
)

// PlanOptions are the flags and arguments of plan.
type PlanOptions struct {
	Arg      string // version id or spec file
	LockFile string
	Dot      bool
	Vars     []string
}

func newPlanCmd(g *Globals) *cobra.Command {
	o := &PlanOptions{}
	cmd := &cobra.Command{
		Use:   "plan <id>|<file> [--json|--dot]",
		Short: "Show the derivation graph of a version: each object's store path and whether it is built",
		Long: `plan prints the derivations a build of the version consists of (ComfyUI and custom node
sources, models, python, venv, the runtime root), inputs first, with the store path each will
have and whether it is already valid in the store. It resolves the spec first when its lock is
missing or stale, as build does, and builds nothing. --json prints the nodes as JSON, --dot as
a Graphviz graph.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Arg = args[0]
			if o.Dot && g.JSON {
				return usageError(fmt.Errorf("--json and --dot: pick one"))
			}
			return runPlan(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.LockFile, "lock", "", "lock file (default ROOT/cache/runpod-comfy/resolved/<id>.lock.json)")
	f.BoolVar(&o.Dot, "dot", false, "print a Graphviz digraph")
	addVarFlag(cmd, &o.Vars)
	return cmd
}

func runPlan(ctx context.Context, g *Globals, o *PlanOptions, stdout, stderr io.Writer) error {
	bo, done, err := prepareVersion(ctx, g, o.Arg, o.Vars, nil, stderr)
	if err != nil {
		return err
	}
	defer done()
	bo.LockFile = o.LockFile
	plan, s, err := builder.LoadPlan(ctx, bo)
	done()
	if err != nil {
		return err
	}
	nodes := plan.Describe(s)
	switch {
	case g.JSON:
		return writeIndentedJSON(stdout, nodes)
	case o.Dot:
		_, err := io.WriteString(stdout, builder.Dot(nodes))
		return err
	}
	todo := 0
	for _, n := range nodes {
		state := "valid"
		if !n.Valid {
			state, todo = "to build", todo+1
		}
		name := n.Name
		if n.Registry != "" {
			name += " (" + n.Registry + ")"
		}
		fmt.Fprintf(stdout, "%-8s %-6s %-28s %s\n", state, n.Kind, name, n.StorePath)
	}
	fmt.Fprintf(stdout, "%d objects, %d to build\n", len(nodes), todo)
	return nil
}
