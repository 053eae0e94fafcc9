package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/builder"
	"github.com/runpod-comfy/runpod-comfy/diff"
)

// CheckOptions are the flags and arguments of check.
type CheckOptions struct {
	Arg        string
	Vars       []string
	LockFile   string
	Jobs       int
	Offline    bool
	SkipModels bool
	Keep       bool
}

func newCheckCmd(g *Globals) *cobra.Command {
	o := &CheckOptions{}
	cmd := &cobra.Command{
		Use:   "check <id>|<file>",
		Short: "Rebuild a version in a scratch store and compare it, byte for byte",
		Long: `check proves that a version builds the same bytes again. It builds the version first when
it is not built, verifies its objects in the store (as store verify does), then rebuilds every
object that is not fixed by its content (the git exports, the venv and the runtime root) in a
scratch store under ROOT/cache/runpod-comfy/check/, and compares each NAR hash with the store's
and the lock's. For each difference it names the object, the files that differ with their sizes
and hashes, and for text files the first differing lines. Models are fixed by their checksum:
they are verified, not downloaded again.

Exit status: 0 when everything matches, 1 when something differs, 2 on usage or spec errors.
--keep leaves the scratch store for inspection.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Arg = args[0]
			return runCheck(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.LockFile, "lock", "", "lock file (default ROOT/cache/runpod-comfy/resolved/<id>.lock.json)")
	f.IntVarP(&o.Jobs, "jobs", "j", 0, "objects rebuilt at once (default: the number of CPUs)")
	f.BoolVar(&o.Offline, "offline", false, "no network (see build --offline)")
	f.BoolVar(&o.SkipModels, "skip-models", false, "check the version as built with --skip-models")
	f.BoolVar(&o.Keep, "keep", false, "leave the scratch store in place and print where it is")
	addVarFlag(cmd, &o.Vars)
	return cmd
}

func runCheck(ctx context.Context, g *Globals, o *CheckOptions, stdout, stderr io.Writer) error {
	if o.Jobs < 0 {
		return usageError(fmt.Errorf("-j %d: must be at least 1", o.Jobs))
	}
	// No substituters: check rebuilds to compare, it does not download what it checks.
	bo, done, err := prepareVersion(ctx, g, o.Arg, o.Vars, nil, stderr)
	if err != nil {
		return err
	}
	defer done()
	bo.LockFile, bo.Jobs, bo.SkipModels, bo.Offline = o.LockFile, o.Jobs, o.SkipModels, o.Offline || bo.Offline
	rep, err := builder.Check(ctx, builder.CheckOptions{BuildOptions: bo, Keep: o.Keep})
	done()
	if err != nil {
		return err
	}
	if g.JSON {
		if err := writeIndentedJSON(stdout, rep); err != nil {
			return err
		}
	} else {
		printCheckReport(stdout, rep)
	}
	if !rep.OK() {
		return silentExit(ExitFailure)
	}
	return nil
}

func printCheckReport(w io.Writer, rep *builder.CheckReport) {
	v := rep.Verify
	fmt.Fprintf(w, "verify:  %d objects in the store, %d problems\n", v.Checked, len(v.Problems))
	for _, p := range v.Problems {
		fmt.Fprintf(w, "  %s %s: %s\n", p.Kind, p.Path, p.Detail)
		for _, f := range p.Files {
			fmt.Fprintf(w, "      %s\n", f)
		}
	}
	fmt.Fprintf(w, "rebuilt: %d objects in a scratch store\n", len(rep.Objects))
	for _, o := range rep.Objects {
		status := "ok     "
		if !o.Match {
			status = "DIFFERS"
		}
		src := ""
		if o.Source != "" && o.Source != "built" {
			src = " (" + o.Source + ")"
		}
		fmt.Fprintf(w, "  %s %-5s %s%s\n", status, o.Kind, o.Path, src)
		if o.Match {
			continue
		}
		fmt.Fprintf(w, "          store   %s\n          rebuilt %s\n", o.StoreNarHash, o.RebuiltNarHash)
		if o.LockNarHash != "" && o.LockNarHash != o.RebuiltNarHash {
			fmt.Fprintf(w, "          lock    %s\n", o.LockNarHash)
		}
		for _, f := range o.Files {
			name := f.Path
			if name == "" {
				name = "(the object itself)"
			}
			switch f.Change {
			case "only-in-store":
				fmt.Fprintf(w, "          %s: only in the store (%s)\n", name, diff.HumanSize(f.StoreSize))
			case "only-in-rebuild":
				fmt.Fprintf(w, "          %s: only in the rebuild (%s)\n", name, diff.HumanSize(f.RebuiltSize))
			case "type":
				fmt.Fprintf(w, "          %s: file type or executable bit differs\n", name)
			default:
				fmt.Fprintf(w, "          %s: %s sha256:%.12s -> %s sha256:%.12s\n", name,
					diff.HumanSize(f.StoreSize), f.StoreSHA256, diff.HumanSize(f.RebuiltSize), f.RebuiltSHA256)
			}
			for _, l := range f.Lines {
				fmt.Fprintf(w, "            line %d: %q -> %q\n", l.Line, l.Store, l.Rebuilt)
			}
		}
	}
	if rep.Scratch != "" {
		fmt.Fprintf(w, "scratch: %s (kept)\n", rep.Scratch)
	}
	if rep.OK() {
		fmt.Fprintln(w, "result:  reproducible")
	} else {
		fmt.Fprintf(w, "result:  NOT reproducible: %d of %d rebuilt objects differ, %d store problems\n", rep.Differing(), len(rep.Objects), len(v.Problems))
	}
}
