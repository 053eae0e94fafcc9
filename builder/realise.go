package builder

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"github.com/runpod-comfy/runpod-comfy/builder/drv"
	"github.com/runpod-comfy/runpod-comfy/internal/progress"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// RealiseOptions configure Realise.
type RealiseOptions struct {
	Store *store.Store
	// Builders maps each drv.Kind to its builder.
	Builders map[string]drv.Builder
	// Jobs is the number of derivations built at once (0 = the CPU count).
	Jobs int
	// Progress shows one line per running build (may be nil).
	Progress *progress.Display
	// Substitute (CACHE wires it) is tried for each invalid object before building it;
	// returning true means d.Path is now valid in Store (e.g. restored from a binary cache
	// with store.Add and Source "substituted:<url>"). An error fails the node.
	Substitute func(ctx context.Context, d *drv.Derivation) (bool, error)
}

// Realised is the outcome of Realise.
type Realised struct {
	// Metas holds the metadata of every derivation of the graph.
	Metas map[store.Path]*store.Meta
	// Built and Substituted are the derivations made by this call; the rest were valid.
	Built, Substituted []*drv.Derivation
}

// NodeError is one failed derivation.
type NodeError struct {
	Node *drv.Derivation
	Err  error
}

func (e *NodeError) Error() string { return e.Node.Where() + ": " + e.Err.Error() }
func (e *NodeError) Unwrap() error { return e.Err }

// BuildError is a failed Realise: every failed node with its cause, and the nodes not built
// because an input failed.
type BuildError struct {
	Failed  []*NodeError
	Skipped []*drv.Derivation
}

func (e *BuildError) Error() string {
	var b strings.Builder
	if len(e.Failed) == 1 {
		b.WriteString("build failed: " + e.Failed[0].Error())
	} else {
		fmt.Fprintf(&b, "build failed: %d nodes failed:", len(e.Failed))
		for _, f := range e.Failed {
			b.WriteString("\n  " + f.Error())
		}
	}
	if len(e.Skipped) > 0 {
		names := make([]string, len(e.Skipped))
		for i, s := range e.Skipped {
			names[i] = s.String()
		}
		fmt.Fprintf(&b, "\n  not built because an input failed: %s", strings.Join(names, ", "))
	}
	return b.String()
}

// Unwrap returns the causes, so errors.Is finds context.Canceled and git errors.
func (e *BuildError) Unwrap() []error {
	out := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		out[i] = f
	}
	return out
}

// LockedNarHashError is a fixed object (a git source) whose content differs from the NAR
// hash the lock records: the source served other bytes for the locked commit, or the lock
// was edited. It is the builder's reading of a *store.NarHashMismatchError (the store's
// check of AddOptions.ExpectNarHash, which knows nothing of locks) and of a valid object
// whose metadata disagrees with the lock.
type LockedNarHashError struct {
	Path          store.Path
	Locked, Found string
}

func (e *LockedNarHashError) Error() string {
	return fmt.Sprintf("NAR hash of %s is %s but the lock records %s: the source served other bytes for the locked commit (or the lock was edited); check the remote, or re-resolve with `resolve --update`", e.Path, e.Found, e.Locked)
}

// Realise makes every derivation of nodes valid in the store, in parallel: inputs before
// readers, at most Jobs at once, each object once (store.Add takes a lease per object, so
// another process building the same object is waited for, not duplicated). nodes must list
// inputs before the derivations reading them (Plan.All does). On failure it returns a
// *BuildError naming every failed node; objects are only registered after their builder
// succeeded, so a failure or a cancelled ctx leaves nothing half-registered.
func Realise(ctx context.Context, nodes []*drv.Derivation, opts RealiseOptions) (*Realised, error) {
	if opts.Store == nil {
		return nil, errors.New("realise: no store")
	}
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	type state struct {
		done chan struct{}
		err  error // set before done is closed
		meta *store.Meta
		how  string // "valid", "built", "substituted", "skipped"
	}
	states := make(map[*drv.Derivation]*state, len(nodes))
	for _, d := range nodes {
		if d.Path.IsZero() {
			return nil, fmt.Errorf("realise: %s is not sealed", d)
		}
		states[d] = &state{done: make(chan struct{})}
	}
	for _, d := range nodes {
		for _, in := range d.Inputs {
			if states[in] == nil {
				return nil, fmt.Errorf("realise: input %s of %s is not in the graph", in, d)
			}
		}
	}
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for _, d := range nodes {
		st := states[d]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(st.done)
			for _, in := range d.Inputs {
				is := states[in]
				select {
				case <-is.done:
				case <-ctx.Done():
					st.err, st.how = ctx.Err(), "failed"
					return
				}
				if is.err != nil {
					st.how, st.err = "skipped", errSkipped
					return
				}
			}
			st.meta, st.how, st.err = realiseOne(ctx, d, opts, sem)
		}()
	}
	wg.Wait()

	res := &Realised{Metas: map[store.Path]*store.Meta{}}
	be := &BuildError{}
	for _, d := range nodes {
		st := states[d]
		switch {
		case st.how == "skipped":
			be.Skipped = append(be.Skipped, d)
		case st.err != nil:
			be.Failed = append(be.Failed, &NodeError{Node: d, Err: st.err})
		default:
			res.Metas[d.Path] = st.meta
			switch st.how {
			case "built":
				res.Built = append(res.Built, d)
			case "substituted":
				res.Substituted = append(res.Substituted, d)
			}
		}
	}
	if len(be.Failed) > 0 {
		if err := ctx.Err(); err != nil {
			// Interrupted (Ctrl-C): one line, not every node's context error.
			return res, &InterruptedError{Built: len(res.Built) + len(res.Substituted), Err: err}
		}
		return res, be
	}
	return res, nil
}

// InterruptedError is a Realise stopped by its context (Ctrl-C). The objects finished before
// the interruption stay registered; nothing half-built is.
type InterruptedError struct {
	Built int
	Err   error
}

func (e *InterruptedError) Error() string {
	return fmt.Sprintf("build interrupted after %d new objects (nothing half-built was registered): %v", e.Built, e.Err)
}

func (e *InterruptedError) Unwrap() error { return e.Err }

var errSkipped = errors.New("an input failed")

// realiseOne makes one derivation valid.
func realiseOne(ctx context.Context, d *drv.Derivation, opts RealiseOptions, sem chan struct{}) (*store.Meta, string, error) {
	s := opts.Store
	if m, err := s.Meta(d.Path); err == nil {
		return m, "valid", checkNar(d, m)
	} else if !errors.Is(err, store.ErrNotValid) {
		return nil, "failed", err
	}
	b := opts.Builders[d.Kind]
	if b == nil {
		return nil, "failed", fmt.Errorf("no builder for kind %q", d.Kind)
	}
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, "failed", ctx.Err()
	}
	defer func() { <-sem }()
	if opts.Substitute != nil && !d.LinksInputs {
		ok, err := opts.Substitute(ctx, d)
		if err != nil {
			return nil, "failed", fmt.Errorf("substituting: %w", err)
		}
		if ok {
			m, err := s.Meta(d.Path)
			if err != nil {
				return nil, "failed", fmt.Errorf("substituting: %w", err)
			}
			return m, "substituted", checkNar(d, m)
		}
	}
	task := opts.Progress.Start(d.Kind + " " + d.Name)
	bc := &drv.BuildContext{Store: s, Task: task}
	ao := store.AddOptions{
		Kind:        d.Kind,
		References:  d.References(),
		Derivation:  d.CanonicalJSON(),
		AtFinalPath: d.AtFinalPath,
		// A venv shares its packages' files: composing it is links, fetching it is bytes.
		LinksFromReferences: d.LinksInputs,
	}
	if d.Fixed != nil {
		ao.CA = d.Fixed.CA
		ao.ExpectNarHash = d.Fixed.NarHash
		ao.References = nil
	}
	built := false
	m, err := s.AddKnown(ctx, d.Path, ao, func(ctx context.Context, out string) (store.KnownNar, error) {
		built = true
		err := b.Build(ctx, bc, d, out)
		return bc.KnownNar, err
	})
	if err != nil {
		var mm *store.NarHashMismatchError
		if d.Fixed != nil && d.Fixed.NarHash != "" && errors.As(err, &mm) {
			err = &LockedNarHashError{Path: d.Path, Locked: d.Fixed.NarHash, Found: mm.Got}
		}
		task.Done("", err)
		return nil, "failed", err
	}
	if !built {
		// Another process registered it while we waited for its lease.
		task.Done("built by another process", nil)
		return m, "valid", checkNar(d, m)
	}
	task.Done("built "+d.Path.String(), nil)
	return m, "built", nil
}

// checkNar fails a valid fixed object whose NAR hash differs from the lock's.
func checkNar(d *drv.Derivation, m *store.Meta) error {
	if d.Fixed != nil && d.Fixed.NarHash != "" && m.NarHash != d.Fixed.NarHash {
		return &LockedNarHashError{Path: d.Path, Locked: d.Fixed.NarHash, Found: m.NarHash}
	}
	return nil
}
