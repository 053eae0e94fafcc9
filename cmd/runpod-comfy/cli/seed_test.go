package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCivitaiSeedTokenName: the seed tool's CIVITAI_TOKEN works like CIVITAI_API_TOKEN, which
// wins when both are set.
func TestCivitaiSeedTokenName(t *testing.T) {
	t.Setenv("CIVITAI_API_TOKEN", "")
	t.Setenv("CIVITAI_TOKEN", "seed-token")
	o, done, err := modelOptions(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	done()
	if o.CivitaiToken != "seed-token" {
		t.Fatalf("CIVITAI_TOKEN not used: %q", o.CivitaiToken)
	}
	t.Setenv("CIVITAI_API_TOKEN", "ours")
	o, done, _ = modelOptions(context.Background(), nil)
	done()
	if o.CivitaiToken != "ours" {
		t.Fatalf("CIVITAI_API_TOKEN should win: %q", o.CivitaiToken)
	}
}

// TestSeedSettings: every setting of the seed tool that is set is honoured or reported with its
// replacement; none is silently ignored.
func TestSeedSettings(t *testing.T) {
	root := t.TempDir()
	models := t.TempDir()
	all := map[string]string{
		"MODELS_DIR": models, "COMFY_HOME": "/runpod-volume/ComfyUI", "COMFY_OFFLINE": "1",
		"COMFY_BUILDS_ROOT": "/elsewhere/builds", "COMFY_CACHE_ROOT": "/elsewhere/cache",
	}
	for k := range seedIgnored {
		all[k] = "x"
	}
	for k, v := range all {
		t.Setenv(k, v)
	}
	e := readSeedEnv(root)
	if !e.Offline {
		t.Error("COMFY_OFFLINE=1 not honoured")
	}
	if len(e.AdoptDirs) != 1 || e.AdoptDirs[0] != models {
		t.Errorf("adopt dirs %v, want [%s] (MODELS_DIR; COMFY_HOME/models does not exist)", e.AdoptDirs, models)
	}
	notes := strings.Join(e.Notes, "\n")
	for k := range all {
		if !strings.Contains(notes, k) {
			t.Errorf("%s is set but not mentioned:\n%s", k, notes)
		}
	}
	for _, want := range []string{"RUNPOD_COMFY_ROOT=/elsewhere", "RUNPOD_INIT_TIMEOUT", "python.system_site_packages"} {
		if !strings.Contains(notes, want) {
			t.Errorf("no replacement %q named:\n%s", want, notes)
		}
	}
	// Unset, the default models directory ROOT/models is adopted from when it exists.
	for k := range all {
		t.Setenv(k, "")
	}
	if err := os.MkdirAll(filepath.Join(root, "models"), 0o755); err != nil {
		t.Fatal(err)
	}
	e = readSeedEnv(root)
	if len(e.Notes) != 0 || len(e.AdoptDirs) != 1 || e.AdoptDirs[0] != filepath.Join(root, "models") || e.Offline {
		t.Errorf("defaults: %+v", e)
	}
}

// TestSeedGCSSignedURLTTL: GCS_SIGNED_URL_TTL=0 means no signed URL, as in the seed tool (it
// was refused before); a positive value signs for that long; a negative one is refused.
func TestSeedGCSSignedURLTTL(t *testing.T) {
	t.Setenv("GCS_PUBLIC", "")
	t.Setenv("GCS_SIGNED_URL_TTL", "0")
	g, err := gcsOptionsFromEnvironment("b", "")
	if err != nil || !g.Public {
		t.Fatalf("TTL 0: public %v err %v", g.Public, err)
	}
	t.Setenv("GCS_SIGNED_URL_TTL", "90")
	g, err = gcsOptionsFromEnvironment("b", "")
	if err != nil || g.Public || g.SignedURLTTL.Seconds() != 90 {
		t.Fatalf("TTL 90: %+v %v", g, err)
	}
	t.Setenv("GCS_SIGNED_URL_TTL", "-1")
	if _, err := gcsOptionsFromEnvironment("b", ""); err == nil {
		t.Fatal("TTL -1 accepted")
	}
}
