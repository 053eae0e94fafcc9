package python

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/internal/filehash"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// PackageOptions are the inputs of one package object: a locked file installed into a prefix.
type PackageOptions struct {
	// Pin is the locked file (a wheel, or an sdist built into a wheel first).
	Pin specs.PackageLock
	// Interpreter compiles the bytecode (and, for an sdist, runs pip wheel).
	Interpreter specs.PythonIdentity
	// Fetch says where the locked file comes from.
	Fetch FetchOptions
	// Env is added to the minimal environment of the child processes.
	Env []string
}

// PackageInfo is the package object's wheel.json: the wheel that was installed.
type PackageInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Wheel is the installed wheel's file name and sha256: the locked file, or for an sdist
	// the wheel built from it.
	Wheel specs.BuiltWheel `json:"wheel"`
	// Sdist is the locked source archive's file name when the wheel was built from one.
	Sdist string `json:"sdist,omitempty"`
}

// ReadPackageInfo reads the wheel.json of a package object at dir.
func ReadPackageInfo(dir string) (*PackageInfo, error) {
	data, err := os.ReadFile(filepath.Join(dir, packageInfoFile))
	if err != nil {
		return nil, err
	}
	var pi PackageInfo
	if err := json.Unmarshal(data, &pi); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, packageInfoFile), err)
	}
	return &pi, nil
}

// isWheel reports whether a locked file name is a wheel (else an sdist).
func isWheel(filename string) bool { return strings.HasSuffix(filename, ".whl") }

// BuildPackage makes the package object of one locked file at out: the wheel (for an sdist,
// the wheel pip builds from it, or the one the lock records) installed by InstallWheel into
// out as a venv prefix, its bytecode compiled by the interpreter in one process in a fixed
// order (unchecked-hash pycs recording prefix-relative source paths, so the bytes do not
// depend on where the package or any venv lives), its RECORD, and wheel.json. No pip runs for
// a wheel.
func BuildPackage(ctx context.Context, out string, opts PackageOptions) error {
	pin := opts.Pin
	info := &PackageInfo{Name: pin.Name, Version: pin.Version, Wheel: specs.BuiltWheel{Filename: pin.Filename, SHA256: pin.SHA256}}
	tmp, err := os.MkdirTemp("", "runpod-comfy-pkg-")
	if err != nil {
		return fmt.Errorf("installing %s %s: %w", pin.Name, pin.Version, err)
	}
	defer os.RemoveAll(tmp)
	env := append(childEnv(tmp, opts.Env), "SOURCE_DATE_EPOCH="+SourceDateEpoch, "PYTHONHASHSEED=0")
	var wheel string
	if isWheel(pin.Filename) {
		files, err := Fetch(ctx, []specs.PackageLock{pin}, opts.Fetch)
		if err != nil {
			return err
		}
		wheel = files[pin.SHA256]
	} else {
		bw, path, err := sdistWheel(ctx, tmp, env, opts)
		if err != nil {
			return err
		}
		info.Sdist, info.Wheel, wheel = pin.Filename, *bw, path
	}
	iw, err := InstallWheel(wheel, out, WheelOptions{Name: pin.Name, PyVersion: pyVersionOf(opts.Interpreter.Version)})
	if err != nil {
		return err
	}
	pycs, err := compileSources(ctx, tmp, env, opts.Interpreter, out, iw.Sources)
	if err != nil {
		return fmt.Errorf("installing %s %s: %w", pin.Name, pin.Version, err)
	}
	if err := iw.Finish(pycs); err != nil {
		return err
	}
	js, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, packageInfoFile), append(js, '\n'), 0o444)
}

// compileScript compiles the prefix-relative files read from stdin (NUL-separated, in that
// order) to unchecked-hash pycs recording the prefix-relative path, and prints the pycs made
// (NUL-separated) after the interpreter's version. A file that does not compile gets no pyc,
// as with pip.
const compileScript = `
import importlib.util, os, py_compile, sys
prefix = sys.argv[1]
made = []
for rel in sys.stdin.read().split("\0"):
    if not rel:
        continue
    src = os.path.join(prefix, rel)
    cfile = importlib.util.cache_from_source(src)
    try:
        py_compile.compile(src, cfile=cfile, dfile=rel, doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except (py_compile.PyCompileError, SyntaxError, ValueError, UnicodeError):
        continue
    made.append(os.path.relpath(cfile, prefix))
sys.stdout.write(sys.version.split()[0] + "\0" + "\0".join(made))
`

// compileSources compiles the sources of one package in one interpreter process, in sorted
// order, and returns the prefix-relative pycs made. The interpreter must still be the locked
// version (pycs are per version).
func compileSources(ctx context.Context, tmp string, env []string, in specs.PythonIdentity, prefix string, sources []string) ([]string, error) {
	if len(sources) == 0 {
		return nil, nil
	}
	srcs := append([]string(nil), sources...)
	sort.Strings(srcs)
	cmd := exec.CommandContext(ctx, in.Path, "-s", "-c", compileScript, prefix)
	cmd.Dir, cmd.Env = tmp, env
	cmd.Stdin = strings.NewReader(strings.Join(srcs, "\x00"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("compiling bytecode with %s: %w: %s", in.Path, err, strings.TrimSpace(stderr.String()))
	}
	parts := strings.Split(stdout.String(), "\x00")
	if parts[0] != in.Version {
		return nil, &StaleError{Want: in, Got: specs.PythonIdentity{Version: parts[0], Path: in.Path, Implementation: in.Implementation, ABI: in.ABI, Platform: in.Platform}}
	}
	var pycs []string
	for _, p := range parts[1:] {
		if p != "" {
			pycs = append(pycs, filepath.ToSlash(p))
		}
	}
	return pycs, nil
}

// sdistWheel returns the wheel of a locked sdist: the one the lock records when the wheel
// cache (or a find_links folder) has it, else one pip builds now (pip wheel --no-deps
// --no-index, SOURCE_DATE_EPOCH set), put into the wheel cache. A build that gives other bytes
// than the lock records fails.
func sdistWheel(ctx context.Context, tmp string, env []string, opts PackageOptions) (*specs.BuiltWheel, string, error) {
	pin := opts.Pin
	if w := pin.Wheel; w != nil {
		wl := specs.PackageLock{Name: pin.Name, Version: pin.Version, Filename: w.Filename, SHA256: w.SHA256}
		if !sha256Re.MatchString(w.SHA256) || w.Filename == "" || strings.ContainsAny(w.Filename, "/\\") || !isWheel(w.Filename) {
			return nil, "", fmt.Errorf("lock entry %s %s: bad built wheel %q", pin.Name, pin.Version, w.Filename)
		}
		cp := CachePath(opts.Fetch.CacheDir, wl)
		if _, err := os.Stat(cp); err == nil {
			return w, cp, nil
		}
		if src := localSource(wl, opts.Fetch.FindLinks); src != "" {
			if sum, err := filehash.SHA256Hex(src); err == nil && sum == w.SHA256 {
				return w, src, nil
			}
		}
	}
	files, err := Fetch(ctx, []specs.PackageLock{pin}, opts.Fetch)
	if err != nil {
		return nil, "", err
	}
	sdist := files[pin.SHA256]
	if err := checkPip(&Interpreter{PythonIdentity: opts.Interpreter, Pip: pipOf(ctx, opts.Interpreter.Path, env)}); err != nil {
		return nil, "", fmt.Errorf("building a wheel of %s: %w", pin.Filename, err)
	}
	dir := filepath.Join(tmp, "wheel")
	args := []string{"-s", "-m", "pip", "wheel", "--no-deps", "--no-index", "--no-cache-dir",
		"--disable-pip-version-check", "--progress-bar", "off", "--wheel-dir", dir}
	for _, fl := range opts.Fetch.FindLinks {
		if !isRemote(fl) {
			args = append(args, "--find-links", fl)
		}
	}
	cmd := exec.CommandContext(ctx, opts.Interpreter.Path, append(args, sdist)...)
	cmd.Dir, cmd.Env = tmp, env
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		return nil, "", &InstallError{Package: fmt.Sprintf("%s %s (%s)", pin.Name, pin.Version, pin.Filename), Output: "pip wheel failed: " + lastLines(outb.String(), 20)}
	}
	built, _ := filepath.Glob(filepath.Join(dir, "*.whl"))
	if len(built) != 1 {
		return nil, "", fmt.Errorf("building a wheel of %s: pip made %d wheels", pin.Filename, len(built))
	}
	sum, err := filehash.SHA256Hex(built[0])
	if err != nil {
		return nil, "", err
	}
	bw := &specs.BuiltWheel{Filename: filepath.Base(built[0]), SHA256: sum}
	if w := pin.Wheel; w != nil && *w != *bw {
		return nil, "", fmt.Errorf("the sdist %s built into %s (sha256 %s) but the lock records %s (sha256 %s): the build is not reproducible here; put the recorded wheel into a python.find_links folder, or resolve the version again", pin.Filename, bw.Filename, bw.SHA256, w.Filename, w.SHA256)
	}
	cp := CachePath(opts.Fetch.CacheDir, specs.PackageLock{Filename: bw.Filename, SHA256: bw.SHA256})
	if err := os.MkdirAll(filepath.Dir(cp), 0o755); err != nil {
		return nil, "", err
	}
	if err := copyFile(built[0], cp); err != nil {
		return nil, "", fmt.Errorf("caching the wheel of %s: %w", pin.Filename, err)
	}
	return bw, cp, nil
}

// pipOf returns "pip X.Y" of an interpreter, or "" when it has none.
func pipOf(ctx context.Context, py string, env []string) string {
	cmd := exec.CommandContext(ctx, py, "-s", "-c", "import pip; print(pip.__version__)")
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return "pip " + strings.TrimSpace(string(out))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// copyFile copies src to dst atomically (a temporary file beside dst, then rename).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".part-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
