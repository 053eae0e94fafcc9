package python

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/builder/drv"
	"github.com/runpod-comfy/runpod-comfy/internal/progress"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// LockOptions are what builder passes to ResolveLock and CheckLock.
type LockOptions struct {
	// Root is ROOT; the wheel cache is CacheDir(Root).
	Root string
	// Environ is the caller's whole environment: PATH (to find python3.X) and what the
	// interpreter probe needs; pip gets only PassEnv(Environ).
	Environ []string
	// Offline resolves from the spec's local find_links only.
	Offline bool
	// Update re-resolves even when the inputs did not change.
	Update bool
	// ReadFile reads a file of a git source at a commit, without exporting it
	// (git.Mirrors.ReadFile); a missing file is an error matching fs.ErrNotExist.
	ReadFile func(ctx context.Context, repo, commit, name string) ([]byte, error)
	// ReadNode, when set, reads a file of a custom node's tree instead of ReadFile: it is how
	// the requirements of a node that is not a git source (a registry node's archive) are read.
	ReadNode func(ctx context.Context, n specs.NodeLock, name string) ([]byte, error)
	// Warn receives warnings (ignored requirement options), each naming its file and line.
	Warn func(string)
	// Progress shows the resolution as a task (may be nil).
	Progress *progress.Display
}

// FindFor chooses the interpreter of spec (python.version, else env.COMFY_PYTHON, else
// python3) with the PATH of environ.
func FindFor(ctx context.Context, spec *specs.Spec, environ []string) (*Interpreter, error) {
	fo := FindOptions{Env: environ, PathList: envValue(environ, "PATH")}
	if spec.Python != nil {
		fo.Version = spec.Python.Version
	}
	if spec.Env != nil {
		fo.ComfyPython = spec.Env["COMFY_PYTHON"]
	}
	return FindInterpreter(ctx, fo)
}

func envValue(environ []string, key string) string {
	v := ""
	for _, kv := range environ {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// Wanted reports whether the version has a venv: it has a python block, or ComfyUI's or
// some node's requirements are installed (whether the files hold anything is known only
// after reading them).
func Wanted(spec *specs.Spec) bool {
	if spec.Python != nil || spec.Comfy.WantsRequirements() {
		return true
	}
	for _, n := range spec.CustomNodes {
		if n.WantsRequirements() {
			return true
		}
	}
	return false
}

// ResolveLock fills the lock's python section for spec, whose git sources lock already pins:
// it reads ComfyUI's requirements.txt (unless comfy.install_requirements is false) and every
// node's (unless its install_requirements is false) from the mirrors, adds python.packages and
// python.constraints and resolves them together. The old lock's section is reused as is when
// nothing it was resolved from changed (same requirement lines, python settings, interpreter
// and site-packages) and no update was asked. It returns nil when the version needs no venv:
// no python block and no requirement at all.
func ResolveLock(ctx context.Context, spec *specs.Spec, lock, old *specs.Lock, opts LockOptions) (*specs.PythonLock, error) {
	if !Wanted(spec) {
		return nil, nil
	}
	if opts.ReadFile == nil {
		return nil, errors.New("resolving Python requirements: no way to read requirements files")
	}
	var srcs []Source
	if spec.Comfy.WantsRequirements() {
		c := lock.Comfy
		srcs = append(srcs, Source{ReadFile: func(ctx context.Context, name string) ([]byte, error) {
			return wrapRead(opts.ReadFile(ctx, c.Repo, c.Commit, name))("", spec.Comfy.Pos, name)
		}})
	}
	for _, n := range lock.CustomNodes {
		if !n.InstallRequirements {
			continue
		}
		n := n
		var pos specs.Pos
		for _, sn := range spec.CustomNodes {
			if sn.Name == n.Name {
				pos = sn.Pos
			}
		}
		srcs = append(srcs, Source{Node: n.Name, ReadFile: func(ctx context.Context, name string) ([]byte, error) {
			if opts.ReadNode != nil {
				return wrapRead(opts.ReadNode(ctx, n, name))(n.Name, pos, name)
			}
			return wrapRead(opts.ReadFile(ctx, n.Repo, n.Commit, name))(n.Name, pos, name)
		}})
	}
	reqs, err := Gather(ctx, srcs, spec.Python)
	if err != nil {
		return nil, err
	}
	if opts.Warn != nil {
		for _, w := range reqs.Warnings {
			opts.Warn(w)
		}
	}
	if spec.Python == nil && len(reqs.Requires) == 0 {
		return nil, nil
	}
	in, err := FindFor(ctx, spec, opts.Environ)
	if err != nil {
		return nil, err
	}
	py := spec.Python
	if py == nil {
		py = &specs.Python{}
	}
	hash := inputsHash(in, py, reqs)
	if old != nil && old.Python != nil && old.Python.InputsHash == hash && !opts.Update &&
		old.Python.Interpreter == in.PythonIdentity {
		return old.Python, nil
	}
	findLinks := make([]string, 0, len(py.FindLinks))
	for _, f := range py.FindLinks {
		if !isRemote(f) && !strings.HasPrefix(f, "file:") && !filepath.IsAbs(f) {
			return nil, errors.New("python.find_links " + f + ": a local folder must be an absolute path")
		}
		findLinks = append(findLinks, f)
	}
	task := opts.Progress.Start("resolve python")
	task.Status(fmt.Sprintf("pip: %d requirements with %s", len(reqs.Requires), in.Pip))
	pl, err := Resolve(ctx, ResolveOptions{
		Interpreter:        in,
		Requirements:       reqs,
		IndexURL:           py.IndexURL,
		ExtraIndexURLs:     py.ExtraIndexURLs,
		FindLinks:          findLinks,
		SystemSitePackages: py.SystemSitePackages,
		Offline:            opts.Offline || spec.Options.Offline,
		CacheDir:           CacheDir(opts.Root),
		Env:                PassEnv(opts.Environ),
	})
	if err != nil {
		task.Done("", errors.New("see below"))
		return nil, err
	}
	task.Done(fmt.Sprintf("%d packages pinned", len(pl.Packages)), nil)
	pl.InputsHash = hash
	return pl, nil
}

// wrapRead turns a read error other than absence into a *SourceError.
func wrapRead(data []byte, err error) func(node string, pos specs.Pos, name string) ([]byte, error) {
	return func(node string, pos specs.Pos, name string) ([]byte, error) {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, &SourceError{Node: node, Pos: pos, File: name, Err: err}
		}
		return data, err
	}
}

// inputsHash is the sha256 of everything a resolution reads, credentials removed.
func inputsHash(in *Interpreter, py *specs.Python, reqs *Requirements) string {
	type req struct{ Text, Origin string }
	v := struct {
		Interpreter        specs.PythonIdentity
		Installer          string
		SitePackages       []specs.Distribution `json:",omitempty"`
		IndexURL           string
		ExtraIndexURLs     []string
		FindLinks          []string
		SystemSitePackages bool
		Requires           []req
		Constraints        []req
		FileIndexURLs      []string
		FileFindLinks      []string
	}{Interpreter: in.PythonIdentity, Installer: in.Pip, IndexURL: redactURL(py.IndexURL),
		FindLinks: py.FindLinks, SystemSitePackages: py.SystemSitePackages, FileFindLinks: reqs.FindLinks}
	if py.SystemSitePackages {
		v.SitePackages = in.SitePackages
	}
	for _, u := range py.ExtraIndexURLs {
		v.ExtraIndexURLs = append(v.ExtraIndexURLs, redactURL(u))
	}
	for _, u := range reqs.ExtraIndexURLs {
		v.FileIndexURLs = append(v.FileIndexURLs, redactURL(u))
	}
	for _, r := range reqs.Requires {
		v.Requires = append(v.Requires, req{r.Text, r.Origin.String()})
	}
	for _, r := range reqs.Constraints {
		v.Constraints = append(v.Constraints, req{r.Text, r.Origin.String()})
	}
	js, _ := json.Marshal(v)
	sum := sha256.Sum256(js)
	return hex.EncodeToString(sum[:])
}

// CheckLock reports whether the lock's interpreter still has the identity the lock records
// (and, with system_site_packages, the same site-packages): a *StaleError when not, so that
// the lock is resolved again instead of building (or keeping) a venv made for another
// interpreter. It probes the locked interpreter path itself, so it does not depend on PATH.
func CheckLock(ctx context.Context, spec *specs.Spec, pl *specs.PythonLock, environ []string) error {
	if pl == nil {
		return nil
	}
	var site []specs.Distribution
	if spec.Python != nil && spec.Python.SystemSitePackages {
		site = pl.SystemSitePackages
		if site == nil {
			site = []specs.Distribution{}
		}
	}
	return CheckInterpreter(ctx, pl.Interpreter, installerIf(pl.Installer, hasSdist(pl.Packages)), site, environ)
}

// PlanVenv returns the sealed-to-be python, package and venv derivations of a lock's python
// section for builder.NewPlan (all nil when the lock has none).
func PlanVenv(spec *specs.Spec, pl *specs.PythonLock) (python *drv.Derivation, packages []*drv.Derivation, venv *drv.Derivation) {
	if pl == nil {
		return nil, nil, nil
	}
	sys := spec.Python != nil && spec.Python.SystemSitePackages
	python, packages, venv = Derivations(pl, sys)
	if spec.Python != nil {
		python.Pos, venv.Pos = spec.Python.Pos, spec.Python.Pos
		for _, p := range packages {
			p.Pos = spec.Python.Pos
		}
	}
	return python, packages, venv
}

// hasSdist reports whether any locked file is a source archive (built with the interpreter's
// pip, so a changed pip means a changed build).
func hasSdist(pkgs []specs.PackageLock) bool {
	for _, p := range pkgs {
		if !isWheel(p.Filename) {
			return true
		}
	}
	return false
}

// NewBuilder returns the builder of the python and venv kinds for a version: the wheel cache
// of root, the spec's find_links and index URLs (their credentials are used for downloads
// from the same hosts), offline when asked or when the spec's options.offline is set.
func NewBuilder(root string, spec *specs.Spec, offline bool, environ []string) *Builder {
	fo := FetchOptions{CacheDir: CacheDir(root), Offline: offline || spec.Options.Offline}
	if py := spec.Python; py != nil {
		fo.FindLinks = py.FindLinks
		if py.IndexURL != "" {
			fo.IndexURLs = append(fo.IndexURLs, py.IndexURL)
		}
		fo.IndexURLs = append(fo.IndexURLs, py.ExtraIndexURLs...)
	}
	return &Builder{Fetch: fo, Environ: environ, Env: PassEnv(environ)}
}
