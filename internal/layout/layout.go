// Package layout names every path under the volume ROOT and holds the one rule for version ids.
// store, builder, runner and cmd all take their paths from here, so the volume's shape is
// written down once (docs/design.md section 3).
package layout

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
)

// MaxVersionIDLen is the longest version id accepted.
const MaxVersionIDLen = 100

// RootPrefix is the prefix of every runtime root link (ROOT/builds/comfy-<id>), of its
// generations, of its state directory and of its store path name.
const RootPrefix = "comfy-"

// CheckVersionID reports whether id can name a version. The id becomes a spec and lock file
// name, the root link ROOT/builds/comfy-<id>, generation links comfy-<id>-<n> and part of a
// store path name, so it is 1-100 characters of [A-Za-z0-9._+-] starting with a letter or digit
// (every one of them is legal in a store path name). Spec validation, the builder, the store's
// roots, the runner and the CLI all use this one rule, so validate refuses exactly what build
// refuses.
func CheckVersionID(id string) error {
	if id == "" {
		return errors.New("version id is empty")
	}
	if len(id) > MaxVersionIDLen {
		return fmt.Errorf("version id %q is longer than %d characters", id, MaxVersionIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum || i > 0 && (c == '.' || c == '_' || c == '+' || c == '-') {
			continue
		}
		return fmt.Errorf("version id %q: character %q at %d: an id may hold only letters, digits and . _ + - (and must start with a letter or digit)", id, c, i+1)
	}
	return nil
}

// Layout is the volume ROOT and every path under it (docs/design.md section 3):
//
//	ROOT/store                              the content-addressed store
//	ROOT/builds/comfy-<id>                  a version's runtime root link
//	ROOT/builds/.generations/comfy-<id>-<n> its numbered generations
//	ROOT/state/comfy-<id>                   its mutable ComfyUI state
//	ROOT/cache/runpod-comfy/{resolved,git,pip,downloads,check}
type Layout struct{ Root string }

// New returns the layout of the volume at root.
func New(root string) Layout { return Layout{Root: root} }

// Store is ROOT/store.
func (l Layout) Store() string { return filepath.Join(l.Root, "store") }

// Builds is ROOT/builds, where the root links live.
func (l Layout) Builds() string { return filepath.Join(l.Root, "builds") }

// Generations is ROOT/builds/.generations.
func (l Layout) Generations() string { return filepath.Join(l.Builds(), ".generations") }

// RootLink is ROOT/builds/comfy-<id>.
func (l Layout) RootLink(id string) string { return filepath.Join(l.Builds(), RootPrefix+id) }

// Generation is ROOT/builds/.generations/comfy-<id>-<n>.
func (l Layout) Generation(id string, n int) string {
	return filepath.Join(l.Generations(), RootPrefix+id+"-"+strconv.Itoa(n))
}

// StateBase is ROOT/state.
func (l Layout) StateBase() string { return filepath.Join(l.Root, "state") }

// State is ROOT/state/comfy-<id>, the mutable state of version id.
func (l Layout) State(id string) string { return StateUnder(l.StateBase(), id) }

// StateUnder is <base>/comfy-<id>, for a state base that is not ROOT/state (--state-dir).
func StateUnder(base, id string) string { return filepath.Join(base, RootPrefix+id) }

// Cache is ROOT/cache/runpod-comfy.
func (l Layout) Cache() string { return filepath.Join(l.Root, "cache", "runpod-comfy") }

// Resolved is ROOT/cache/runpod-comfy/resolved, where default lock files live.
func (l Layout) Resolved() string { return filepath.Join(l.Cache(), "resolved") }

// Lock is ROOT/cache/runpod-comfy/resolved/<id>.lock.json.
func (l Layout) Lock(id string) string { return filepath.Join(l.Resolved(), id+".lock.json") }

// Git is ROOT/cache/runpod-comfy/git, the git mirrors.
func (l Layout) Git() string { return filepath.Join(l.Cache(), "git") }

// Pip is ROOT/cache/runpod-comfy/pip, the wheel cache.
func (l Layout) Pip() string { return filepath.Join(l.Cache(), "pip") }

// Downloads is ROOT/cache/runpod-comfy/downloads, partial downloads and their checkpoints.
func (l Layout) Downloads() string { return filepath.Join(l.Cache(), "downloads") }

// Registry is the cache of Comfy Registry archives, one file per sha256:
// cache/runpod-comfy/registry/<sha256 hex>.zip.
func (l Layout) Registry() string { return filepath.Join(l.Cache(), "registry") }

// Check is ROOT/cache/runpod-comfy/check, the scratch volumes of reproducibility checks.
func (l Layout) Check() string { return filepath.Join(l.Cache(), "check") }
