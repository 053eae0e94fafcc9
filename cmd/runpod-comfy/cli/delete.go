package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/lang"
)

func init() { register(newDeleteCmd) }

// DeleteOptions are the flags and argument of delete.
type DeleteOptions struct {
	ID    string
	Force bool
}

func newDeleteCmd(g *Globals) *cobra.Command {
	o := &DeleteOptions{}
	cmd := &cobra.Command{
		Use:   "delete <id>",
		Short: "Remove a version's spec file (what it built stays until gc)",
		Long: `delete removes versions/<id>.json or versions/<id>.hcl and nothing else: the runtime root
builds/comfy-<id>, its generations, its state and its store objects stay until you remove the
root and run runpod-comfy gc. A spec that other specs extend is kept unless --force.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeVersionIDs(g, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ID = args[0]
			return runDelete(g, o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&o.Force, "force", false, "delete even when other specs extend it")
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
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("deleting spec: %w", err)
	}
	fmt.Fprintf(out, "deleted %s\n", path)
	fmt.Fprintf(out, "what it built (builds/comfy-%s, its generations and store objects) stays until it is unrooted and `runpod-comfy gc` runs\n", o.ID)
	return nil
}
