package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/runpod-comfy/runpod-comfy/builder"
	"github.com/runpod-comfy/runpod-comfy/builder/git"
	"github.com/runpod-comfy/runpod-comfy/internal/progress"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// BuildOptions are the flags and arguments of build.
type BuildOptions struct {
	Arg        string // version id or spec file
	Vars       []string
	LockFile   string
	Jobs       int
	SkipModels bool
	Offline    bool
	// DownloadJobs limits model downloads at once.
	DownloadJobs int
	// DownloadConnections caps the connections of one model download (0: the spec's
	// options.download_connections, else the default).
	DownloadConnections int
	// Subst are the binary-cache flags (--substituter, --trusted-key; CACHE).
	Subst SubstituterFlags
}

func newBuildCmd(g *Globals) *cobra.Command {
	o := &BuildOptions{}
	cmd := &cobra.Command{
		Use:     "build <id>|<file>",
		Aliases: []string{"realize"},
		Short:   "Build a version's runtime root and point builds/comfy-<id> at it",
		Long: `build turns a version spec into a runtime root in the store, the same bytes every time.

It uses the version's lock (ROOT/cache/runpod-comfy/resolved/<id>.lock.json, or --lock FILE),
resolving the spec first when there is no lock or the spec changed since. It then builds every
object that is not in the store yet, in parallel (-j), swaps ROOT/builds/comfy-<id> to the new
root atomically (the previous root stays as a generation: see rollback), checks that ComfyUI
and every custom node are in the root at their pinned commits, and prints the root's path and
digest. A build of a version that is already built only reads metadata.

Private https git remotes: set GIT_TOKEN (or GITHUB_TOKEN); it goes only to the hosts of the
spec's own repositories (comfy and custom_nodes), never to a submodule's or a redirect's other
host. GIT_TOKENS="host=token,host2:8443=token2" gives a host its own token, wherever it appears
(submodules included). Tokens are never logged or stored.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Arg = args[0]
			return runBuild(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.LockFile, "lock", "", "lock file to use and update (default ROOT/cache/runpod-comfy/resolved/<id>.lock.json)")
	f.IntVarP(&o.Jobs, "jobs", "j", 0, "objects built at once (default: the number of CPUs)")
	f.BoolVar(&o.SkipModels, "skip-models", false, "leave models out of the root")
	f.IntVar(&o.DownloadJobs, "download-jobs", 4, "model downloads at once")
	addDownloadConnectionsFlag(cmd, &o.DownloadConnections)
	f.BoolVar(&o.Offline, "offline", false, "no network: resolve from local find_links, install wheels from the wheel cache and find_links only")
	o.Subst.Register(f)
	addVarFlag(cmd, &o.Vars)
	return cmd
}

func runBuild(ctx context.Context, g *Globals, o *BuildOptions, stdout, stderr io.Writer) error {
	if o.Jobs < 0 {
		return usageError(fmt.Errorf("-j %d: must be at least 1", o.Jobs))
	}
	if err := checkDownloadConnections(o.DownloadConnections); err != nil {
		return err
	}
	if o.DownloadJobs < 1 {
		return usageError(fmt.Errorf("--download-jobs %d: must be at least 1", o.DownloadJobs))
	}
	bo, done, err := prepareVersion(ctx, g, o.Arg, o.Vars, &o.Subst, stderr)
	if err != nil {
		return err
	}
	defer done()
	if o.DownloadConnections > 0 {
		bo.Models.Connections = o.DownloadConnections
	}
	bo.DownloadJobs, bo.LockFile, bo.Jobs = o.DownloadJobs, o.LockFile, o.Jobs
	bo.SkipModels, bo.Offline = o.SkipModels, o.Offline || bo.Offline
	res, err := builder.Build(ctx, bo)
	done()
	if res != nil {
		if g.JSON {
			if jerr := writeIndentedJSON(stdout, res); jerr != nil && err == nil {
				err = jerr
			}
		} else {
			printBuildResult(stdout, res)
			if n := len(bo.Spec.Models); n > 0 && (o.SkipModels || bo.Spec.Options.SkipModels) {
				fmt.Fprintf(stdout, "models:  %d left out (skip_models): the root has no model links; build without it to add them\n", n)
			}
		}
	}
	return err
}

func printBuildResult(w io.Writer, res *builder.BuildResult) {
	for _, n := range res.Nodes {
		status := "ok     "
		if !n.OK {
			status = "MISSING"
		}
		pin := n.Commit
		if len(pin) > 12 {
			pin = pin[:12]
		}
		if n.Registry != "" {
			pin = n.Registry
		}
		fmt.Fprintf(w, "%s %-28s %-12s  %s", status, n.Name, pin, n.StorePath)
		if n.Problem != "" {
			fmt.Fprintf(w, "  (%s)", n.Problem)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "objects: %d built, %d substituted, %d already valid\n", res.Built, res.Substituted, res.Valid)
	fmt.Fprintf(w, "lock:    %s\n", res.LockFile)
	fmt.Fprintf(w, "root:    %s\n", res.Dir)
	fmt.Fprintf(w, "digest:  %s\n", res.Digest)
	fmt.Fprintf(w, "nar:     %s\n", res.NarHash)
	fmt.Fprintf(w, "link:    %s (generation %d)\n", res.Link, res.Generation)
}

// newProgress returns the progress display on w: redrawn lines on a terminal, plain lines
// otherwise.
func newProgress(ctx context.Context, g *Globals, w io.Writer) *progress.Display {
	opts := progress.Options{}
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) && !g.JSON {
		opts.TTY = true
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 20 {
			opts.Width = cols - 1
		}
	}
	return progress.New(ctx, w, opts)
}

// prepareVersion loads the spec named by arg (a version id or a spec file, with vars) and
// prepares its build (prepareBuild); bo.Spec is the spec.
func prepareVersion(ctx context.Context, g *Globals, arg string, vars []string, subst *SubstituterFlags, stderr io.Writer) (builder.BuildOptions, func(), error) {
	spec, _, err := loadSpec(ctx, g, arg, vars)
	if err != nil {
		return builder.BuildOptions{}, func() {}, err
	}
	return prepareBuild(ctx, g, spec, subst, stderr)
}

// prepareBuild prepares every build, resolution and check the CLI runs, so that no command
// sets up the builder differently: ROOT, the spec, the git tokens ($GIT_TOKEN/$GITHUB_TOKEN to
// the spec's https hosts, $GIT_TOKENS per host), this process's environment, the model
// download settings (tokens, endpoints, a GCS client when a model comes from gs://), the
// seed tool's settings, the progress display on stderr (none when stderr is nil) and, when
// subst is not nil, the binary-cache hook: subst's flags, $RUNPOD_COMFY_SUBSTITUTERS and the
// spec's substituters, with trusted keys from the flags and $RUNPOD_COMFY_TRUSTED_KEYS. A
// command that realises objects passes its flags (or an empty SubstituterFlags when it has
// none, as run-handler and serve --build-missing); one that only resolves or plans passes nil.
// done closes the progress display and releases the caches and the GCS client; it may be
// called more than once (call it before printing results, and defer it).
func prepareBuild(ctx context.Context, g *Globals, spec *specs.Spec, subst *SubstituterFlags, stderr io.Writer) (bo builder.BuildOptions, done func(), err error) {
	perHost, err := gitHostTokens()
	if err != nil {
		return builder.BuildOptions{}, func() {}, err
	}
	mo, closeGCS, err := modelOptions(ctx, spec)
	if err != nil {
		return builder.BuildOptions{}, func() {}, err
	}
	notes := stderr
	if notes == nil {
		notes = os.Stderr
	}
	se := readSeedEnv(g.Root)
	printSeedNotes(notes, se)
	mo.AdoptDirs = se.AdoptDirs
	bo = builder.BuildOptions{Root: g.Root, Spec: spec, GitToken: gitToken(), GitTokens: perHost, Environ: os.Environ(), Models: mo, Offline: se.Offline,
		RegistryURL: os.Getenv("RUNPOD_COMFY_REGISTRY_URL")}
	if stderr != nil {
		bo.Progress = newProgress(ctx, g, stderr)
	}
	pr := bo.Progress
	closeSubst := func() {}
	if subst != nil {
		warn := func(msg string) {
			if pr != nil {
				pr.Logf("%s", msg)
			} else {
				fmt.Fprintln(notes, msg)
			}
		}
		bo.Substitute, closeSubst, err = subst.Hook(ctx, g.Root, spec.Options.Substituters, warn)
		if err != nil {
			pr.Close()
			closeGCS()
			return builder.BuildOptions{}, func() {}, err
		}
	}
	var once sync.Once
	return bo, func() {
		once.Do(func() {
			pr.Close()
			closeSubst()
			closeGCS()
		})
	}, nil
}

// gitToken is the token sent to the https hosts of the spec's repositories: $GIT_TOKEN, else
// $GITHUB_TOKEN.
func gitToken() string {
	if t := os.Getenv("GIT_TOKEN"); t != "" {
		return t
	}
	return os.Getenv("GITHUB_TOKEN")
}

// gitHostTokens reads $GIT_TOKENS, the per-host git tokens ("host=token,host2=token2").
func gitHostTokens() (map[string]string, error) {
	m, err := git.ParseHostTokens(os.Getenv("GIT_TOKENS"))
	if err != nil {
		return nil, fmt.Errorf("GIT_TOKENS: %w", err)
	}
	return m, nil
}

// writeIndentedJSON writes v as indented JSON.
func writeIndentedJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
