package builder

import (
	"context"

	"github.com/runpod-comfy/runpod-comfy/builder/drv"
	"github.com/runpod-comfy/runpod-comfy/builder/git"
	"github.com/runpod-comfy/runpod-comfy/diff"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// DiffOptions returns the sources of detail for diff.Compare on the volume at root: object
// sizes from the store, commit distances from the git mirrors (read locally, never fetched).
func DiffOptions(ctx context.Context, s *store.Store) diff.Options {
	return diff.Options{
		Objects: storeObjects{s},
		History: mirrorHistory{ctx: ctx, m: git.NewMirrors(MirrorDir(s.Root()), git.Credentials{})},
	}
}

// DiffSide is the diff side of a spec and its lock: when the version's runtime root for this
// lock is built, its whole closure (venv and root included), else what the lock names.
func DiffSide(s *store.Store, label string, spec *specs.Spec, lock *specs.Lock) diff.Side {
	side := diff.Side{Label: label, Lock: lock}
	if spec == nil {
		return side
	}
	side.SkipModels = spec.Options.SkipModels
	side.SystemSitePackages = spec.Python != nil && spec.Python.SystemSitePackages
	plan, err := NewPlan(spec, lock, PlanOptions{})
	if err != nil || !s.Valid(plan.Root.Path) {
		return side
	}
	closure, err := s.Closure(plan.Root.Path)
	if err != nil {
		return side
	}
	for _, p := range closure {
		side.Closure = append(side.Closure, p.String())
	}
	return side
}

type storeObjects struct{ s *store.Store }

func (o storeObjects) Size(p string) (int64, bool) {
	sp, err := store.ParsePath(p)
	if err != nil {
		return 0, false
	}
	m, err := o.s.Meta(sp)
	if err != nil {
		return 0, false
	}
	if m.Kind == drv.KindVenv {
		// A venv's package files are its package objects' (hard links): count only the rest,
		// so that a closure's total holds each package once.
		size := m.NarSize
		for _, r := range m.References {
			if rm, err := o.s.Meta(r); err == nil && rm.Kind == drv.KindPythonPackage {
				size -= rm.NarSize
			}
		}
		return max(size, 0), true
	}
	return m.NarSize, true
}

// mirrorHistory counts commits in the local bare mirrors (git.Mirrors.Distance).
type mirrorHistory struct {
	ctx context.Context
	m   *git.Mirrors
}

func (h mirrorHistory) Distance(repo, from, to string) (int, bool) {
	return h.m.Distance(h.ctx, repo, from, to)
}
