package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/builder"
	"github.com/runpod-comfy/runpod-comfy/internal/atomicfile"
	"github.com/runpod-comfy/runpod-comfy/lang"
)

// SnapshotOptions are the flags and argument of snapshot.
type SnapshotOptions struct {
	ID      string
	Format  string // json or yaml
	Output  string
	Vars    []string
	Offline bool
}

func newSnapshotCmd(g *Globals) *cobra.Command {
	o := &SnapshotOptions{}
	cmd := &cobra.Command{
		Use:   "snapshot <id>",
		Short: "Write a ComfyUI-Manager snapshot of a version (to go back to the Manager)",
		Long: `snapshot writes the ComfyUI-Manager snapshot of version <id> from its lock (resolving it
first when it is missing or stale): ComfyUI's commit, the git custom nodes at their commits, the
Comfy Registry nodes (cnr_custom_nodes) at their exact versions and the locked Python packages
(pips). Restored with ComfyUI-Manager ("Restore" in its snapshot manager, or cm-cli restore-snapshot),
it installs the same commits and versions. --format yaml writes the YAML Manager saves. What a
snapshot cannot carry (models, env, a node name other than Manager's) is listed as warnings.
"runpod-comfy create <id> --from-snapshot FILE" reads it back.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ID = args[0]
			return runSnapshot(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Format, "format", "json", "json or yaml")
	f.StringVarP(&o.Output, "output", "o", "", "write to this file instead of stdout")
	f.BoolVar(&o.Offline, "offline", false, "no network when the version must be resolved")
	addVarFlag(cmd, &o.Vars)
	return cmd
}

func runSnapshot(ctx context.Context, g *Globals, o *SnapshotOptions, stdout, stderr io.Writer) error {
	if o.Format != "json" && o.Format != "yaml" {
		return usageError(fmt.Errorf("--format %q: want json or yaml", o.Format))
	}
	bo, done, err := prepareVersion(ctx, g, o.ID, o.Vars, nil, stderr)
	if err != nil {
		return err
	}
	defer done()
	bo.Offline = o.Offline || bo.Offline
	lock, _, _, err := builder.EnsureLock(ctx, bo)
	if err != nil {
		return err
	}
	snap, notes := lang.ExportSnapshot(lock)
	var data []byte
	if o.Format == "yaml" {
		data, err = snap.MarshalManagerYAML()
	} else {
		data, err = snap.MarshalManagerJSON()
	}
	if err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintf(stderr, "warning: %s\n", n)
	}
	if o.Output == "" {
		_, err = stdout.Write(data)
		return err
	}
	if err := atomicfile.WriteFile(o.Output, data, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s\n", o.Output)
	return nil
}
