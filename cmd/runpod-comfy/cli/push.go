package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/internal/inputfile"
	"github.com/runpod-comfy/runpod-comfy/internal/progress"
	"github.com/runpod-comfy/runpod-comfy/store"
	"github.com/runpod-comfy/runpod-comfy/store/cache"
)

// PushOptions are the flags and arguments of push.
type PushOptions struct {
	Targets []string // version ids or store paths
	To      string
	SignKey string
	Jobs    int
}

func newPushCmd(g *Globals) *cobra.Command {
	o := &PushOptions{}
	cmd := &cobra.Command{
		Use:   "push <id>|PATH... --to URL",
		Short: "Upload the closure of versions or store objects to a binary cache",
		Long: `push uploads to a binary cache (file:///path, a folder, or gs://bucket/prefix) the closure of
each argument: a version id (its current runtime root, builds/comfy-<id>) or a store object
(<digest>-<name>, or its path under ROOT/store). Objects the cache has are skipped. NARs are
zstd-compressed, models stored uncompressed; a narinfo is written only after its NAR and its
references' narinfos, so an interrupted push never leaves a dangling object. --sign-key signs
every narinfo (cache keygen makes a key); consumers verify with --trusted-key.

Example:
  runpod-comfy push my-version --to gs://team-bucket/comfy-cache --sign-key team-cache-1.secret`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Targets = args
			return runPush(cmd, g, o)
		},
	}
	cmd.Flags().StringVar(&o.To, "to", "", "binary cache URL: file:///path, a folder, or gs://bucket/prefix (required)")
	cmd.Flags().StringVar(&o.SignKey, "sign-key", "", "secret key file (cache keygen) to sign the narinfos with")
	cmd.Flags().IntVarP(&o.Jobs, "jobs", "j", 4, "objects uploaded at once")
	return cmd
}

// pushTargets resolves arguments into store paths: a store object name, a path under the
// store, or a version id.
func pushTargets(st *store.Store, args []string) ([]store.Path, error) {
	var out []store.Path
	for _, a := range args {
		name := a
		if strings.Contains(a, "/") {
			abs, err := filepath.Abs(a)
			if err != nil {
				return nil, usageError(err)
			}
			rel, err := filepath.Rel(st.Dir(), abs)
			if err != nil || strings.HasPrefix(rel, "..") {
				return nil, usageError(fmt.Errorf("%s is not in the store %s", a, st.Dir()))
			}
			name = strings.Split(filepath.ToSlash(rel), "/")[0]
		}
		if p, err := store.ParsePath(name); err == nil {
			if !st.Valid(p) {
				return nil, fmt.Errorf("%s is not a valid store object", p)
			}
			out = append(out, p)
			continue
		}
		if strings.Contains(a, "/") {
			return nil, usageError(fmt.Errorf("%s is not a store object", a))
		}
		p, err := st.RootOf(a)
		if err != nil {
			return nil, fmt.Errorf("%w (build it first)", err)
		}
		out = append(out, p)
	}
	return out, nil
}

func runPush(cmd *cobra.Command, g *Globals, o *PushOptions) error {
	ctx := cmd.Context()
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if o.To == "" {
		return usageError(fmt.Errorf("--to URL is required"))
	}
	if o.Jobs < 1 {
		return usageError(fmt.Errorf("--jobs must be at least 1"))
	}
	var key *cache.SecretKey
	if o.SignKey != "" {
		data, err := inputfile.Read(o.SignKey, inputfile.MaxKey)
		if err != nil {
			return usageError(fmt.Errorf("--sign-key: %w", err))
		}
		sk, err := cache.ParseSecretKey(string(data))
		if err != nil {
			return usageError(fmt.Errorf("--sign-key %s: %w", o.SignKey, err))
		}
		key = &sk
	}
	backends, closeFn, err := openCaches(ctx, []string{o.To})
	if err != nil {
		return err
	}
	defer closeFn()
	st, err := store.Open(g.Root)
	if err != nil {
		return err
	}
	paths, err := pushTargets(st, o.Targets)
	if err != nil {
		return err
	}
	b := backends[0]
	report := func(ev cache.PushEvent) {
		if g.JSON {
			return
		}
		if ev.Skipped {
			fmt.Fprintf(stderr, "[%d/%d] in cache %s\n", ev.Done, ev.Total, ev.Path)
			return
		}
		fmt.Fprintf(stderr, "[%d/%d] pushed %s (%s NAR, %s %s)\n", ev.Done, ev.Total, ev.Path, progress.FormatBytes(ev.NarSize), progress.FormatBytes(ev.FileSize), ev.Compression)
	}
	res, err := cache.Push(ctx, st, b, paths, cache.PushOptions{SignKey: key, Jobs: o.Jobs, Progress: report})
	if err != nil {
		return err
	}
	if g.JSON {
		return cacheJSON(stdout, struct {
			Cache string `json:"cache"`
			*cache.PushResult
			Signed bool `json:"signed"`
		}{b.URL(), res, key != nil})
	}
	signed := "unsigned"
	if key != nil {
		signed = "signed by " + key.Name
	}
	fmt.Fprintf(stdout, "pushed %d objects (%s NAR, %s uploaded), %d already in %s; %s\n",
		res.Pushed, progress.FormatBytes(res.NarBytes), progress.FormatBytes(res.FileBytes), res.Skipped, b.URL(), signed)
	return nil
}

func cacheJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
