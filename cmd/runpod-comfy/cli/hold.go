package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/runpod-comfy/runpod-comfy/store"
)

// holdRoot makes a temporary GC root (store/.roots) for the runtime root at rootDir (a store
// object, or a link to one such as builds/comfy-<id>) and returns the object's directory, to
// run ComfyUI from, and the function that drops the root once ComfyUI has stopped. While it
// is held (refreshed until release or ctx ends), gc keeps the root and everything it
// references, even when builds/comfy-<id> is pointed elsewhere, rolled back or deleted
// meanwhile: serve does the same for each version it runs.
func holdRoot(ctx context.Context, root, rootDir string) (string, func(), error) {
	s, err := store.Open(root)
	if err != nil {
		return "", nil, err
	}
	base := filepath.Base(rootDir)
	if t, err := os.Readlink(rootDir); err == nil {
		base = filepath.Base(t)
	}
	p, err := store.ParsePath(base)
	if err != nil {
		return "", nil, fmt.Errorf("runtime root %s: %w", rootDir, err)
	}
	tr, err := s.AddTempRoot(ctx, []store.Path{p})
	if err != nil {
		return "", nil, fmt.Errorf("rooting %s while it runs: %w", p, err)
	}
	// gc may have removed it just before the root was written, never after.
	if _, err := s.Closure(p); err != nil {
		tr.Close()
		return "", nil, fmt.Errorf("runtime root %s is no longer complete (deleted by gc or half-built): %w; build the version again", p, err)
	}
	return s.Abs(p), func() { tr.Close() }, nil
}
