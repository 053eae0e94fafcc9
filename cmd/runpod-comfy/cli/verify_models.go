package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"cloud.google.com/go/storage"
	"github.com/spf13/cobra"

	"github.com/runpod-comfy/runpod-comfy/builder"
	"github.com/runpod-comfy/runpod-comfy/builder/model"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// VerifyModelsOptions are the flags and arguments of verify-models.
type VerifyModelsOptions struct {
	Arg          string // version id or spec file
	Vars         []string
	LockFile     string
	ModelsDir    string
	Overwrite    bool
	DownloadJobs int
	// DownloadConnections: see BuildOptions.
	DownloadConnections int
}

func newVerifyModelsCmd(g *Globals) *cobra.Command {
	o := &VerifyModelsOptions{}
	cmd := &cobra.Command{
		Use:   "verify-models <id>|<file>",
		Short: "Check every model of a version has the right hash; fetch what is missing",
		Long: `verify-models checks that every model of a version's lock is present with the right
checksum, and downloads what is missing (resuming partial downloads, verifying while they
stream).

Without --models-dir it checks the store objects (ROOT/store). With --models-dir DIR it works on
an external models directory (of a ComfyUI install not run by runpod-comfy): each model must be
at DIR/<target>; a missing one is copied from the store, or downloaded from its source, and put
in place by atomic rename. A file with the wrong hash is an error unless --overwrite, which
replaces it with the right bytes.

Tokens: HF_TOKEN (huggingface.co) and CIVITAI_API_TOKEN (civitai.com) are sent only to their
own hosts and never logged or stored. gs:// sources use Google's default credentials
(GOOGLE_APPLICATION_CREDENTIALS or the metadata server).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Arg = args[0]
			return runVerifyModels(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.LockFile, "lock", "", "lock file to use (default ROOT/cache/runpod-comfy/resolved/<id>.lock.json)")
	f.StringVar(&o.ModelsDir, "models-dir", "", "check and fill an external models directory instead of the store")
	f.BoolVar(&o.Overwrite, "overwrite", false, "replace files with the wrong hash in --models-dir")
	f.IntVar(&o.DownloadJobs, "download-jobs", 4, "models checked or downloaded at once")
	addDownloadConnectionsFlag(cmd, &o.DownloadConnections)
	addVarFlag(cmd, &o.Vars)
	return cmd
}

func runVerifyModels(ctx context.Context, g *Globals, o *VerifyModelsOptions, stdout, stderr io.Writer) error {
	if o.DownloadJobs < 1 {
		return usageError(fmt.Errorf("--download-jobs %d: must be at least 1", o.DownloadJobs))
	}
	if err := checkDownloadConnections(o.DownloadConnections); err != nil {
		return err
	}
	if o.Overwrite && o.ModelsDir == "" {
		return usageError(fmt.Errorf("--overwrite only applies to --models-dir (store objects are repaired by `store verify --repair`)"))
	}
	if o.ModelsDir != "" {
		abs, err := filepath.Abs(o.ModelsDir)
		if err != nil {
			return usageError(fmt.Errorf("--models-dir: %w", err))
		}
		o.ModelsDir = abs
	}
	bo, done, err := prepareVersion(ctx, g, o.Arg, o.Vars, nil, stderr)
	if err != nil {
		return err
	}
	defer done()
	mo, pr := bo.Models, bo.Progress
	if o.DownloadConnections > 0 {
		mo.Connections = o.DownloadConnections
		bo.Models = mo
	}
	bo.LockFile, bo.DownloadJobs = o.LockFile, o.DownloadJobs
	lock, _, _, err := builder.EnsureLock(ctx, bo)
	if err != nil {
		return err
	}
	s, err := store.Open(g.Root)
	if err != nil {
		return err
	}
	f, err := model.New(mo.ForRoot(g.Root, pr))
	if err != nil {
		return err
	}
	sts, err := model.Verify(ctx, model.VerifyOptions{
		Store: s, Fetcher: f, Spec: bo.Spec, Lock: lock,
		ModelsDir: o.ModelsDir, Overwrite: o.Overwrite, Jobs: o.DownloadJobs, Progress: pr,
	})
	pr.Close()
	if g.JSON {
		if sts == nil {
			sts = []model.VerifyStatus{}
		}
		if jerr := writeIndentedJSON(stdout, sts); jerr != nil && err == nil {
			err = jerr
		}
		return err
	}
	for _, st := range sts {
		line := fmt.Sprintf("%-8s %s  %s", st.Status, st.Target, st.Checksum)
		if st.Found != "" {
			line += "  found " + st.Found
		}
		if st.Problem != "" && st.Status != model.StatusMismatch {
			line += "  (" + st.Problem + ")"
		}
		fmt.Fprintln(stdout, line)
	}
	if len(sts) == 0 {
		fmt.Fprintln(stdout, "no models in this version")
	} else if err == nil {
		where := "in the store"
		if o.ModelsDir != "" {
			where = "in " + o.ModelsDir
		}
		fmt.Fprintf(stdout, "%d models verified %s\n", len(sts), where)
	}
	return err
}

// civitaiToken is the Civitai token: $CIVITAI_API_TOKEN, else the seed tool's $CIVITAI_TOKEN.
func civitaiToken() string {
	if t := os.Getenv(model.CivitaiTokenVar); t != "" {
		return t
	}
	return os.Getenv(model.CivitaiSeedTokenVar)
}

// modelOptions are the model download options from the environment: HF_TOKEN,
// CIVITAI_API_TOKEN (or CIVITAI_TOKEN), HF_ENDPOINT, CIVITAI_ENDPOINT, and a GCS client with Google's default
// credentials when the spec has gs:// sources (STORAGE_EMULATOR_HOST is honoured by the
// client). The returned function closes the client.
func modelOptions(ctx context.Context, spec *specs.Spec) (model.Options, func(), error) {
	o := model.Options{
		HFToken:         firstNonEmpty(os.Getenv(model.HFTokenVar), os.Getenv("HUGGINGFACE_TOKEN")),
		CivitaiToken:    civitaiToken(),
		HFEndpoint:      os.Getenv("HF_ENDPOINT"),
		CivitaiEndpoint: os.Getenv("CIVITAI_ENDPOINT"),
	}
	if spec != nil {
		o.Connections = spec.Options.DownloadConnections
	}
	needGCS := false
	if spec != nil {
		for _, m := range spec.Models {
			if strings.HasPrefix(m.Source, "gs://") {
				needGCS = true
			}
		}
	}
	if !needGCS {
		return o, func() {}, nil
	}
	c, err := storage.NewClient(ctx)
	if err != nil {
		return o, func() {}, fmt.Errorf("gs:// model sources: creating the Google Cloud Storage client (credentials from GOOGLE_APPLICATION_CREDENTIALS or the metadata server): %w", err)
	}
	o.GCS = c
	return o, func() { c.Close() }, nil
}

// addDownloadConnectionsFlag registers --download-connections.
func addDownloadConnectionsFlag(cmd *cobra.Command, n *int) {
	cmd.Flags().IntVar(n, "download-connections", 0, fmt.Sprintf("most connections one model file is downloaded over, when its server serves ranges (1 to %d; default: the spec's options.download_connections, else %d); all downloads at once share twice that many", model.MaxConnections, model.DefaultConnections))
}

func checkDownloadConnections(n int) error {
	if n < 0 || n > model.MaxConnections {
		return usageError(fmt.Errorf("--download-connections %d: must be from 1 to %d", n, model.MaxConnections))
	}
	return nil
}
