package python

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// Interpreter is a probed Python interpreter: its identity (what the python derivation is made
// of), the pip it carries and the distributions its own site-packages hold.
type Interpreter struct {
	specs.PythonIdentity
	// Pip is "pip <version>" of the interpreter's pip, empty when it has none.
	Pip string
	// SitePackages lists the distributions importable from the interpreter's own sys.path
	// (user site excluded), sorted by normalised name.
	SitePackages []specs.Distribution
}

// FindOptions say how to choose the interpreter.
type FindOptions struct {
	// Version is the spec's python.version ("3.11"): the interpreter is python3.11 on PATH.
	Version string
	// ComfyPython is the spec's env.COMFY_PYTHON, used when Version is empty: a path or a
	// command name.
	ComfyPython string
	// PathList is the PATH to search (os.PathListSeparator-separated). Empty means
	// /usr/local/bin:/usr/bin:/bin.
	PathList string
	// Env is the environment the probe runs with (pyenv shims need theirs); the probe itself
	// ignores PYTHON* variables.
	Env []string
}

// FindInterpreter chooses the interpreter as the spec says (python.version, else
// env.COMFY_PYTHON, else python3) and probes it.
func FindInterpreter(ctx context.Context, opts FindOptions) (*Interpreter, error) {
	var cmd, why string
	switch {
	case opts.Version != "":
		if err := specs.CheckPythonVersion(opts.Version); err != nil {
			return nil, fmt.Errorf("python.version %w", err)
		}
		parts := strings.Split(opts.Version, ".")
		cmd, why = "python"+parts[0]+"."+parts[1], "python.version "+opts.Version
	case opts.ComfyPython != "":
		cmd, why = opts.ComfyPython, "env.COMFY_PYTHON"
	default:
		cmd, why = "python3", "default"
	}
	exe, err := lookPath(cmd, opts.PathList)
	if err != nil {
		return nil, fmt.Errorf("finding the interpreter (%s): %w", why, err)
	}
	in, err := Probe(ctx, exe, opts.Env)
	if err != nil {
		return nil, fmt.Errorf("probing the interpreter (%s): %w", why, err)
	}
	if opts.Version != "" && in.Version != opts.Version && !strings.HasPrefix(in.Version, opts.Version+".") {
		return nil, fmt.Errorf("python.version %s: %s is Python %s", opts.Version, exe, in.Version)
	}
	return in, nil
}

func lookPath(cmd, pathList string) (string, error) {
	if strings.Contains(cmd, "/") {
		if st, err := os.Stat(cmd); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s is not an executable file", cmd)
		}
		return filepath.Abs(cmd)
	}
	if pathList == "" {
		pathList = "/usr/local/bin:/usr/bin:/bin"
	}
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, cmd)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("no %s on PATH", cmd)
}

// probeScript prints the interpreter's identity as JSON. The first compatible tag comes from
// pip's vendored packaging when pip is there (it knows the manylinux glibc level), else from
// sysconfig.
const probeScript = `
import json, platform, re, sys, sysconfig
impl = sys.implementation.name
abi = plat = pipv = ""
try:
    import pip
    pipv = pip.__version__
    from pip._vendor.packaging import tags
    t = next(iter(tags.sys_tags()))
    abi, plat = t.abi, t.platform
except Exception:
    pass
if not abi:
    abi = ("cp%d%d%s" % (sys.version_info[0], sys.version_info[1], getattr(sys, "abiflags", ""))) if impl == "cpython" else impl
if not plat:
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
dists = {}
try:
    import importlib.metadata as md
    for d in md.distributions():
        name = d.metadata["Name"]
        if name:
            name = re.sub(r"[-_.]+", "-", name).lower()
            if name not in dists:
                dists[name] = d.version
except Exception:
    pass
print(json.dumps({
    "version": platform.python_version(),
    "implementation": impl,
    "abi": abi,
    "platform": plat,
    "executable": getattr(sys, "_base_executable", "") or sys.executable,
    "pip": pipv,
    "dists": dists,
}))
`

// Probe runs exe once and reads its identity. The identity's Path is the resolved path of the
// base interpreter (a venv's python resolves to the interpreter it was made from).
func Probe(ctx context.Context, exe string, env []string) (*Interpreter, error) {
	c := exec.CommandContext(ctx, exe, "-s", "-E", "-c", probeScript)
	c.Env = env
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("running %s: %w: %s", exe, err, strings.TrimSpace(stderr.String()))
	}
	var out struct {
		Version, Implementation, ABI, Platform, Executable, Pip string
		Dists                                                   map[string]string
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("reading the identity of %s: %w", exe, err)
	}
	real, err := filepath.EvalSymlinks(out.Executable)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", out.Executable, err)
	}
	in := &Interpreter{PythonIdentity: specs.PythonIdentity{
		Version:        out.Version,
		Implementation: out.Implementation,
		ABI:            out.ABI,
		Platform:       out.Platform,
		Path:           real,
	}}
	if out.Pip != "" {
		in.Pip = "pip " + out.Pip
	}
	for name, v := range out.Dists {
		in.SitePackages = append(in.SitePackages, specs.Distribution{Name: Normalize(name), Version: v})
	}
	sort.Slice(in.SitePackages, func(i, j int) bool { return in.SitePackages[i].Name < in.SitePackages[j].Name })
	return in, nil
}

// Normalize is the PEP 503 normalised form of a project name: lower case, runs of "-", "_"
// and "." as one "-".
func Normalize(name string) string {
	return strings.ToLower(nameSeps.ReplaceAllString(strings.TrimSpace(name), "-"))
}

var nameSeps = regexp.MustCompile(`[-_.]+`)
