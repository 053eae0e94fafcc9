package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/builder"
)

// ResolveOptions are the flags and arguments of resolve.
type ResolveOptions struct {
	Arg      string // version id or spec file
	Names    []string
	Update   bool
	LockFile string
	Vars     []string
	Offline  bool
}

func newResolveCmd(g *Globals) *cobra.Command {
	o := &ResolveOptions{}
	cmd := &cobra.Command{
		Use:   "resolve <id>|<file> [--update [NAME...]] [--lock FILE]",
		Short: "Pin every ref of a version to a commit and write its lock",
		Long: `resolve turns a version spec into its lock: every branch or tag pinned to a commit (ls-remote),
written to ROOT/cache/runpod-comfy/resolved/<id>.lock.json, or to --lock FILE (to keep the lock
beside the spec in git).

A lock whose spec_hash still matches the spec is kept as is, without network. When the spec
changed, only the entries that changed are resolved again; the others keep their commits, even
when their branch has moved since. --update re-resolves every entry, or only the named ones
("comfyui", a custom node's name, "python" or a model target such as
checkpoints/x.safetensors); a name the spec does not have is an error. Entries pinned to full commits need no network.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Arg, o.Names = args[0], args[1:]
			if len(o.Names) > 0 && !o.Update {
				return usageError(errors.New("names after the version are only accepted with --update"))
			}
			return runResolve(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Update, "update", false, "re-resolve all entries, or only the NAMEs given after the version")
	f.StringVar(&o.LockFile, "lock", "", "lock file (default ROOT/cache/runpod-comfy/resolved/<id>.lock.json)")
	f.BoolVar(&o.Offline, "offline", false, "no network: pip resolves from the spec's local find_links only")
	addVarFlag(cmd, &o.Vars)
	return cmd
}

func runResolve(ctx context.Context, g *Globals, o *ResolveOptions, stdout, stderr io.Writer) error {
	bo, done, err := prepareVersion(ctx, g, o.Arg, o.Vars, nil, stderr)
	if err != nil {
		return err
	}
	defer done()
	bo.LockFile, bo.Update, bo.UpdateNames, bo.Offline = o.LockFile, o.Update, o.Names, o.Offline
	lock, file, resolved, err := builder.EnsureLock(ctx, bo)
	done()
	if err != nil {
		return err
	}
	if g.JSON {
		return writeIndentedJSON(stdout, lock)
	}
	if resolved {
		fmt.Fprintf(stdout, "wrote %s\n", file)
	} else {
		fmt.Fprintf(stdout, "%s is up to date (spec unchanged)\n", file)
	}
	ref := func(r string) string {
		if r == "" {
			return "(commit)"
		}
		return r
	}
	fmt.Fprintf(stdout, "  %-28s %-20s %s\n", "comfyui", ref(lock.Comfy.Ref), lock.Comfy.Commit)
	for _, n := range lock.CustomNodes {
		if r := n.Registry; r != nil {
			fmt.Fprintf(stdout, "  %-28s %-20s %s (%s)\n", n.Name, r.Request, r.ID+"@"+r.Version, r.SHA256)
			continue
		}
		fmt.Fprintf(stdout, "  %-28s %-20s %s\n", n.Name, ref(n.Ref), n.Commit)
	}
	return nil
}
