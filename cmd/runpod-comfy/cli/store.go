package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/internal/progress"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// StoreVerifyOptions are the flags of store verify.
type StoreVerifyOptions struct {
	Repair  bool
	Workers int
	Paths   []string
}

func newStoreCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Inspect and maintain the store: verify, ls, info, du, optimise",
		Long: `store inspects and maintains ROOT/store, the content-addressed store shared by every version
on the volume. See docs/store.md for its layout and rules.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newStoreVerifyCmd(g), newStoreLsCmd(g), newStoreInfoCmd(g), newStoreDuCmd(g), newStoreOptimiseCmd(g))
	return cmd
}

func newStoreVerifyCmd(g *Globals) *cobra.Command {
	o := &StoreVerifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify [PATH...] [--repair]",
		Short: "Recompute NAR hashes and compare them with the metadata",
		Long: `verify recomputes the NAR hash of every valid object (or of the PATHs given), in parallel,
and compares it with the object's metadata. A mismatch names the object and the files in it
that changed. It also reports models whose bytes are not their content address, metadata files
that cannot be read (each a problem of its object only), absolute symlinks into the store (they
break when the volume is mounted elsewhere), references without metadata, and lists store
entries without metadata (crash debris, removed by gc). --repair asks the builder to make every broken object again.
Exit status 1 when a problem is left.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Paths = args
			return runStoreVerify(cmd.Context(), g, o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&o.Repair, "repair", false, "make broken objects again")
	cmd.Flags().IntVarP(&o.Workers, "jobs", "j", 0, "objects hashed in parallel (default: number of CPUs)")
	return cmd
}

// parseStoreArg accepts a store path base name, or any path with one as a component
// (ROOT/store/<digest>-<name>/sub/file).
func parseStoreArg(arg string) (store.Path, error) {
	for _, c := range strings.Split(filepath.ToSlash(arg), "/") {
		if p, err := store.ParsePath(c); err == nil {
			return p, nil
		}
	}
	_, err := store.ParsePath(arg)
	return store.Path{}, usageError(err)
}

func runStoreVerify(ctx context.Context, g *Globals, o *StoreVerifyOptions, stdout io.Writer) error {
	s, err := store.Open(g.Root)
	if err != nil {
		return err
	}
	opts := store.VerifyOptions{Workers: o.Workers}
	for _, a := range o.Paths {
		p, err := parseStoreArg(a)
		if err != nil {
			return err
		}
		opts.Paths = append(opts.Paths, p)
	}
	if o.Repair {
		r, err := storeRepairer(ctx, g)
		if err != nil {
			return fmt.Errorf("--repair: %w", err)
		}
		opts.Repair = r
	}
	rep, err := s.Verify(ctx, opts)
	if err != nil {
		return err
	}
	if g.JSON {
		if err := writeIndentedJSON(stdout, rep); err != nil {
			return err
		}
	} else {
		for _, p := range rep.Problems {
			state := ""
			switch {
			case p.Repaired:
				state = " [repaired]"
			case p.RepairError != "":
				state = " [repair failed: " + p.RepairError + "]"
			}
			fmt.Fprintf(stdout, "%s: %s: %s%s\n", p.Path, p.Kind, p.Detail, state)
			for _, f := range p.Files {
				if f == "" {
					f = "(the object's single file)"
				}
				fmt.Fprintf(stdout, "  file %s\n", f)
			}
		}
		for _, u := range rep.Unregistered {
			fmt.Fprintf(stdout, "%s: no metadata (not valid; gc removes it)\n", u)
		}
		left := 0
		for _, p := range rep.Problems {
			if !p.Repaired {
				left++
			}
		}
		fmt.Fprintf(stdout, "checked %d objects: %d problems, %d left\n", rep.Checked, len(rep.Problems), left)
	}
	if !rep.OK() {
		return silentExit(ExitFailure)
	}
	return nil
}

func newStoreLsCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the valid objects with kind, NAR size and registration time",
		Long: `ls lists the valid objects with kind, NAR size and registration time. An object whose
metadata cannot be read is not valid: it is named on stderr and ls exits 1 after listing the
others.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			s, err := store.Open(g.Root)
			if err != nil {
				return err
			}
			ms, bad, err := s.List()
			if err != nil {
				return err
			}
			// An object whose metadata cannot be read is not valid: it is not listed, but
			// named on stderr, and ls exits 1 so that scripts notice.
			for _, b := range bad {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: corrupt-metadata: %v (not valid; run store verify --repair)\n", b.What(), b.Err)
			}
			defer func() {
				if len(bad) > 0 && err == nil {
					err = silentExit(ExitFailure)
				}
			}()
			out := cmd.OutOrStdout()
			if g.JSON {
				if ms == nil {
					ms = []*store.Meta{}
				}
				return writeIndentedJSON(out, ms)
			}
			var total int64
			for _, m := range ms {
				total += m.NarSize
				fmt.Fprintf(out, "%-8s %10s  %s  %s\n", m.Kind, progress.FormatBytes(m.NarSize), m.CreatedAt.Local().Format(time.DateTime), m.Path)
			}
			fmt.Fprintf(out, "%d objects, %s\n", len(ms), progress.FormatBytes(total))
			return nil
		},
	}
}

func newStoreInfoCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "info PATH",
		Short: "Show an object's metadata, references, referrers, roots and size",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := parseStoreArg(args[0])
			if err != nil {
				return err
			}
			s, err := store.Open(g.Root)
			if err != nil {
				return err
			}
			info, err := s.Info(p)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.JSON {
				return writeIndentedJSON(out, info)
			}
			m := info.Meta
			fmt.Fprintf(out, "path:         %s\n", s.Abs(m.Path))
			fmt.Fprintf(out, "kind:         %s\n", m.Kind)
			fmt.Fprintf(out, "nar hash:     %s\n", m.NarHash)
			fmt.Fprintf(out, "nar size:     %s (%d bytes)\n", progress.FormatBytes(m.NarSize), m.NarSize)
			fmt.Fprintf(out, "on disk:      %s\n", progress.FormatBytes(info.DiskSize))
			fmt.Fprintf(out, "closure size: %s\n", progress.FormatBytes(info.ClosureSize))
			if m.CA != "" {
				fmt.Fprintf(out, "ca:           %s\n", m.CA)
			}
			fmt.Fprintf(out, "source:       %s\n", m.Source)
			fmt.Fprintf(out, "created:      %s\n", m.CreatedAt.Format(time.RFC3339))
			printList(out, "references", m.References)
			printList(out, "referrers", info.Referrers)
			printList(out, "roots", info.Roots)
			if len(m.Derivation) > 0 {
				fmt.Fprintf(out, "derivation:   %s\n", m.Derivation)
			}
			return nil
		},
	}
}

func newStoreDuCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "du",
		Short: "Show what each version uses alone and what it shares with others",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := store.Open(g.Root)
			if err != nil {
				return err
			}
			rep, err := s.Du()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.JSON {
				return writeIndentedJSON(out, rep)
			}
			fmt.Fprintf(out, "%-24s %8s %12s %12s %12s\n", "VERSION", "OBJECTS", "TOTAL", "ALONE", "SHARED")
			for _, v := range rep.Versions {
				fmt.Fprintf(out, "%-24s %8d %12s %12s %12s\n", v.ID, v.Objects, progress.FormatBytes(v.Total), progress.FormatBytes(v.Alone), progress.FormatBytes(v.Shared))
			}
			fmt.Fprintf(out, "store: %d objects, %s; reached by no current root: %s\n", rep.StoreObjects, progress.FormatBytes(rep.Store), progress.FormatBytes(rep.Unrooted))
			return nil
		},
	}
}

func newStoreOptimiseCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:     "optimise",
		Aliases: []string{"optimize"},
		Short:   "Hard-link identical files across objects, where the filesystem allows it",
		Long: `optimise replaces identical regular files (same content and mode) in different objects by
hard links to one copy, and reports the bytes saved. NAR hashes do not change. Where the
filesystem refuses hard links (EXDEV, ENOTSUP, EPERM, EMLINK) it does nothing and says so.
Network volumes often do not support hard links; the store never depends on them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := store.Open(g.Root)
			if err != nil {
				return err
			}
			res, err := s.Optimise(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.JSON {
				return writeIndentedJSON(out, res)
			}
			if res.Unsupported != "" {
				fmt.Fprintf(out, "optimise: %s\n", res.Unsupported)
			}
			fmt.Fprintf(out, "examined %d files in %d objects; linked %d, saved %s\n", res.Files, res.Objects, res.Linked, progress.FormatBytes(res.Saved))
			return nil
		},
	}
}

// printList prints a titled list, one item (a store path, a version id) a line.
func printList[T any](out io.Writer, title string, xs []T) {
	fmt.Fprintf(out, "%s (%d):\n", title, len(xs))
	for _, x := range xs {
		fmt.Fprintf(out, "  %v\n", x)
	}
}
