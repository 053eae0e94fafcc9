package python

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// SourceDateEpoch is SOURCE_DATE_EPOCH during venv builds: 1980-01-01, the earliest date a
// zip can hold (the store's mtime 1 cannot be).
const SourceDateEpoch = "315532800"

// VenvOptions are the inputs of one venv build.
type VenvOptions struct {
	// Lock is the lock's python section; its interpreter is the one the venv is made with.
	Lock *specs.PythonLock
	// SystemSitePackages makes the venv see the interpreter's own site-packages.
	SystemSitePackages bool
	// Fetch says where the locked files come from.
	Fetch FetchOptions
	// Env is added to the minimal environment of the child processes.
	Env []string
}

// InstallError is an installer failure: the package being installed and the installer's own
// message.
type InstallError struct {
	Package string
	Output  string
}

func (e *InstallError) Error() string {
	if e.Package == "" {
		return "installing the locked packages: " + e.Output
	}
	return fmt.Sprintf("installing %s: %s", e.Package, e.Output)
}

// Install makes the venv at out (which must not exist; out is the venv's final path): creates
// it with `python -m venv --without-pip`, installs exactly the locked files from the wheel cache
// (pip --no-deps --require-hashes --no-index), then makes it deterministic and relocatable
// (see doc.go).
func Install(ctx context.Context, out string, opts VenvOptions) error {
	lock := opts.Lock
	if lock == nil {
		return errors.New("building the venv: no python lock")
	}
	py := lock.Interpreter.Path
	if py == "" {
		return errors.New("building the venv: the lock names no interpreter")
	}
	if !filepath.IsAbs(out) {
		return fmt.Errorf("building the venv: %s is not an absolute path", out)
	}
	files, err := Fetch(ctx, lock.Packages, opts.Fetch)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "runpod-comfy-venv-")
	if err != nil {
		return fmt.Errorf("building the venv: %w", err)
	}
	defer os.RemoveAll(tmp)
	env := append(childEnv(tmp, opts.Env), "SOURCE_DATE_EPOCH="+SourceDateEpoch, "PYTHONHASHSEED=0")

	args := []string{"-s", "-m", "venv", "--without-pip", "--prompt", "venv"}
	if opts.SystemSitePackages {
		args = append(args, "--system-site-packages")
	}
	if err := run(ctx, tmp, env, py, append(args, out)...); err != nil {
		return fmt.Errorf("creating the venv with %s: %w", py, err)
	}
	if len(lock.Packages) > 0 {
		if err := checkPip(&Interpreter{PythonIdentity: lock.Interpreter, Pip: lock.Installer}); err != nil {
			return fmt.Errorf("installing the locked packages: %w", err)
		}
		if err := installLocked(ctx, out, tmp, env, py, lock.Packages, files, opts.SystemSitePackages); err != nil {
			return err
		}
	}
	return Relocate(ctx, out, env)
}

func run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(outb.String()))
	}
	return nil
}

func installLocked(ctx context.Context, out, tmp string, env []string, py string, pkgs []specs.PackageLock, files map[string]string, systemSite bool) error {
	links := filepath.Join(tmp, "links")
	if err := os.Mkdir(links, 0o755); err != nil {
		return fmt.Errorf("building the venv: %w", err)
	}
	var reqs strings.Builder
	byFile := map[string]specs.PackageLock{}
	for _, p := range pkgs {
		if err := os.Symlink(files[p.SHA256], filepath.Join(links, p.Filename)); err != nil {
			return fmt.Errorf("building the venv: %w", err)
		}
		fmt.Fprintf(&reqs, "%s==%s --hash=sha256:%s\n", p.Name, p.Version, p.SHA256)
		byFile[p.Filename] = p
	}
	reqPath := filepath.Join(tmp, "locked.txt")
	if err := os.WriteFile(reqPath, []byte(reqs.String()), 0o644); err != nil {
		return fmt.Errorf("building the venv: %w", err)
	}
	args := []string{"-s", "-m", "pip", "--python", filepath.Join(out, "bin", "python"),
		"install", "--no-deps", "--require-hashes", "--no-index", "--find-links", links,
		"--no-compile", "--no-cache-dir", "--disable-pip-version-check", "--progress-bar", "off",
		"--no-warn-script-location", "-r", reqPath}
	if systemSite {
		args = append(args, "--ignore-installed")
	}
	cmd := exec.CommandContext(ctx, py, args...)
	cmd.Dir, cmd.Env = tmp, env
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return installError(outb.String(), byFile)
	}
	return nil
}

var processingRe = regexp.MustCompile(`^Processing \S*/([^/\s]+\.(?:whl|tar\.gz|zip))`)

// installError names the package pip was installing when it failed and keeps pip's own error
// lines.
func installError(output string, byFile map[string]specs.PackageLock) error {
	var pkg string
	var errLines []string
	inErr := false
	for _, raw := range strings.Split(output, "\n") {
		line := strings.TrimRight(raw, " \r")
		if m := processingRe.FindStringSubmatch(strings.TrimSpace(line)); m != nil && !inErr {
			if p, ok := byFile[m[1]]; ok {
				pkg = fmt.Sprintf("%s %s (%s)", p.Name, p.Version, p.Filename)
			}
		}
		if strings.HasPrefix(line, "ERROR:") {
			inErr = true
		}
		if inErr && strings.TrimSpace(line) != "" {
			errLines = append(errLines, strings.TrimSpace(line))
		}
	}
	if len(errLines) == 0 {
		lines := strings.Split(strings.TrimSpace(output), "\n")
		if len(lines) > 20 {
			lines = lines[len(lines)-20:]
		}
		errLines = lines
	}
	return &InstallError{Package: pkg, Output: strings.Join(errLines, "\n")}
}

// trampoline starts an entry script with the python beside it, wherever the venv is: the shell
// runs the first lines, Python sees a string literal.
const trampoline = "#!/bin/sh\n'''exec' \"$(dirname -- \"$(realpath -- \"$0\")\")\"/'python' \"$0\" \"$@\"\n' '''\n"

// activateHead replaces the line of bin/activate that names the venv's absolute path.
const activateHead = `if [ -n "${BASH_VERSION:+x}" ] ; then
    _venv_self="${BASH_SOURCE[0]}"
elif [ -n "${ZSH_VERSION:+x}" ] ; then
    _venv_self="${(%):-%x}"
else
    echo "activate: this shell cannot tell where the script is; use bash or zsh, or run the venv's bin/python directly" >&2
    return 1
fi
VIRTUAL_ENV="$(cd "$(dirname -- "$_venv_self")/.." >/dev/null && pwd -P)"
unset _venv_self`

// Relocate makes the venv at out free of its own absolute path and its bytecode deterministic:
// pyvenv.cfg loses its command line, entry scripts become /bin/sh trampolines (and RECORD
// follows), bin/activate computes its own location (the csh, fish and PowerShell variants are
// removed), __pycache__ is rebuilt with unchecked-hash pycs in one process in a fixed order,
// and a file still holding out is an error.
func Relocate(ctx context.Context, out string, env []string) error {
	if err := fixPyvenvCfg(out); err != nil {
		return err
	}
	bin := filepath.Join(out, "bin")
	for _, n := range []string{"activate.csh", "activate.fish", "Activate.ps1"} {
		if err := os.Remove(filepath.Join(bin, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("relocating the venv: %w", err)
		}
	}
	if err := fixActivate(out); err != nil {
		return err
	}
	rewritten, err := fixScripts(out)
	if err != nil {
		return err
	}
	if err := fixRecords(out, rewritten); err != nil {
		return err
	}
	if err := removePycache(out); err != nil {
		return err
	}
	if err := compile(ctx, out, env); err != nil {
		return err
	}
	return checkNoSelfPath(out)
}

func fixPyvenvCfg(out string) error {
	p := filepath.Join(out, "pyvenv.cfg")
	data, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("relocating the venv: %w", err)
	}
	var keep []string
	for _, l := range strings.Split(string(data), "\n") {
		k, _, _ := strings.Cut(l, "=")
		if strings.TrimSpace(k) == "command" {
			continue
		}
		keep = append(keep, l)
	}
	return os.WriteFile(p, []byte(strings.Join(keep, "\n")), 0o644)
}

func fixActivate(out string) error {
	p := filepath.Join(out, "bin", "activate")
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("relocating the venv: %w", err)
	}
	re := regexp.MustCompile(`(?m)^VIRTUAL_ENV=["']?` + regexp.QuoteMeta(out) + `["']?$`)
	if !re.Match(data) {
		// Another Python's activate (3.13 sets it per platform): remove it rather than keep a
		// script naming the build path.
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("relocating the venv: %w", err)
		}
		return nil
	}
	data = re.ReplaceAllLiteral(data, []byte(activateHead))
	return os.WriteFile(p, data, 0o644)
}

// fixScripts rewrites every entry script of bin/ that starts the venv's python by absolute
// path, returning the rewritten file names.
func fixScripts(out string) (map[string][]byte, error) {
	bin := filepath.Join(out, "bin")
	entries, err := os.ReadDir(bin)
	if err != nil {
		return nil, fmt.Errorf("relocating the venv: %w", err)
	}
	done := map[string][]byte{}
	prefix := "#!" + filepath.Join(out, "bin") + "/python"
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(bin, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("relocating the venv: %w", err)
		}
		lines := strings.SplitN(string(data), "\n", 4)
		var body string
		switch {
		case len(lines) >= 2 && strings.HasPrefix(lines[0], prefix):
			body = strings.Join(lines[1:], "\n")
		case len(lines) == 4 && lines[0] == "#!/bin/sh" && strings.HasPrefix(lines[1], "'''exec' ") &&
			strings.Contains(lines[1], out) && lines[2] == "' '''":
			body = lines[3]
		default:
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("relocating the venv: %w", err)
		}
		newData := []byte(trampoline + body)
		if err := os.WriteFile(p, newData, st.Mode().Perm()); err != nil {
			return nil, fmt.Errorf("relocating the venv: %w", err)
		}
		done[p] = newData
	}
	return done, nil
}

// fixRecords updates the RECORD lines of rewritten scripts with their new hash and size.
func fixRecords(out string, rewritten map[string][]byte) error {
	if len(rewritten) == 0 {
		return nil
	}
	records, err := filepath.Glob(filepath.Join(out, "lib", "python*", "site-packages", "*.dist-info", "RECORD"))
	if err != nil {
		return fmt.Errorf("relocating the venv: %w", err)
	}
	for _, rec := range records {
		data, err := os.ReadFile(rec)
		if err != nil {
			return fmt.Errorf("relocating the venv: %w", err)
		}
		site := filepath.Dir(filepath.Dir(rec))
		lines := strings.Split(string(data), "\n")
		changed := false
		for i, l := range lines {
			j := strings.LastIndex(l, ",")
			if j < 0 {
				continue
			}
			k := strings.LastIndex(l[:j], ",")
			if k < 0 {
				continue
			}
			name := l[:k]
			target := filepath.Clean(filepath.Join(site, name))
			newData, ok := rewritten[target]
			if !ok {
				continue
			}
			sum := sha256.Sum256(newData)
			lines[i] = name + ",sha256=" + base64.RawURLEncoding.EncodeToString(sum[:]) + "," + strconv.Itoa(len(newData))
			changed = true
		}
		if changed {
			if err := os.WriteFile(rec, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
				return fmt.Errorf("relocating the venv: %w", err)
			}
		}
	}
	return nil
}

func removePycache(out string) error {
	var dirs []string
	err := filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "__pycache__" {
			dirs = append(dirs, p)
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("relocating the venv: %w", err)
	}
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("relocating the venv: %w", err)
		}
	}
	return nil
}

// compileScript compiles lib/ serially (compile_dir sorts each folder) with hash-based pycs,
// recording paths relative to the venv's store name. Files that do not compile are left without
// a pyc, as pip does.
const compileScript = `
import compileall, py_compile, sys
compileall.compile_dir(sys.argv[1], quiet=2, workers=1, stripdir=sys.argv[2], prependdir=sys.argv[3],
    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
`

func compile(ctx context.Context, out string, env []string) error {
	py := filepath.Join(out, "bin", "python")
	if err := run(ctx, out, env, py, "-s", "-c", compileScript, filepath.Join(out, "lib"), out, filepath.Base(out)); err != nil {
		return fmt.Errorf("compiling bytecode: %w", err)
	}
	return nil
}

// checkNoSelfPath fails when any file of the venv still holds the venv's absolute path.
// Shared libraries and files over 16 MiB are not read: they come from wheels built elsewhere,
// which cannot know the path, and reading them would double the I/O of a torch venv.
func checkNoSelfPath(out string) error {
	needle := []byte(out + "/")
	var bad []string
	err := filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if strings.HasSuffix(d.Name(), ".so") || strings.Contains(d.Name(), ".so.") {
			return nil
		}
		if info, err := d.Info(); err != nil || info.Size() > 16<<20 {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(data, needle) || bytes.HasSuffix(bytes.TrimSpace(data), []byte(out)) {
			rel, _ := filepath.Rel(out, p)
			bad = append(bad, rel)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("checking the venv: %w", err)
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("the venv is not relocatable: these files hold its absolute path %s: %s", out, strings.Join(bad, ", "))
	}
	return nil
}
