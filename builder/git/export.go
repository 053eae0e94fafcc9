package git

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// ExportOptions configure Export.
type ExportOptions struct {
	// Submodules exports submodules (recursively) at the commits the parent pins; without it
	// they are empty directories.
	Submodules bool
	// Status, when set, is told what Export is doing (for a progress line).
	Status func(string)
}

// Export writes the tree of commit of remote u into dir (which must not exist), without .git,
// fetching into the mirror only when the commit is missing. Regular files are created
// read-only, mode 0444 (0555 when executable), as the store keeps them; directories are 0755.
func (m *Mirrors) Export(ctx context.Context, u, commit, dir string, opts ExportOptions) error {
	return m.export(ctx, u, commit, dir, opts, 0)
}

func (m *Mirrors) export(ctx context.Context, u, commit, dir string, opts ExportOptions, depth int) error {
	if depth > 8 {
		return &Error{Op: "exporting", URL: CleanURL(u), Ref: commit, Err: errors.New("submodules nested more than 8 deep")}
	}
	c, subs, err := m.exportTree(ctx, u, commit, dir, opts)
	if err != nil && ctx.Err() == nil {
		// An object the commit needs is missing or unreadable when the mirror is damaged (a
		// fetch cut short by a full disk or a kill): discard it, fetch and export again, once.
		repaired, rerr := m.repairIfBroken(u, err)
		if rerr != nil {
			return rerr
		}
		if repaired {
			if rerr := os.RemoveAll(dir); rerr != nil {
				return fmt.Errorf("exporting %s: %w", CleanURL(u), rerr)
			}
			c, subs, err = m.exportTree(ctx, u, commit, dir, opts)
		}
	}
	if err != nil {
		return err
	}
	if !opts.Submodules || len(subs) == 0 {
		return nil
	}
	urls, err := submoduleURLs(c, u)
	if err != nil {
		return &Error{Op: "exporting", URL: CleanURL(u), Ref: commit, Err: err}
	}
	for _, s := range subs {
		su, ok := urls[s.path]
		if !ok {
			return &Error{Op: "exporting", URL: CleanURL(u), Ref: commit, Err: fmt.Errorf("submodule %s has no url in .gitmodules", s.path)}
		}
		if err := CheckSubmoduleURL(u, su); err != nil {
			return &Error{Op: "exporting", URL: CleanURL(u), Ref: commit, Err: fmt.Errorf("submodule %s: %w", s.path, err)}
		}
		target := filepath.Join(dir, filepath.FromSlash(s.path))
		if err := os.Remove(target); err != nil {
			return fmt.Errorf("exporting submodule %s: %w", s.path, err)
		}
		if err := m.export(ctx, su, s.commit, target, opts, depth+1); err != nil {
			return fmt.Errorf("submodule %s: %w", s.path, err)
		}
	}
	return nil
}

// exportTree fetches commit of u when the mirror lacks it and writes its tree into dir,
// returning the commit and its submodule entries. A missing object gives an error wrapping
// ErrMirrorBroken.
func (m *Mirrors) exportTree(ctx context.Context, u, commit, dir string, opts ExportOptions) (*object.Commit, []submodule, error) {
	if opts.Status != nil {
		opts.Status("fetching " + CleanURL(u))
	}
	repo, err := m.Ensure(ctx, u, commit)
	if err != nil {
		return nil, nil, err
	}
	if opts.Status != nil {
		opts.Status("exporting " + shortCommit(commit))
	}
	fail := func(err error) (*object.Commit, []submodule, error) {
		if errors.Is(err, plumbing.ErrObjectNotFound) && !errors.Is(err, ErrMirrorBroken) {
			err = fmt.Errorf("%w: %w", ErrMirrorBroken, err)
		}
		return nil, nil, &Error{Op: "exporting", URL: CleanURL(u), Ref: commit, Err: err}
	}
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return fail(err)
	}
	tree, err := c.Tree()
	if err != nil {
		return fail(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("exporting %s: %w", CleanURL(u), err)
	}
	var subs []submodule
	if m.useCLI() {
		subs, err = writeTreeCLI(ctx, m.Path(u), commit, dir)
	} else {
		err = writeTree(ctx, repo, tree, dir, "", &subs)
	}
	if err != nil {
		return fail(err)
	}
	return c, subs, nil
}

// repairIfBroken decides, after err, whether the mirror of u is broken: err says so
// (ErrMirrorBroken, a missing object) or mirrorProblem finds a damaged file. If it is, it
// discards the mirror (the next fetch makes it anew), says so through Log and reports true.
func (m *Mirrors) repairIfBroken(u string, err error) (bool, error) {
	unlock, lerr := m.lock(u)
	if lerr != nil {
		return false, lerr
	}
	defer unlock()
	why := mirrorProblem(m.Path(u))
	if why == "" && (errors.Is(err, ErrMirrorBroken) || errors.Is(err, plumbing.ErrObjectNotFound)) {
		why = err.Error()
	}
	if why == "" {
		return false, nil
	}
	return true, m.repair(u, why)
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

type submodule struct{ path, commit string }

// writeTree writes tree into dir; rel is the tree's path from the top, for submodules.
func writeTree(ctx context.Context, repo *gogit.Repository, tree *object.Tree, dir, rel string, subs *[]submodule) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, e := range tree.Entries {
		if err := checkName(e.Name); err != nil {
			return fmt.Errorf("%s: %w", path.Join(rel, e.Name), err)
		}
		p := filepath.Join(dir, e.Name)
		switch e.Mode {
		case filemode.Dir:
			sub, err := repo.TreeObject(e.Hash)
			if err != nil {
				return fmt.Errorf("%s: %w", path.Join(rel, e.Name), err)
			}
			if err := os.Mkdir(p, 0o755); err != nil {
				return err
			}
			if err := writeTree(ctx, repo, sub, p, path.Join(rel, e.Name), subs); err != nil {
				return err
			}
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			if err := writeBlob(repo, e.Hash, p, e.Mode == filemode.Executable); err != nil {
				return fmt.Errorf("%s: %w", path.Join(rel, e.Name), err)
			}
		case filemode.Symlink:
			target, err := readBlob(repo, e.Hash)
			if err != nil {
				return fmt.Errorf("%s: %w", path.Join(rel, e.Name), err)
			}
			if err := checkSymlink(path.Join(rel, e.Name), string(target)); err != nil {
				return err
			}
			if err := os.Symlink(string(target), p); err != nil {
				return err
			}
		case filemode.Submodule:
			if err := os.Mkdir(p, 0o755); err != nil {
				return err
			}
			*subs = append(*subs, submodule{path: path.Join(rel, e.Name), commit: e.Hash.String()})
		default:
			return fmt.Errorf("%s: unsupported file mode %v", path.Join(rel, e.Name), e.Mode)
		}
	}
	return nil
}

// ErrSymlinkEscapes is wrapped by the error of a symlink that points outside its tree.
var ErrSymlinkEscapes = errors.New("symlink points outside the tree")

// checkSymlink refuses a symlink at rel (slash-separated, from the top of the tree) whose
// target is absolute or leads out of the tree: a store object must not make ComfyUI read or
// run files outside the store. ".." may only lead the target ("../lib/x.py"), never follow a
// name ("a/../.."), so that the check on the target's text holds whatever the names it passes
// through are (symlinks themselves, each checked the same way, lead only inside).
func checkSymlink(rel, target string) error {
	bad := func(why string) error {
		return fmt.Errorf("%s: %w: -> %q (%s)", rel, ErrSymlinkEscapes, target, why)
	}
	if target == "" {
		return bad("empty target")
	}
	if strings.HasPrefix(target, "/") {
		return bad("an absolute path")
	}
	if strings.ContainsRune(target, 0) {
		return bad("a NUL in the target")
	}
	up, names := 0, 0
	for _, el := range strings.Split(target, "/") {
		switch el {
		case "", ".":
		case "..":
			if names > 0 {
				return bad(`".." after a name`)
			}
			up++
		default:
			names++
		}
	}
	if depth := strings.Count(rel, "/"); up > depth {
		return bad("above the top of the tree")
	}
	return nil
}

// checkName refuses tree entry names that could escape the export directory or plant a
// repository.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("invalid tree entry name %q", name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("invalid tree entry name %q", name)
	case strings.EqualFold(name, ".git"):
		return errors.New("tree contains a .git entry")
	}
	return nil
}

// writeBlob writes blob h to the new file p, read-only as createFile makes it.
func writeBlob(repo *gogit.Repository, h plumbing.Hash, p string, executable bool) error {
	b, err := repo.BlobObject(h)
	if err != nil {
		return err
	}
	r, err := b.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	return createFile(p, executable, r, b.Size, make([]byte, 32<<10))
}

func readBlob(repo *gogit.Repository, h plumbing.Hash) ([]byte, error) {
	b, err := repo.BlobObject(h)
	if err != nil {
		return nil, err
	}
	r, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// submoduleURLs reads .gitmodules at commit c and returns path -> absolute URL, resolving
// relative URLs ("../x.git") against the parent's URL as git does.
func submoduleURLs(c *object.Commit, parent string) (map[string]string, error) {
	f, err := c.File(".gitmodules")
	if err != nil {
		return nil, fmt.Errorf("reading .gitmodules: %w", err)
	}
	s, err := f.Contents()
	if err != nil {
		return nil, fmt.Errorf("reading .gitmodules: %w", err)
	}
	mods := config.NewModules()
	if err := mods.Unmarshal([]byte(s)); err != nil {
		return nil, fmt.Errorf("parsing .gitmodules: %w", err)
	}
	out := map[string]string{}
	for _, sm := range mods.Submodules {
		out[sm.Path] = resolveURL(parent, sm.URL)
	}
	return out, nil
}

// CheckSubmoduleURL reports whether a submodule of the repository at parent may be fetched
// from su (already resolved against parent): su obeys the rules of a spec's git URLs
// (specs.CheckGitURL: no git://, no plain http off loopback, no credentials), and a remote
// parent may not name a local path or file:// URL, nor plain http even on loopback (the
// build machine's own services are not a remote repository's to reach).
func CheckSubmoduleURL(parent, su string) error {
	if err := specs.CheckGitURL(su); err != nil {
		return fmt.Errorf("url refused: %w", err)
	}
	if localPath(parent) != "" {
		return nil
	}
	if localPath(su) != "" {
		return fmt.Errorf("url %q refused: a remote repository may not name a local path as a submodule", CleanURL(su))
	}
	if strings.HasPrefix(strings.ToLower(su), "http://") && !strings.HasPrefix(strings.ToLower(parent), "http://") {
		return fmt.Errorf("url %q refused: plain http from a repository fetched over %s", CleanURL(su), schemeOf(parent))
	}
	return nil
}

func schemeOf(u string) string {
	if i := strings.Index(u, "://"); i > 0 {
		return u[:i]
	}
	return "ssh"
}

// resolveURL resolves a submodule URL relative to its parent's URL.
func resolveURL(parent, rel string) string {
	if !strings.HasPrefix(rel, "./") && !strings.HasPrefix(rel, "../") {
		return rel
	}
	if pu, err := url.Parse(parent); err == nil && pu.Scheme != "" && pu.Host != "" {
		pu.Path = path.Join(pu.Path, rel)
		return pu.String()
	}
	base := strings.TrimPrefix(parent, "file://")
	joined := filepath.Join(base, filepath.FromSlash(rel))
	if strings.HasPrefix(parent, "file://") {
		return "file://" + joined
	}
	return joined
}
