package builder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/runpod-comfy/runpod-comfy/builder/drv"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// Repairer makes broken store objects again for `store verify --repair` (it implements
// store.Repairer). It knows every object that the given versions' locks plan, and rebuilds
// one the way build would: git sources from the mirrors (checked against the lock's NAR
// hash), models from their sources (checked against their checksums), venvs and roots from
// their inputs.
type Repairer struct {
	opts  BuildOptions
	index map[store.Path]repairTarget
}

type repairTarget struct {
	spec *specs.Spec
	plan *Plan
	d    *drv.Derivation
}

var (
	_ store.Repairer      = (*Repairer)(nil)
	_ store.RepairChecker = (*Repairer)(nil)
)

// NewRepairer indexes the objects planned by each version's lock (the default lock file of
// each spec; versions without a lock are skipped: they were never built here). opts holds
// what Build would get, without Spec.
func NewRepairer(opts BuildOptions, versions []*specs.Spec) (*Repairer, error) {
	r := &Repairer{opts: opts, index: map[store.Path]repairTarget{}}
	for _, spec := range versions {
		lock, err := specs.ReadLock(LockPath(opts.Root, spec.VersionID))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		plan, err := NewPlan(spec, lock, PlanOptions{})
		if err != nil {
			return nil, fmt.Errorf("version %s: %w", spec.VersionID, err)
		}
		for _, d := range plan.All {
			if _, ok := r.index[d.Path]; !ok {
				r.index[d.Path] = repairTarget{spec: spec, plan: plan, d: d}
			}
		}
	}
	return r, nil
}

// CanRepair reports whether a version plans p, so Repair can make it.
func (r *Repairer) CanRepair(p store.Path) bool {
	_, ok := r.index[p]
	return ok
}

// Repair builds p again; its inputs are built too when they are missing.
func (r *Repairer) Repair(ctx context.Context, p store.Path, m *store.Meta) error {
	t, ok := r.index[p]
	if !ok {
		return fmt.Errorf("no version in the versions directory plans %s (kind %s): rebuild the version that made it", p, m.Kind)
	}
	s, err := store.Open(r.opts.Root)
	if err != nil {
		return err
	}
	opts := r.opts
	opts.Spec = t.spec
	_, err = Realise(ctx, inputsFirst(t.d), RealiseOptions{
		Store:    s,
		Builders: builders(opts, newMirrors(opts)),
		Jobs:     opts.Jobs,
		Progress: opts.Progress,
	})
	return err
}

// inputsFirst lists d and everything it depends on, inputs before their readers.
func inputsFirst(d *drv.Derivation) []*drv.Derivation {
	var out []*drv.Derivation
	seen := map[*drv.Derivation]bool{}
	var visit func(*drv.Derivation)
	visit = func(x *drv.Derivation) {
		if seen[x] {
			return
		}
		seen[x] = true
		for _, in := range x.Inputs {
			visit(in)
		}
		out = append(out, x)
	}
	visit(d)
	return out
}
