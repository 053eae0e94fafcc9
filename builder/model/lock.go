package model

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/runpod-comfy/runpod-comfy/internal/layout"
	"github.com/runpod-comfy/runpod-comfy/internal/progress"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// Resolver fills the model entries of a lock: target, redacted source, checksum, size, where
// the checksum came from and the store path.
type Resolver struct {
	Fetcher *Fetcher
	// Store receives models trusted on first use: they are downloaded once, straight into
	// the store, so the build that follows does not download them again.
	Store *store.Store
	// Jobs limits downloads of models trusted on first use (default 4).
	Jobs int
	// Progress shows downloads (may be nil); Warnf receives the trust-on-first-use warnings.
	Progress *progress.Display
	Warnf    func(format string, args ...any)
	// AdoptDirs are models directories whose files are trusted on first use for models
	// without a checksum (Options.AdoptDirs).
	AdoptDirs []string
}

// ModelError is a model of a spec that could not be resolved, built or verified; it names the
// model's target and spec position.
type ModelError struct {
	Target string
	Pos    specs.Pos
	Err    error
}

func (e *ModelError) Error() string {
	if p := e.Pos.String(); p != "" {
		return fmt.Sprintf("%s: model %s: %v", p, e.Target, e.Err)
	}
	return fmt.Sprintf("model %s: %v", e.Target, e.Err)
}

func (e *ModelError) Unwrap() error { return e.Err }

// Resolve returns the lock entries of spec's models, sorted by target. An entry of old (may be
// nil) is reused when its target, source and checksum are unchanged and updating(target) is
// false, so an unchanged model needs no network.
func (r *Resolver) Resolve(ctx context.Context, spec *specs.Spec, old *specs.Lock, updating func(target string) bool) ([]specs.ModelLock, error) {
	out := make([]specs.ModelLock, len(spec.Models))
	errs := make([]error, len(spec.Models))
	jobs := r.Jobs
	if jobs <= 0 {
		jobs = 4
	}
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	seen := map[string]specs.Pos{}
	for i, m := range spec.Models {
		target, err := specs.ModelTarget(m)
		if err != nil {
			errs[i] = &ModelError{Target: m.Source, Pos: m.Pos, Err: err}
			continue
		}
		if p, dup := seen[target]; dup {
			errs[i] = &ModelError{Target: target, Pos: m.Pos, Err: fmt.Errorf("the target is also used by the model at %s", p)}
			continue
		}
		seen[target] = m.Pos
		var prev *specs.ModelLock
		if old != nil && (updating == nil || !updating(target)) {
			for j := range old.Models {
				if om := old.Models[j]; om.Target == target && om.Source == Redact(m.Source) &&
					(m.Checksum == "" || sameChecksum(om.Checksum, m.Checksum)) && om.Checksum != "" {
					prev = &old.Models[j]
				}
			}
		}
		if prev != nil {
			out[i] = *prev
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			ml, err := r.resolveOne(ctx, spec, m, target)
			if err != nil {
				errs[i] = &ModelError{Target: target, Pos: m.Pos, Err: err}
				return
			}
			out[i] = ml
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// The lock's order (specs.Lock.WriteFile sorts by target), so a lock read back plans the
	// same root.
	slices.SortStableFunc(out, func(a, b specs.ModelLock) int { return strings.Compare(a.Target, b.Target) })
	return out, nil
}

func sameChecksum(a, b string) bool {
	ca, err1 := ParseChecksum(a)
	cb, err2 := ParseChecksum(b)
	return err1 == nil && err2 == nil && ca == cb
}

func (r *Resolver) resolveOne(ctx context.Context, spec *specs.Spec, m specs.Model, target string) (specs.ModelLock, error) {
	src, err := ParseSource(m.Source, BaseDir(spec))
	if err != nil {
		return specs.ModelLock{}, err
	}
	ml := specs.ModelLock{Target: target, Source: src.Redacted()}
	name := src.FileName()
	if m.Checksum != "" {
		c, err := ParseChecksum(m.Checksum)
		if err != nil {
			return ml, err
		}
		ml.Checksum, ml.ChecksumFrom = c.String(), FromSpec
		return ml, r.setPath(&ml, c, name)
	}
	// A file already in a models directory (left there by the seed tool) is trusted on first
	// use, as a download would be, without asking the source.
	if aml, ok, err := r.adoptFirstUse(ctx, m, ml, name); err != nil || ok {
		return aml, err
	}
	rem, err := r.Fetcher.Resolve(ctx, src)
	if err != nil {
		return ml, err
	}
	if name == "" {
		name = rem.FileName
	}
	if !rem.Checksum.IsZero() {
		ml.Checksum, ml.Size, ml.ChecksumFrom = rem.Checksum.String(), rem.Size, FromSource
		return ml, r.setPath(&ml, rem.Checksum, name)
	}
	// Trust on first use: download straight into the store, then record what was received.
	if r.Store == nil {
		return ml, errors.New("no checksum in the spec and none published by the source, and no store to download it into")
	}
	return r.firstDownload(ctx, src, m, ml, name)
}

func (r *Resolver) setPath(ml *specs.ModelLock, c Checksum, name string) error {
	if name == "" || name == "." || name == "/" {
		name = path.Base(ml.Target)
	}
	p, err := PathFor(c, store.SanitizeName(name))
	if err != nil {
		return err
	}
	ml.StorePath = p.String()
	return nil
}

func (r *Resolver) firstDownload(ctx context.Context, src Source, m specs.Model, ml specs.ModelLock, name string) (specs.ModelLock, error) {
	dir := r.Fetcher.opts.PartialDir
	if dir == "" {
		dir = layout.New(r.Store.Root()).Downloads()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ml, err
	}
	tmp, err := os.MkdirTemp(dir, "first-")
	if err != nil {
		return ml, err
	}
	defer os.RemoveAll(tmp)
	file := filepath.Join(tmp, "model")
	task := r.Progress.Start("model " + ml.Target)
	task.Status("downloading " + src.Redacted() + " (no checksum known)")
	res, err := r.Fetcher.Fetch(ctx, src, Want{}, file, task)
	if err != nil {
		task.Done("", err)
		return ml, err
	}
	ml.Checksum, ml.Size, ml.ChecksumFrom = res.Checksum.String(), res.Size, FromFirstDownload
	if err := r.setPath(&ml, res.Checksum, name); err != nil {
		task.Done("", err)
		return ml, err
	}
	d, err := Derivation(ml, m.Pos)
	if err != nil {
		task.Done("", err)
		return ml, err
	}
	_, err = r.Store.AddKnown(ctx, d.Path, store.AddOptions{Kind: d.Kind, Derivation: d.CanonicalJSON(), CA: d.Fixed.CA},
		func(ctx context.Context, out string) (store.KnownNar, error) {
			if err := moveFile(file, out); err != nil {
				return store.KnownNar{}, err
			}
			return store.KnownNar{Hash: res.NarHash, Size: res.NarSize}, os.Chmod(out, 0o444)
		})
	if err != nil {
		task.Done("", err)
		return ml, err
	}
	task.Done("stored "+d.Path.String(), nil)
	if r.Warnf != nil {
		where := ""
		if p := m.Pos.String(); p != "" {
			where = " (" + p + ")"
		}
		r.Warnf("warning: model %s%s has no checksum in the spec and its source publishes none: trusted on first use as %s; the lock records it and later builds verify it (add checksum = %q to the spec to pin it)", ml.Target, where, ml.Checksum, ml.Checksum)
	}
	return ml, nil
}
