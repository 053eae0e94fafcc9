package comfyjob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/runner/standin"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// standinDir is the ComfyUI stand-in (stdlib Python) of package runner/standin.
func standinDir(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "standin", "comfyui")
}

// standinFlags are the command-line flags the stand-in supports, as a build would read them
// from comfy/cli_args.py into the manifest.
var standinFlags = []string{"--listen", "--port", "--output-directory", "--input-directory", "--temp-directory",
	"--user-directory", "--database-url", "--disable-auto-launch", "--extra-model-paths-config", "--cpu", "--disable-metadata"}

// makeVersion registers a runtime root for version id in st, laid out as the builder lays
// them out (comfyui -> ../<digest>-comfyui, bin/comfyui, extra_model_paths.yaml,
// manifest.json), with env in the manifest, and points builds/comfy-<id> at it.
func makeVersion(t testing.TB, st *store.Store, id string, env map[string]string) store.Path {
	t.Helper()
	p, err := buildVersion(st, id, env)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// buildVersion is makeVersion returning its error, for use off the test goroutine.
func buildVersion(st *store.Store, id string, env map[string]string) (store.Path, error) {
	ctx := context.Background()
	src := standinDir(nil)
	sum := sha256.Sum256([]byte("standin-comfyui-v1"))
	comfy, err := store.PathFor(store.DrvFingerprint(hex.EncodeToString(sum[:]), "comfyui"), "comfyui")
	if err != nil {
		return store.Path{}, err
	}
	if _, err := st.Add(ctx, comfy, store.AddOptions{Kind: "git"}, func(ctx context.Context, out string) error {
		return copyStandin(src, out)
	}); err != nil {
		return store.Path{}, err
	}
	envJSON, _ := json.Marshal(env)
	sum = sha256.Sum256([]byte("root:" + id + ":" + string(envJSON)))
	rootPath, err := store.PathFor(store.DrvFingerprint(hex.EncodeToString(sum[:]), "comfy-"+id), "comfy-"+id)
	if err != nil {
		return store.Path{}, err
	}
	m := specs.Manifest{
		ManifestVersion: specs.ManifestVersion, VersionID: id,
		Comfy: specs.ManifestComfy{Commit: strings.Repeat("0", 40), StorePath: comfy.String(), Flags: standinFlags},
		Env:   env,
	}
	if _, err := st.Add(ctx, rootPath, store.AddOptions{Kind: "root", References: []store.Path{comfy}}, func(ctx context.Context, out string) error {
		if err := os.MkdirAll(filepath.Join(out, "bin"), 0o755); err != nil {
			return err
		}
		if err := os.Symlink("../"+comfy.String(), filepath.Join(out, "comfyui")); err != nil {
			return err
		}
		if err := standin.WriteRootFiles(out, id, nil, false); err != nil {
			return err
		}
		mj, _ := json.MarshalIndent(m, "", "  ")
		return os.WriteFile(filepath.Join(out, "manifest.json"), mj, 0o644)
	}); err != nil {
		return store.Path{}, err
	}
	if _, err := st.SetRoot(id, rootPath); err != nil {
		return store.Path{}, err
	}
	return rootPath, nil
}

// copyStandin copies the stand-in's sources (not its caches) to out.
func copyStandin(src, out string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() && d.Name() == "__pycache__" {
			return filepath.SkipDir
		}
		dst := filepath.Join(out, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
}
