// Package builder turns a spec into a runtime root in the store: it resolves the spec into a
// lock, plans the derivation graph, realises it in parallel and swaps builds/comfy-<id> to
// the new root.
//
// Words (the derivation model itself is in package builder/drv):
//
//   - Resolve: spec -> lock (specs.Lock). Refs become commits (ls-remote), registry nodes'
//     version requests become exact versions with their archive's sha256 (builder/registry),
//     models get their checksums, the pip resolution is pinned. An entry of an older lock is reused when its
//     spec entry did not change, so a spec change re-resolves only what changed, and a lock
//     whose spec_hash still matches is used as is, without network.
//   - Plan: lock -> derivation graph (NewPlan): comfyui-src, node-src×N, python, venv,
//     model×M, root. Every node has its store path before anything is built.
//   - Realise: build every node that is not valid yet, in parallel (-j), each object once
//     across processes (store.Add leases), failing closed.
//   - Runtime root: the root derivation's output, a store object holding relative symlinks
//     to the other objects, extra_model_paths.yaml, bin/comfyui and manifest.json.
//   - Generation: an earlier runtime root of a version, kept by the store for rollback.
//
// # Entry points
//
//	// Build resolves (when the lock is missing or stale), plans, realises and swaps
//	// builds/comfy-<id>. RUNNER and SERVE call it for "build if needed": on a built version
//	// it touches metadata only.
//	func Build(ctx context.Context, opts BuildOptions) (*BuildResult, error)
//	// EnsureLock returns the lock Build would use, resolving and writing it when needed.
//	func EnsureLock(ctx context.Context, opts BuildOptions) (lock *specs.Lock, file string, resolved bool, err error)
//	func Resolve(ctx context.Context, spec *specs.Spec, old *specs.Lock, opts ResolveOptions) (*specs.Lock, error)
//	func NewPlan(spec *specs.Spec, lock *specs.Lock, opts PlanOptions) (*Plan, error)
//	func Realise(ctx context.Context, nodes []*drv.Derivation, opts RealiseOptions) (*Realised, error)
//	func Rollback(ctx context.Context, root, id string, to int) (store.Path, error)
//	// LoadPlan is EnsureLock + NewPlan with the store, for `plan`; Plan.Describe lists the nodes.
//	func LoadPlan(ctx context.Context, opts BuildOptions) (*Plan, *store.Store, error)
//	// CheckRoot is the post-build check: ComfyUI and every node linked at its pinned commit.
//	func CheckRoot(s *store.Store, root store.Path, lock *specs.Lock) []NodeStatus
//
// BuildResult.Root is the root's store.Path and BuildResult.Dir its absolute path
// (ROOT/store/<digest>-comfy-<id>); BuildResult.Link is ROOT/builds/comfy-<id>. Build returns
// a *BuildError when objects failed, a *ResolveError (joined) when refs could not be pinned,
// and an error wrapping context.Canceled when ctx was cancelled. The lock file defaults to
// LockPath(root, id) = ROOT/cache/runpod-comfy/resolved/<id>.lock.json; git mirrors live in
// MirrorDir(root) = ROOT/cache/runpod-comfy/git.
//
// # Hook points for the other kinds (MODELS, PYTHON, CACHE)
//
// Package builder imports the kind packages (builder/git, builder/registry, builder/model,
// builder/python);
// they import builder/drv, never builder. Each kind is wired in at four marked sites,
// kind by kind, each a few lines:
//
//  1. Resolve (resolve.go, function Resolve): after the git sources are pinned, a kind fills
//     its part of the lock. Models: lock.Models (checksums). Python: lock.Python, reading
//     ComfyUI's and every node's requirements.txt straight from the bare mirrors with
//     opts.Git.ReadFile(ctx, repo, commit, "requirements.txt") (git.Mirrors.ReadFile: no
//     export needed; a missing file wraps os.ErrNotExist), and a registry node's from its
//     cached archive (python.LockOptions.ReadNode). The previous lock is `old` (may
//     be nil), for reusing unchanged entries; opts.Updating(name) says whether the user
//     asked to re-resolve an entry.
//  2. Plan (plan.go, function NewPlan): a kind creates its derivations (drv.Derivation with
//     Fixed set for models: store.FixedFingerprint, or input-addressed for python/venv),
//     adds each with p.add(d) (which seals it and keeps the graph deduplicated), and puts
//     them into the root with root.Link(relPath, d):
//     root.Link("models/"+target, modelDrv) and root.Link("venv", venvDrv), and fills
//     root.Manifest (Models, Venv). Links are relative symlinks in the root object.
//  3. Builders (build.go, function builders): a kind registers its drv.Builder under its
//     drv.Kind; wrap with drv.Limit(b, n) for a separate download limit. The options the
//     kind needs (tokens, URLs) come in BuildOptions fields that cmd fills.
//  4. Substitution (CACHE; realise.go, RealiseOptions.Substitute): called for each invalid
//     object before building it; returning true means the object is now valid in the store.
//
// Errors name the node and its spec position (drv.Derivation.Where). A failed build lists
// every failed node's cause (*BuildError); nothing half-built is registered: objects are
// registered by store.Add only after their builder returned nil.
package builder
