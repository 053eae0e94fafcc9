package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"cloud.google.com/go/storage"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/runpod-comfy/runpod-comfy/builder/drv"
	"github.com/runpod-comfy/runpod-comfy/store"
	"github.com/runpod-comfy/runpod-comfy/store/cache"
)

// CacheKeygenOptions are the flags and arguments of cache keygen.
type CacheKeygenOptions struct {
	Name   string
	OutDir string
}

func newCacheCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Binary caches: signing keys (see also push, and build --substituter)",
		Long: `A binary cache (a folder, file:///path, or gs://bucket/prefix) holds store objects as Nix
does: nix-cache-info, one <digest>.narinfo per object and compressed NARs under nar/. push
uploads to it; build --substituter fetches from it. See docs/cache.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	o := &CacheKeygenOptions{}
	keygen := &cobra.Command{
		Use:   "keygen NAME",
		Short: "Create an ed25519 signing key pair NAME.secret / NAME.public in Nix's format",
		Long: `keygen writes NAME.secret (mode 0600) and NAME.public into --out-dir, in Nix's
"NAME:base64" format (nix-store --generate-binary-cache-key writes the same). Sign pushes with
push --sign-key NAME.secret; give the public key to every consumer (build --trusted-key, or
$RUNPOD_COMFY_TRUSTED_KEYS). Convention: NAME is <cache or team>-<n>, e.g. team-cache-1, so a key
can be rotated by a new number. Existing files are never overwritten.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			return runCacheKeygen(o, cmd.OutOrStdout())
		},
	}
	keygen.Flags().StringVar(&o.OutDir, "out-dir", ".", "directory for NAME.secret and NAME.public")
	cmd.AddCommand(keygen)
	return cmd
}

func runCacheKeygen(o *CacheKeygenOptions, stdout io.Writer) error {
	sk, pk, err := cache.GenerateKey(o.Name, nil)
	if err != nil {
		return usageError(err)
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return fmt.Errorf("--out-dir: %w", err)
	}
	secret := filepath.Join(o.OutDir, o.Name+".secret")
	public := filepath.Join(o.OutDir, o.Name+".public")
	for _, p := range []string{secret, public} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists: refusing to overwrite a key", p)
		}
	}
	if err := writeNew(secret, sk.String()+"\n", 0o600); err != nil {
		return err
	}
	if err := writeNew(public, pk.String()+"\n", 0o644); err != nil {
		os.Remove(secret)
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s\npublic key: %s\n", secret, public, pk)
	return nil
}

// writeNew creates path exclusively with data.
func writeNew(path, data string, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("writing key: %w", err)
	}
	if _, err := io.WriteString(f, data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("writing key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("writing key %s: %w", path, err)
	}
	return nil
}

// cacheURL turns a command-line cache location into a URL: a bare path becomes
// file://<absolute path>.
func cacheURL(s string) (string, error) {
	if strings.Contains(s, "://") {
		return s, nil
	}
	abs, err := filepath.Abs(s)
	if err != nil {
		return "", err
	}
	return "file://" + abs, nil
}

// openCaches opens the backends of urls in order. A GCS client (application default
// credentials, or $STORAGE_EMULATOR_HOST) is created only when a gs:// URL is present; the
// returned close function releases it.
func openCaches(ctx context.Context, urls []string) ([]cache.Backend, func(), error) {
	var client *storage.Client
	closeFn := func() {
		if client != nil {
			client.Close()
		}
	}
	var out []cache.Backend
	for _, u := range urls {
		u, err := cacheURL(u)
		if err != nil {
			closeFn()
			return nil, nil, usageError(err)
		}
		if strings.HasPrefix(u, "gs://") && client == nil {
			client, err = storage.NewClient(ctx)
			if err != nil {
				return nil, nil, fmt.Errorf("connecting to Google Cloud Storage for %s: %w", u, err)
			}
		}
		b, err := cache.OpenBackend(u, client)
		if err != nil {
			closeFn()
			return nil, nil, usageError(err)
		}
		out = append(out, b)
	}
	return out, closeFn, nil
}

// SubstituterFlags are the flags with which build (and any command that realises objects)
// fetches from binary caches: --substituter, --trusted-key and --no-require-sigs, completed
// by $RUNPOD_COMFY_SUBSTITUTERS and $RUNPOD_COMFY_TRUSTED_KEYS (space-separated).
type SubstituterFlags struct {
	URLs          []string
	TrustedKeys   []string
	NoRequireSigs bool
	NoSubstitute  bool
}

// Register adds the flags to fs.
func (f *SubstituterFlags) Register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.URLs, "substituter", nil, "binary cache to fetch objects from before building them, tried in order (repeatable; also $RUNPOD_COMFY_SUBSTITUTERS and the spec's options.substituters)")
	fs.StringArrayVar(&f.TrustedKeys, "trusted-key", nil, "public key NAME:BASE64 whose signatures are trusted (repeatable; also $RUNPOD_COMFY_TRUSTED_KEYS)")
	fs.BoolVar(&f.NoRequireSigs, "no-require-sigs", false, "accept objects not signed by a trusted key (their NAR hash is still checked)")
	fs.BoolVar(&f.NoSubstitute, "no-substitute", false, "build everything locally, ignoring every substituter")
}

// Hook returns the function for builder.BuildOptions.Substitute, or nil when there is no
// substituter. The caches are, in order: --substituter flags, $RUNPOD_COMFY_SUBSTITUTERS, then
// specSubs (the spec's options.substituters), without duplicates. Trusted keys come only
// from flags and the environment, never from the spec. Refused objects are reported on
// warn (may be nil); the builder then builds them. Call close when the build is done.
func (f *SubstituterFlags) Hook(ctx context.Context, root string, specSubs []string, warn func(msg string)) (hook func(context.Context, *drv.Derivation) (bool, error), closeFn func(), err error) {
	closeFn = func() {}
	if f.NoSubstitute {
		return nil, closeFn, nil
	}
	var urls []string
	seen := map[string]bool{}
	for _, group := range [][]string{f.URLs, strings.Fields(os.Getenv("RUNPOD_COMFY_SUBSTITUTERS")), specSubs} {
		for _, u := range group {
			full, err := cacheURL(u)
			if err != nil {
				return nil, closeFn, usageError(fmt.Errorf("substituter %q: %w", u, err))
			}
			if !seen[full] {
				seen[full] = true
				urls = append(urls, full)
			}
		}
	}
	if len(urls) == 0 {
		return nil, closeFn, nil
	}
	var keys []cache.PublicKey
	for _, k := range append(append([]string(nil), f.TrustedKeys...), strings.Fields(os.Getenv("RUNPOD_COMFY_TRUSTED_KEYS"))...) {
		pk, err := cache.ParsePublicKey(k)
		if err != nil {
			return nil, closeFn, usageError(fmt.Errorf("--trusted-key: %w", err))
		}
		keys = append(keys, pk)
	}
	if len(keys) == 0 && !f.NoRequireSigs {
		return nil, closeFn, usageError(errors.New("substituters given but no --trusted-key (or $RUNPOD_COMFY_TRUSTED_KEYS): pass the cache's public key, or --no-require-sigs"))
	}
	backends, closeFn, err := openCaches(ctx, urls)
	if err != nil {
		return nil, func() {}, err
	}
	st, err := store.Open(root)
	if err != nil {
		closeFn()
		return nil, func() {}, err
	}
	sub := &cache.Substituter{
		Caches:        backends,
		TrustedKeys:   keys,
		AllowUnsigned: f.NoRequireSigs,
		Warn:          warn,
	}
	hook = func(ctx context.Context, d *drv.Derivation) (bool, error) {
		_, err := sub.SubstituteExpect(ctx, st, d.Path, substituteExpect(d))
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, cache.ErrNotSubstituted):
			return false, nil // build it
		default:
			return false, err
		}
	}
	return hook, closeFn, nil
}

// substituteExpect is what the derivation and its lock say about d's object: a cache may only
// offer exactly that (the lock's NAR hash, the model's checksum, the derivation's references).
func substituteExpect(d *drv.Derivation) *cache.Expect {
	want := &cache.Expect{References: d.References(), Kind: d.Kind, Derivation: d.CanonicalJSON()}
	if d.Fixed != nil {
		want.NarHash = d.Fixed.NarHash
		want.Fingerprint = d.Fixed.Fingerprint
		want.CA = d.Fixed.CA
		want.References = nil
	}
	return want
}
