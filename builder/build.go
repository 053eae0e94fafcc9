package builder

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/builder/drv"
	"github.com/runpod-comfy/runpod-comfy/builder/git"
	"github.com/runpod-comfy/runpod-comfy/builder/model"
	"github.com/runpod-comfy/runpod-comfy/builder/python"
	"github.com/runpod-comfy/runpod-comfy/builder/registry"
	"github.com/runpod-comfy/runpod-comfy/internal/layout"
	"github.com/runpod-comfy/runpod-comfy/internal/progress"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// BuildOptions configure Build, EnsureLock and BuildPlan.
type BuildOptions struct {
	// Root is ROOT, the volume (absolute).
	Root string
	// Spec is the evaluated spec (lang.LoadVersion).
	Spec *specs.Spec
	// LockFile is the lock to use and update; "" means LockPath(Root, id).
	LockFile string
	// Update re-resolves all entries (UpdateNames empty) or the named ones.
	Update      bool
	UpdateNames []string
	// Jobs is the number of derivations built at once (0 = the CPU count).
	Jobs int
	// GitToken is sent as basic auth to the https hosts of the spec's own repositories (the
	// comfy repo and every custom node's), never to another host; never logged or stored.
	GitToken string
	// GitTokens maps an https host ("host" or "host:port") to its own token, sent to that
	// host wherever it appears (a submodule's included).
	GitTokens map[string]string
	// SkipModels leaves models out of the root.
	SkipModels bool
	// Offline builds without network: pip resolves from local find_links only and wheels
	// come from the wheel cache and find_links (the spec's options.offline does the same).
	Offline bool
	// Environ is the caller's environment (cmd passes its own): PATH and what the
	// Python interpreter needs to be found and probed; pip sees only python.PassEnv(Environ).
	Environ []string
	// Models configures model downloads (tokens, endpoints, GCS client); cmd fills it.
	// DownloadJobs limits model downloads running at once (0 = 4), apart from Jobs.
	Models       model.Options
	DownloadJobs int
	// RegistryURL is the Comfy Registry's API ("" = registry.DefaultURL); cmd fills it from
	// $RUNPOD_COMFY_REGISTRY_URL. The registry and its download host get no credentials.
	RegistryURL string
	// Progress shows what is happening (nil = silent).
	Progress *progress.Display
	// Substitute is passed to Realise (CACHE).
	Substitute func(ctx context.Context, d *drv.Derivation) (bool, error)
}

// BuildResult is what Build made.
type BuildResult struct {
	VersionID string `json:"version_id"`
	// Root is the runtime root object; Dir its absolute path; Link is ROOT/builds/comfy-<id>.
	Root       store.Path `json:"root"`
	Dir        string     `json:"dir"`
	Link       string     `json:"link"`
	Digest     string     `json:"digest"`
	NarHash    string     `json:"nar_hash"`
	Generation int        `json:"generation"`
	LockFile   string     `json:"lock_file"`
	// Resolved is true when the lock was (re-)resolved by this build.
	Resolved bool `json:"resolved"`
	// Built and Substituted count objects made by this build; Valid those already there.
	Built       int          `json:"built"`
	Substituted int          `json:"substituted"`
	Valid       int          `json:"valid"`
	Nodes       []NodeStatus `json:"nodes"`
	Lock        *specs.Lock  `json:"-"`
}

// NodeStatus is the post-build check of one declared git source (nothing declared may be
// silently missing).
type NodeStatus struct {
	Name   string `json:"name"`
	Commit string `json:"commit,omitempty"`
	// Registry is a registry node's "<id>@<version>" (Commit is then empty).
	Registry  string `json:"registry,omitempty"`
	StorePath string `json:"store_path"`
	OK        bool   `json:"ok"`
	Problem   string `json:"problem,omitempty"`
}

// pinWord names what the node is pinned to, for messages.
func (n NodeStatus) pinWord() string {
	if n.Registry != "" {
		return "version " + n.Registry
	}
	return "commit"
}

// LockPath is the default lock file of version id: ROOT/cache/runpod-comfy/resolved/<id>.lock.json.
func LockPath(root, id string) string {
	return layout.New(root).Lock(id)
}

// MirrorDir is the git mirror cache: ROOT/cache/runpod-comfy/git.
func MirrorDir(root string) string { return layout.New(root).Git() }

func (o BuildOptions) lockFile() string {
	if o.LockFile != "" {
		return o.LockFile
	}
	return LockPath(o.Root, o.Spec.VersionID)
}

// EnsureLock returns the lock for opts.Spec: the existing lock file as is when its spec_hash
// matches and no update is asked (no network), else a fresh resolution reusing the old
// lock's unchanged entries, written to the lock file. resolved reports the latter.
func EnsureLock(ctx context.Context, opts BuildOptions) (lock *specs.Lock, file string, resolved bool, err error) {
	if opts.Spec == nil {
		return nil, "", false, errors.New("no spec")
	}
	file = opts.lockFile()
	old, err := specs.ReadLock(file)
	var seedData []byte
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		old = nil
	case errors.Is(err, specs.ErrLockVersion) && readSeedLockFile(file, opts.Spec, &old, &seedData):
		// A lock the seed tool wrote: its pinned commits are kept (unless --update names
		// them), everything else is resolved; the file itself is kept beside the new lock.
		opts.Progress.Logf("lock: %s was written by the seed tool: migrating it, keeping its pinned commits (the old file is kept as %s)", file, file+SeedLockSuffix)
	case opts.Update && len(opts.UpdateNames) == 0:
		old = nil // re-resolving everything: an unreadable old lock does not matter
	default:
		return nil, file, false, err
	}
	// A lock without the spec's env was written before the lock held it: resolve again (the
	// pins are reused, without network) rather than build a root without the env.
	if old != nil && old.VersionID == opts.Spec.VersionID && old.SpecHash == specs.Hash(opts.Spec) && !opts.Update &&
		maps.Equal(old.Env, opts.Spec.Env) {
		// The interpreter or its site-packages may have changed under an unchanged spec.
		err := python.CheckLock(ctx, opts.Spec, old.Python, opts.Environ)
		if err == nil {
			return old, file, false, nil
		}
		opts.Progress.Logf("python: %v", err)
	}
	models, err := model.NewResolver(opts.Root, opts.Models, opts.DownloadJobs, opts.Progress)
	if err != nil {
		return nil, file, false, err
	}
	reg, err := newRegistry(opts)
	if err != nil {
		return nil, file, false, err
	}
	lock, err = Resolve(ctx, opts.Spec, old, ResolveOptions{
		Registry:    reg,
		Models:      models,
		Git:         newMirrors(opts),
		Update:      opts.Update,
		UpdateNames: opts.UpdateNames,
		Root:        opts.Root,
		Environ:     opts.Environ,
		Offline:     opts.Offline || opts.Spec.Options.Offline,
		Progress:    opts.Progress,
	})
	if err != nil {
		return nil, file, false, err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return nil, file, false, fmt.Errorf("writing lock: %w", err)
	}
	if seedData != nil {
		if _, err := keepSeedLock(file, seedData); err != nil {
			return nil, file, false, err
		}
	}
	if err := lock.WriteFile(file); err != nil {
		return nil, file, false, err
	}
	return lock, file, true, nil
}

// newRegistry returns the registry resolver of opts: the client of opts.RegistryURL and the
// archive cache of opts.Root.
func newRegistry(opts BuildOptions) (*registry.Resolver, error) {
	c, err := registry.NewClient(opts.RegistryURL)
	if err != nil {
		return nil, err
	}
	return &registry.Resolver{Client: c, Fetcher: registry.NewFetcher(layout.New(opts.Root).Registry()), Offline: opts.Offline || opts.Spec.Options.Offline}, nil
}

// newMirrors returns the mirror cache of opts.Root with the credentials opts allow: the
// token for the hosts of opts.Spec's repositories, the per-host tokens for their hosts.
func newMirrors(opts BuildOptions) *git.Mirrors {
	m := git.NewMirrors(MirrorDir(opts.Root), GitCredentials(opts.Spec, opts.GitToken, opts.GitTokens))
	m.Log = func(s string) { opts.Progress.Logf("%s", s) } // a broken mirror repaired
	return m
}

// GitCredentials returns the credentials of spec's git fetches: token goes to the https hosts
// spec names for its comfy repo and custom nodes, perHost tokens to their own hosts.
func GitCredentials(spec *specs.Spec, token string, perHost map[string]string) git.Credentials {
	c := git.Credentials{Token: token, PerHost: perHost}
	if spec == nil || token == "" {
		return c
	}
	add := func(u string) {
		if h := git.RepoHost(u); h != "" && !slices.Contains(c.Hosts, h) {
			c.Hosts = append(c.Hosts, h)
		}
	}
	add(spec.Comfy.Repo)
	for _, n := range spec.CustomNodes {
		if n.Repo != "" {
			add(n.Repo)
		}
	}
	return c
}

// builders returns the builder of every kind, wired kind by kind.
func builders(opts BuildOptions, mirrors *git.Mirrors) map[string]drv.Builder {
	pyb := python.NewBuilder(opts.Root, opts.Spec, opts.Offline, opts.Environ)
	return map[string]drv.Builder{
		drv.KindGit:      &git.Builder{Mirrors: mirrors},
		drv.KindRegistry: drv.Limit(&registry.Builder{Fetcher: registry.NewFetcher(layout.New(opts.Root).Registry())}, cmp.Or(opts.DownloadJobs, 4)),
		drv.KindRoot:     rootBuilder{},
		drv.KindModel:    drv.Limit(model.NewBuilder(opts.Models, opts.Root, opts.Spec, opts.Progress), cmp.Or(opts.DownloadJobs, 4)),
		drv.KindPython:   pyb,
		// Package objects download and unpack: as many at once as model downloads.
		drv.KindPythonPackage: drv.Limit(pyb, cmp.Or(opts.DownloadJobs, 4)),
		drv.KindVenv:          pyb,
	}
}

// Build makes the runtime root of opts.Spec and points ROOT/builds/comfy-<id> at it: it
// resolves when the lock is missing or stale, plans, realises in parallel, records NAR
// hashes and store paths in the lock, checks every declared node is in the root at its pinned
// commit and only then swaps the root link atomically (the previous root stays as a
// generation).
// On a built version it reads metadata only.
func Build(ctx context.Context, opts BuildOptions) (*BuildResult, error) {
	s, err := store.Open(opts.Root)
	if err != nil {
		return nil, err
	}
	// The seed tool's ComfyUI checkout at builds/comfy-<id> is moved aside before any work,
	// so that the root link can take its place at the end.
	if aside, err := MoveAsideSeedBuild(opts.Root, opts.Spec.VersionID); err != nil {
		return nil, err
	} else if aside != "" {
		opts.Progress.Logf("builds: %s was a directory (the seed tool's build): moved to %s, not deleted; builds/%s%s becomes the link to the new root (delete the old directory once you no longer need it)",
			s.RootLink(opts.Spec.VersionID), aside, store.RootPrefix, opts.Spec.VersionID)
	}
	lock, file, resolved, err := EnsureLock(ctx, opts)
	if err != nil {
		return nil, err
	}
	plan, err := NewPlan(opts.Spec, lock, PlanOptions{SkipModels: opts.SkipModels})
	if err != nil {
		return nil, err
	}
	paths := make([]store.Path, len(plan.All))
	for i, d := range plan.All {
		paths[i] = d.Path
	}
	tr, err := s.AddTempRoot(ctx, paths)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	if err := adoptModels(ctx, s, opts, plan); err != nil {
		return nil, err
	}
	mirrors := newMirrors(opts)
	real, err := Realise(ctx, plan.All, RealiseOptions{
		Store:      s,
		Builders:   builders(opts, mirrors),
		Jobs:       opts.Jobs,
		Progress:   opts.Progress,
		Substitute: opts.Substitute,
	})
	if err != nil {
		return nil, err
	}
	if err := recordLock(s, lock, plan, real, file); err != nil {
		return nil, err
	}
	id := opts.Spec.VersionID
	// The post-build check runs before the swap: a root that fails it never becomes
	// builds/comfy-<id> (the previous root stays current and no generation is made).
	nodes := CheckRoot(s, plan.Root.Path, lock)
	for _, n := range nodes {
		if !n.OK {
			return &BuildResult{VersionID: id, Root: plan.Root.Path, Nodes: nodes, LockFile: file, Lock: lock},
				fmt.Errorf("runtime root %s: %s is not at its pinned %s: %s (builds/comfy-%s was left as it was)", plan.Root.Path, n.Name, n.pinWord(), n.Problem, id)
		}
	}
	gen, err := s.SetRoot(id, plan.Root.Path)
	if err != nil {
		return nil, err
	}
	rm := real.Metas[plan.Root.Path]
	res := &BuildResult{
		VersionID:   id,
		Root:        plan.Root.Path,
		Dir:         s.Abs(plan.Root.Path),
		Link:        s.RootLink(id),
		Digest:      plan.Root.Path.Digest().String(),
		NarHash:     rm.NarHash,
		Generation:  gen,
		LockFile:    file,
		Resolved:    resolved,
		Built:       len(real.Built),
		Substituted: len(real.Substituted),
		Valid:       len(plan.All) - len(real.Built) - len(real.Substituted),
		Lock:        lock,
	}
	res.Nodes = nodes
	return res, nil
}

// recordLock writes the NAR hashes and store paths of the git sources, and the wheels the
// locked sdists were built into, into the lock (and its file) when they are new.
func recordLock(s *store.Store, lock *specs.Lock, plan *Plan, real *Realised, file string) error {
	before := cloneLock(lock)
	set := func(g *specs.GitLock, d *drv.Derivation) {
		if m := real.Metas[d.Path]; m != nil {
			g.NarHash, g.StorePath = m.NarHash, d.Path.String()
		}
	}
	set(&lock.Comfy, plan.Comfy)
	for i := range lock.CustomNodes {
		if d := plan.node(lock.CustomNodes[i].Name); d != nil {
			set(&lock.CustomNodes[i].GitLock, d)
		}
	}
	if lock.Python != nil {
		for _, d := range plan.Packages {
			pp, ok := d.Params.(*python.PackageParams)
			if !ok || strings.HasSuffix(pp.Filename, ".whl") || real.Metas[d.Path] == nil {
				continue
			}
			info, err := python.ReadPackageInfo(s.Abs(d.Path))
			if err != nil {
				return fmt.Errorf("%s: %w", d.Where(), err)
			}
			for i := range lock.Python.Packages {
				if p := &lock.Python.Packages[i]; p.SHA256 == pp.SHA256 && p.Filename == pp.Filename {
					w := info.Wheel
					p.Wheel = &w
				}
			}
		}
	}
	if reflect.DeepEqual(before, lock) {
		return nil
	}
	return lock.WriteFile(file)
}

func cloneLock(l *specs.Lock) *specs.Lock { return l.Clone() }

// CheckRoot checks that ComfyUI and every custom node of lock are linked from the runtime
// root at their pinned commits (the link exists, points at a valid git object whose content
// address names the commit).
func CheckRoot(s *store.Store, root store.Path, lock *specs.Lock) []NodeStatus {
	dir := s.Abs(root)
	check := func(name, rel string, g specs.GitLock, r *specs.RegistryLock) NodeStatus {
		st := NodeStatus{Name: name, Commit: g.Commit}
		wantCA, what := "git:"+g.Commit, "commit "+g.Commit
		if r != nil {
			st.Registry = r.ID + "@" + r.Version
			wantCA, what = registry.CA(*r), r.ID+"@"+r.Version+" (archive "+r.SHA256+")"
		}
		target, err := os.Readlink(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			st.Problem = "missing from the root: " + err.Error()
			return st
		}
		p, err := store.ParsePath(filepath.Base(target))
		if err != nil {
			st.Problem = "link does not name a store object: " + target
			return st
		}
		st.StorePath = p.String()
		m, err := s.Meta(p)
		if err != nil {
			st.Problem = "object not valid: " + err.Error()
			return st
		}
		if m.CA != wantCA {
			st.Problem = fmt.Sprintf("object holds %q, want %s", m.CA, what)
			return st
		}
		if _, err := os.Stat(s.Abs(p)); err != nil {
			st.Problem = "object missing on disk: " + err.Error()
			return st
		}
		st.OK = true
		return st
	}
	out := []NodeStatus{check("comfyui", "comfyui", lock.Comfy, nil)}
	for _, n := range lock.CustomNodes {
		out = append(out, check(n.Name, "custom_nodes/"+n.Name, n.GitLock, n.Registry))
	}
	return out
}

// Rollback points ROOT/builds/comfy-<id> at generation to (0 = the one before the current).
func Rollback(ctx context.Context, root, id string, to int) (store.Path, error) {
	s, err := store.Open(root)
	if err != nil {
		return store.Path{}, err
	}
	return s.Rollback(id, to)
}

// LoadPlan returns the plan of opts.Spec from its lock (resolving when needed, as Build
// does), with the store for validity checks.
func LoadPlan(ctx context.Context, opts BuildOptions) (*Plan, *store.Store, error) {
	s, err := store.Open(opts.Root)
	if err != nil {
		return nil, nil, err
	}
	lock, _, _, err := EnsureLock(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	plan, err := NewPlan(opts.Spec, lock, PlanOptions{SkipModels: opts.SkipModels})
	if err != nil {
		return nil, nil, err
	}
	return plan, s, nil
}
