package cli

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/internal/progress"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// GCOptions are the flags of gc.
type GCOptions struct {
	DryRun          bool
	MaxFreed        string
	KeepGenerations int
	Grace           time.Duration
}

func newGCCmd(g *Globals) *cobra.Command {
	o := &GCOptions{}
	cmd := &cobra.Command{
		Use:   "gc [--dry-run] [--max-freed SIZE] [--keep-generations N] [--grace DURATION]",
		Short: "Delete store objects no root reaches",
		Long: `gc deletes what no root reaches: it marks from ROOT/builds/comfy-*, the generations under
ROOT/builds/.generations, the temporary roots of running builds and workers (store/.roots) and
live build leases, following each object's references, and deletes the rest, referrers first
(metadata first, then the object moves to store/.trash and is removed). Objects registered
less than --grace ago are kept, so a build running beside gc loses nothing. It also removes
crash debris: objects without metadata, old staging directories and the trash. An object
whose metadata cannot be read is kept and named; if a root reaches it, no object is deleted
(its references are unknown) until store verify --repair or a build makes it again.

--dry-run prints the plan (objects, sizes, total) and deletes nothing.
--keep-generations N keeps the newest N generations of each version (and the current one)
and prunes the older ones first. --max-freed stops once that much is freed (e.g. 10G, 500MiB).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.KeepGenerations < 0 {
				return usageError(fmt.Errorf("--keep-generations %d: must be 0 (keep all) or more", o.KeepGenerations))
			}
			if o.Grace < 0 {
				return usageError(fmt.Errorf("--grace %s: must not be negative", o.Grace))
			}
			return runGC(cmd.Context(), g, o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.DryRun, "dry-run", false, "print what would be deleted, delete nothing")
	f.StringVar(&o.MaxFreed, "max-freed", "", "stop after freeing this much (bytes, or with K/M/G/T, KiB/MiB/GiB/TiB)")
	f.IntVar(&o.KeepGenerations, "keep-generations", 0, "keep the newest N generations of each version (0: keep all)")
	f.DurationVar(&o.Grace, "grace", time.Hour, "keep objects registered less than this long ago")
	return cmd
}

func runGC(ctx context.Context, g *Globals, o *GCOptions, stdout io.Writer) error {
	var maxFreed int64
	if o.MaxFreed != "" {
		n, err := parseByteSize(o.MaxFreed)
		if err != nil {
			return usageError(fmt.Errorf("--max-freed: %w", err))
		}
		maxFreed = n
	}
	s, err := store.Open(g.Root)
	if err != nil {
		return err
	}
	plan, err := s.PlanGC(ctx, store.GCOptions{Grace: o.Grace, MaxFreed: maxFreed, KeepGenerations: o.KeepGenerations})
	if err != nil {
		return err
	}
	for _, k := range plan.Unreadable {
		if g.JSON {
			break
		}
		fmt.Fprintf(stdout, "kept %s: %s (gc never deletes what it cannot judge; store verify --repair makes it again)\n", k.Path, k.Reason)
	}
	if plan.Held != "" && !g.JSON {
		fmt.Fprintf(stdout, "no object deleted: %s\n", plan.Held)
	}
	if o.DryRun {
		defer plan.Close()
		if g.JSON {
			return writeIndentedJSON(stdout, plan)
		}
		for _, it := range plan.Generations {
			fmt.Fprintf(stdout, "would prune generation %s\n", it.Path)
		}
		for _, it := range plan.Objects {
			fmt.Fprintf(stdout, "would delete %10s  %s\n", progress.FormatBytes(it.Size), it.Path)
		}
		for _, it := range plan.Debris {
			fmt.Fprintf(stdout, "would remove %10s  %s (%s)\n", progress.FormatBytes(it.Size), it.Path, it.Kind)
		}
		fmt.Fprintf(stdout, "dry run: %d objects and %d debris entries, %s would be freed; %d objects live\n",
			len(plan.Objects), len(plan.Debris), progress.FormatBytes(plan.Total), plan.Live)
		if plan.GraceKept > 0 {
			fmt.Fprintf(stdout, "the grace window keeps %d of the live objects (%s) that no root reaches: they were registered less than %s ago, "+
				"for a build that may not have rooted them yet; collect them with `gc --grace 0` once no build is running (or wait %s)\n",
				plan.GraceKept, progress.FormatBytes(plan.GraceKeptSize), o.Grace, o.Grace)
		}
		return nil
	}
	res, err := plan.Execute(ctx)
	if err != nil {
		return err
	}
	if g.JSON {
		return writeIndentedJSON(stdout, res)
	}
	for _, gen := range res.Generations {
		fmt.Fprintf(stdout, "pruned generation %s\n", gen)
	}
	if g.Verbose {
		for _, it := range res.Deleted {
			fmt.Fprintf(stdout, "deleted %10s  %s\n", progress.FormatBytes(it.Size), it.Path)
		}
	}
	for _, k := range res.Kept {
		fmt.Fprintf(stdout, "kept %s (rooted while gc ran)\n", k)
	}
	fmt.Fprintf(stdout, "deleted %d entries, freed %s\n", len(res.Deleted), progress.FormatBytes(res.Freed))
	if res.StoppedAt {
		fmt.Fprintf(stdout, "stopped at --max-freed %s\n", o.MaxFreed)
	}
	return nil
}

// parseByteSize parses "123", "10K", "1.5G", "500MiB", "2GB": K/M/G/T and KB/MB/... are
// powers of 1000, KiB/MiB/... powers of 1024.
func parseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') && t[i-1] != '.' {
		i--
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid size %q (examples: 1000000, 500M, 10GiB)", s)
	}
	mult := map[string]float64{"": 1, "b": 1,
		"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use K, M, G, T or KiB, MiB, GiB, TiB)", s, unit)
	}
	if v*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return int64(v * mult), nil
}
