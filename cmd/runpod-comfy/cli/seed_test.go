package cli

import (
	"context"
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
