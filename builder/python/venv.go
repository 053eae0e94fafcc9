package python

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"github.com/runpod-comfy/runpod-comfy/internal/filehash"
	"github.com/runpod-comfy/runpod-comfy/internal/rawfile"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// SourceDateEpoch is SOURCE_DATE_EPOCH during venv builds: 1980-01-01, the earliest date a
// zip can hold (the store's mtime 1 cannot be).
const SourceDateEpoch = "315532800"

// VenvOptions are the inputs of one venv build.
type VenvOptions struct {
	// Interpreter is the base interpreter the venv is made with.
	Interpreter specs.PythonIdentity
	// SystemSitePackages makes the venv see the interpreter's own site-packages.
	SystemSitePackages bool
	// Packages are the package objects (BuildPackage) whose files the venv holds, in the
	// lock's order: where two install the same path with other bytes, the later one wins, as
	// with pip.
	Packages []string
	// Env is added to the minimal environment of the child processes.
	Env []string
	// Link makes a hard link; nil means os.Link. Where it fails because the filesystem will
	// not link (EXDEV, EPERM, EMLINK, ENOTSUP), files are copied instead and Notice says so
	// once.
	Link func(oldname, newname string) error
	// Notice receives the venv build's notices (links impossible, conflicting files); may be nil.
	Notice func(msg string)
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

// Install makes the venv at out (which must not exist; out is the venv's final path): the
// interpreter layer (`python -m venv --without-pip`, made relocatable) and the files of every
// package object, hard-linked (copied where links are impossible). No pip runs. The venv's own
// files must not hold out.
func Install(ctx context.Context, out string, opts VenvOptions) error {
	py := opts.Interpreter.Path
	if py == "" {
		return errors.New("building the venv: the lock names no interpreter")
	}
	if !filepath.IsAbs(out) {
		return fmt.Errorf("building the venv: %s is not an absolute path", out)
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
	if err := checkVenvVersion(out, opts.Interpreter); err != nil {
		return err
	}
	if err := Relocate(out); err != nil {
		return err
	}
	if err := checkNoSelfPath(out); err != nil {
		return err
	}
	return linkPackages(ctx, out, opts)
}

// checkVenvVersion compares the interpreter version pyvenv.cfg records (`version` up to 3.11,
// `version_info` from 3.12) with the locked one: a *StaleError when the interpreter at the
// locked path is another Python now.
func checkVenvVersion(out string, want specs.PythonIdentity) error {
	data, err := os.ReadFile(filepath.Join(out, "pyvenv.cfg"))
	if err != nil {
		return fmt.Errorf("building the venv: %w", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(l, "=")
		if k = strings.TrimSpace(k); !ok || (k != "version" && k != "version_info") {
			continue
		}
		v = strings.TrimSpace(v)
		if v != want.Version && !strings.HasPrefix(v, want.Version+".") {
			got := want
			got.Version = v
			return &StaleError{Want: want, Got: got}
		}
		return nil
	}
	return fmt.Errorf("building the venv: pyvenv.cfg names no version")
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

// linkUnsupported reports errors meaning "this filesystem will not hard-link here".
func linkUnsupported(err error) bool {
	return errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EPERM) ||
		errors.Is(err, syscall.EMLINK) || errors.Is(err, syscall.EOPNOTSUPP)
}

// linkPackages puts every file of the package objects into the venv at out, at the same
// relative path: a hard link to the package's file (the store keeps it, see
// store.AddOptions.LinksFromReferences), or a copy where the filesystem refuses links. A
// package file may not replace one of the venv's own files (pyvenv.cfg, bin/python, ...).
func linkPackages(ctx context.Context, out string, opts VenvOptions) error {
	own := map[string]bool{}
	err := filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(out, p)
			own[filepath.ToSlash(rel)] = true
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("building the venv: %w", err)
	}
	link := opts.Link
	if link == nil {
		link = os.Link
	}
	copying := false
	from := map[string]string{} // venv path -> package object that put it there
	for _, pkg := range opts.Packages {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := filepath.Base(pkg)
		err := filepath.WalkDir(pkg, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(pkg, p)
			if rel == "." {
				return nil
			}
			if rel == packageInfoFile {
				return nil
			}
			dst := filepath.Join(out, rel)
			slash := filepath.ToSlash(rel)
			switch {
			case d.IsDir():
				if err := os.Mkdir(dst, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
					return err
				}
				if fi, err := os.Lstat(dst); err != nil || !fi.IsDir() {
					return fmt.Errorf("package %s: %s is a folder, and a file in the venv", name, slash)
				}
				return nil
			case !d.Type().IsRegular():
				return fmt.Errorf("package %s: %s is not a regular file", name, slash)
			}
			if own[slash] {
				return fmt.Errorf("package %s: %s would replace one of the venv's own files", name, slash)
			}
			if prev, ok := from[slash]; ok {
				if same, err := sameContent(p, dst); err != nil {
					return err
				} else if same {
					return nil
				}
				if opts.Notice != nil {
					opts.Notice(fmt.Sprintf("%s: %s replaces the file of %s (other bytes), as pip would", slash, name, prev))
				}
				if err := os.Remove(dst); err != nil {
					return err
				}
			}
			from[slash] = name
			if !copying {
				err := link(p, dst)
				if err == nil {
					return nil
				}
				if !linkUnsupported(err) {
					return err
				}
				copying = true
				if opts.Notice != nil {
					opts.Notice(fmt.Sprintf("hard links cannot be made here (%v): copying the packages' files into the venv instead (the venv then takes as much space as its packages)", err))
				}
			}
			return copyMode(p, dst)
		})
		if err != nil {
			return fmt.Errorf("building the venv: %w", err)
		}
	}
	return nil
}

// sameContent reports whether two files hold the same bytes (or are one file).
func sameContent(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	if os.SameFile(fa, fb) {
		return true, nil
	}
	// The exec bit only: a copy (where links fail) is writable until the store canonicalises it.
	if fa.Size() != fb.Size() || fa.Mode()&0o111 != fb.Mode()&0o111 {
		return false, nil
	}
	ha, err := filehash.SHA256(a)
	if err != nil {
		return false, err
	}
	hb, err := filehash.SHA256(b)
	return ha == hb, err
}

// copyMode copies the file src to the new file dst with src's permission bits.
func copyMode(src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	return rawfile.CopyFile(dst, src, uint32(fi.Mode().Perm()|0o200))
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

// Relocate makes the interpreter layer of the venv at out free of its own absolute path:
// pyvenv.cfg loses its command line, bin/activate computes its own location (the csh, fish
// and PowerShell variants are removed).
func Relocate(out string) error {
	if err := fixPyvenvCfg(out); err != nil {
		return err
	}
	bin := filepath.Join(out, "bin")
	for _, n := range []string{"activate.csh", "activate.fish", "Activate.ps1"} {
		if err := os.Remove(filepath.Join(bin, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("relocating the venv: %w", err)
		}
	}
	return fixActivate(out)
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
