package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/runpod-comfy/runpod-comfy/builder"
	"github.com/runpod-comfy/runpod-comfy/lang"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// storeRepairer returns the Repairer `store verify --repair` uses: the builder makes broken
// objects again, from every version in --versions-dir that has a lock on this volume.
func storeRepairer(ctx context.Context, g *Globals) (store.Repairer, error) {
	ids, err := listVersions(g.VersionsDir)
	if err != nil {
		return nil, err
	}
	var versions []*specs.Spec
	all := &specs.Spec{}
	for _, id := range ids {
		s, _, err := lang.LoadVersion(ctx, g.VersionsDir, id, lang.Options{VersionsDir: g.VersionsDir})
		if err != nil {
			fmt.Fprintf(os.Stderr, "--repair: skipping version %s: %v\n", id, err)
			continue
		}
		versions = append(versions, s)
		all.Models = append(all.Models, s.Models...)
	}
	// The GCS client (only made when a model comes from gs://) lives until the command ends.
	bo, _, err := prepareBuild(ctx, g, all, nil, nil)
	if err != nil {
		return nil, err
	}
	bo.Spec = nil // each repair uses the spec of the version that planned the object
	return builder.NewRepairer(bo, versions)
}
