package builder

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/runpod-comfy/runpod-comfy/builder/git"
	"github.com/runpod-comfy/runpod-comfy/builder/model"
	"github.com/runpod-comfy/runpod-comfy/builder/python"
	"github.com/runpod-comfy/runpod-comfy/builder/registry"
	"github.com/runpod-comfy/runpod-comfy/internal/progress"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// ResolveOptions configure Resolve.
type ResolveOptions struct {
	// Git is the mirror cache used for ls-remote and for reading files at commits.
	Git *git.Mirrors
	// Update re-resolves entries of the old lock: all of them when UpdateNames is empty,
	// else the named ones ("comfyui", a node name, a model target, "python"). A name the
	// spec does not have is an error.
	Update      bool
	UpdateNames []string
	// Progress shows what is being resolved (may be nil).
	Progress *progress.Display
	// Root, Environ and Offline configure the pip resolution (python.LockOptions).
	Root    string
	Environ []string
	Offline bool
	// Models resolves model checksums (needed when the spec has models).
	Models *model.Resolver
	// Registry resolves Comfy Registry nodes and reads their archives (needed when the spec
	// has registry nodes).
	Registry *registry.Resolver
}

// Updating reports whether the entry called name is to be re-resolved even when unchanged.
func (o ResolveOptions) Updating(name string) bool {
	if !o.Update {
		return false
	}
	return len(o.UpdateNames) == 0 || slices.Contains(o.UpdateNames, name)
}

// checkUpdateNames refuses an update name that names no entry of spec, which would
// otherwise re-resolve nothing and leave the lock as it was.
func checkUpdateNames(spec *specs.Spec, names []string) error {
	known := []string{"comfyui", "python"}
	for _, n := range spec.CustomNodes {
		known = append(known, n.Name)
	}
	for _, m := range spec.Models {
		if t, err := specs.ModelTarget(m); err == nil {
			known = append(known, t)
		}
	}
	for _, name := range names {
		if !slices.Contains(known, name) {
			return fmt.Errorf("resolve --update %s: version %s has no such entry (want comfyui, python, a custom node name or a model target)", name, spec.VersionID)
		}
	}
	return nil
}

// ResolveError is a spec entry that could not be resolved; it names the node and the spec
// position.
type ResolveError struct {
	Node string // "comfy" or `custom node "name"`
	Pos  specs.Pos
	Err  error
}

func (e *ResolveError) Error() string {
	if p := e.Pos.String(); p != "" {
		return fmt.Sprintf("%s: %s: %v", p, e.Node, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Node, e.Err)
}

func (e *ResolveError) Unwrap() error { return e.Err }

// Resolve returns the lock of spec, in its canonical form (specs.Lock.Canonicalize). Entries of old (may be nil) are reused when their spec
// entry is unchanged and not being updated, so only what changed needs the network; a spec
// whose sources are pinned to full commits resolves without network.
func Resolve(ctx context.Context, spec *specs.Spec, old *specs.Lock, opts ResolveOptions) (*specs.Lock, error) {
	if opts.Git == nil {
		return nil, errors.New("resolve: no git mirror cache")
	}
	if err := checkUpdateNames(spec, opts.UpdateNames); err != nil {
		return nil, err
	}
	lock := &specs.Lock{
		LockVersion: specs.LockVersion,
		VersionID:   spec.VersionID,
		SpecHash:    specs.Hash(spec),
		CustomNodes: []specs.NodeLock{},
		Models:      []specs.ModelLock{},
		Env:         maps.Clone(spec.Env),
	}
	if old != nil && old.VersionID != spec.VersionID {
		old = nil
	}

	// 1. Git sources: ComfyUI and every custom node.
	var errs []error
	var oldComfy *specs.GitLock
	if old != nil {
		oldComfy = &old.Comfy
	}
	c, err := resolveGit(ctx, opts, "comfyui", spec.Comfy.Repo, spec.Comfy.Ref, spec.Comfy.Commit, false, oldComfy)
	if err != nil {
		errs = append(errs, &ResolveError{Node: "comfy", Pos: spec.Comfy.Pos, Err: err})
	} else {
		lock.Comfy = c
	}
	for _, n := range spec.CustomNodes {
		if n.IsRegistry() {
			nl, err := resolveRegistry(ctx, opts, n, old)
			if err != nil {
				errs = append(errs, &ResolveError{Node: n.Label(), Pos: n.Pos, Err: err})
				continue
			}
			lock.CustomNodes = append(lock.CustomNodes, nl)
			continue
		}
		var prev *specs.GitLock
		if old != nil {
			for i := range old.CustomNodes {
				if old.CustomNodes[i].Name == n.Name {
					prev = &old.CustomNodes[i].GitLock
				}
			}
		}
		g, err := resolveGit(ctx, opts, n.Name, n.Repo, n.Ref, n.Commit, n.Submodules, prev)
		if err != nil {
			errs = append(errs, &ResolveError{Node: fmt.Sprintf("custom node %q", n.Name), Pos: n.Pos, Err: err})
			continue
		}
		lock.CustomNodes = append(lock.CustomNodes, specs.NodeLock{
			Name:                n.Name,
			GitLock:             g,
			InstallRequirements: n.WantsRequirements(),
			Writable:            n.Writable,
		})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// The lock's order from here on, whatever the spec's: the Python requirements below are
	// gathered in this order, and the lock read back from its file has it.
	lock.Canonicalize()

	// 2. Models: checksums from the spec, the source's metadata or a first download.
	if len(spec.Models) > 0 {
		if opts.Models == nil {
			return nil, errors.New("resolve: the spec has models but no model resolver was given")
		}
		ms, err := opts.Models.Resolve(ctx, spec, old, opts.Updating)
		if err != nil {
			return nil, err
		}
		lock.Models = ms
	}

	// 3. Python: ComfyUI's, the nodes' and the spec's requirements resolved together,
	// read straight from the mirrors at the locked commits.
	py, err := python.ResolveLock(ctx, spec, lock, old, python.LockOptions{
		Root: opts.Root, Environ: opts.Environ, Offline: opts.Offline, Update: opts.Updating("python"),
		ReadFile: opts.Git.ReadFile,
		ReadNode: func(ctx context.Context, n specs.NodeLock, name string) ([]byte, error) {
			if n.Registry != nil {
				if opts.Registry == nil {
					return nil, errors.New("no registry configured to read the node's archive")
				}
				return opts.Registry.ReadFile(ctx, *n.Registry, name)
			}
			return opts.Git.ReadFile(ctx, n.Repo, n.Commit, name)
		},
		Warn:     func(w string) { opts.Progress.Logf("warning: %s", w) },
		Progress: opts.Progress,
	})
	if err != nil {
		return nil, err
	}
	lock.Python = py
	lock.Canonicalize()
	return lock, nil
}

// resolveGit pins one git source. A spec commit that is a full id is taken as is; otherwise
// the ref (or a branch name written in commit) is resolved on the remote, unless the old
// lock already pinned the same request.
func resolveGit(ctx context.Context, opts ResolveOptions, name, repo, ref, commit string, submodules bool, prev *specs.GitLock) (specs.GitLock, error) {
	if commit != "" && !specs.IsFullCommit(commit) {
		// A branch, tag or abbreviated commit written in commit: treat it as a ref.
		if ref == "" {
			ref = commit
		}
		commit = ""
	}
	g := specs.GitLock{Repo: git.CleanURL(repo), Ref: ref, Submodules: submodules}
	if commit != "" {
		g.Commit = commit
	}
	// Reuse the previous pin when the request is unchanged.
	if prev != nil && prev.Repo == g.Repo && prev.Submodules == submodules && prev.Ref == ref &&
		(commit == "" || prev.Commit == commit) && !opts.Updating(name) {
		return *prev, nil
	}
	if commit != "" {
		// Keep the recorded NAR hash when only the ref label changed.
		if prev != nil && prev.Repo == g.Repo && prev.Commit == commit && prev.Submodules == submodules {
			g.NarHash, g.StorePath = prev.NarHash, prev.StorePath
		}
		return g, nil
	}
	if ref == "" {
		ref = "HEAD"
		g.Ref = ""
	}
	t := opts.Progress.Start("resolve " + name)
	t.Status("ls-remote " + git.CleanURL(repo) + " " + ref)
	c, err := opts.Git.ResolveRef(ctx, repo, ref)
	if err != nil {
		t.Done("", err)
		return g, err
	}
	t.Done(ref+" -> "+c[:12], nil)
	g.Commit = c
	if prev != nil && prev.Repo == g.Repo && prev.Commit == c && prev.Submodules == submodules {
		g.NarHash, g.StorePath = prev.NarHash, prev.StorePath
	}
	return g, nil
}

// resolveRegistry pins one registry node: the old lock's pin is reused when the node asks for
// the same id and version request and is not being updated (no network); otherwise the
// registry picks the version and the archive is hashed. The NAR hash and store path recorded
// by an earlier build are kept when the archive is the same.
func resolveRegistry(ctx context.Context, opts ResolveOptions, n specs.CustomNode, old *specs.Lock) (specs.NodeLock, error) {
	var prev *specs.NodeLock
	if old != nil {
		for i := range old.CustomNodes {
			if old.CustomNodes[i].Name == n.Name && old.CustomNodes[i].Registry != nil {
				prev = &old.CustomNodes[i]
			}
		}
	}
	if opts.Registry == nil {
		return specs.NodeLock{}, errors.New("no registry configured")
	}
	var prevR *specs.RegistryLock
	if prev != nil {
		prevR = prev.Registry
	}
	updating := opts.Updating(n.Name)
	if prevR != nil && prevR.ID == n.Registry && prevR.Request == n.Version && !updating {
		nl := *prev
		rc := *prevR
		nl.Registry = &rc
		nl.GitLock = specs.GitLock{NarHash: prev.NarHash, StorePath: prev.StorePath}
		nl.InstallRequirements, nl.Writable = n.WantsRequirements(), n.Writable
		return nl, nil
	}
	t := opts.Progress.Start("resolve " + n.Name)
	t.Status("registry " + n.Registry + "@" + n.Version)
	r, warns, err := opts.Registry.Resolve(ctx, n, prevR, updating)
	if err != nil {
		t.Done("", err)
		return specs.NodeLock{}, err
	}
	t.Done(n.Registry+"@"+n.Version+" -> "+r.Version, nil)
	for _, w := range warns {
		opts.Progress.Logf("warning: %s (%s): %s", n.Label(), n.Pos, w)
	}
	nl := specs.NodeLock{Name: n.Name, Registry: &r, InstallRequirements: n.WantsRequirements(), Writable: n.Writable}
	if prevR != nil && prevR.SHA256 == r.SHA256 {
		nl.NarHash, nl.StorePath = prev.NarHash, prev.StorePath
	}
	return nl, nil
}
