// Package git fetches git sources into bare mirrors and exports trees from them.
//
// Words:
//
//   - A Mirror is a bare repository under the mirror cache directory
//     (ROOT/cache/runpod-comfy/git/<url-digest>.git), one per remote URL, holding every branch
//     and tag of the remote as fetched so far. Commits once fetched stay in it, so a build of
//     a locked commit needs no network when the mirror already has it.
//   - Export writes the tree of one commit into a directory without .git: raw blob bytes (no
//     line-ending conversion, no filters, no export-subst), symlinks kept as symlinks,
//     executable bits kept, submodules recursively exported at the commit the parent pins
//     when asked, else left as empty directories (as git does).
//   - A Ref is what a spec names instead of a commit: a branch, a tag, HEAD or a full ref name.
//
// Fetching uses go-git for https, ssh, file:// and plain paths (go-git's file transport runs
// the system git-upload-pack). Tokens for https are passed in by the caller as Credentials and
// used as basic auth, each only for the hosts it was given for (never for a submodule's or a
// redirect's other host); a token never appears in a URL, an error, a log line or a file.
// Submodule URLs obey the spec's URL rules (specs.CheckGitURL), and a remote repository cannot
// name a local path or file:// URL as a submodule.
package git

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Errors classify git failures; test them with errors.Is.
var (
	ErrUnreachable    = errors.New("remote unreachable")
	ErrNotRepository  = errors.New("not a git repository")
	ErrUnknownRef     = errors.New("unknown ref")
	ErrCommitNotFound = errors.New("commit not found on the remote (force-pushed away or never pushed?)")
	ErrCorrupt        = errors.New("remote repository is corrupt or incomplete")
)

// Error is a failed git operation on one remote.
type Error struct {
	Op  string // "listing refs", "fetching", "exporting", ...
	URL string // without credentials
	Ref string // the ref or commit involved, if any
	Err error
}

func (e *Error) Error() string {
	s := e.Op + " " + e.URL
	if e.Ref != "" {
		s += " at " + e.Ref
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Mirrors manages the bare mirrors under one cache directory.
type Mirrors struct {
	// Dir is the mirror cache, ROOT/cache/runpod-comfy/git.
	Dir string
	// Creds decide which token, if any, goes to an https remote. Never logged or stored.
	Creds Credentials
	// CABundle, when set, holds PEM certificates trusted for https remotes besides the
	// system's (a private git server's CA; tests' loopback servers).
	CABundle []byte
	// Exporter picks how Export reads trees: ExportGitCLI (the default when a git binary is
	// on PATH: `git ls-tree` + `git cat-file --batch`, raw blobs) or ExportGoGit.
	Exporter string
	// Log, when set, is told what a user should know that is not an error: a broken mirror
	// discarded and fetched again.
	Log func(string)

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// Exporters.
const (
	ExportGitCLI = "git"
	ExportGoGit  = "go-git"
)

func (m *Mirrors) useCLI() bool {
	switch m.Exporter {
	case ExportGoGit:
		return false
	case ExportGitCLI:
		return true
	}
	_, err := exec.LookPath("git")
	return err == nil
}

// NewMirrors returns the mirror cache in dir using creds for https remotes.
func NewMirrors(dir string, creds Credentials) *Mirrors {
	return &Mirrors{Dir: dir, Creds: creds}
}

var fullCommit = regexp.MustCompile(`^[0-9a-f]{40}$`)

// IsCommit reports whether s is a full 40-hex commit id.
func IsCommit(s string) bool { return fullCommit.MatchString(s) }

// CleanURL returns u without user info (credentials), for messages, locks and cache keys.
func CleanURL(u string) string {
	if pu, err := url.Parse(u); err == nil && pu.User != nil && pu.Scheme != "" {
		pu.User = nil
		return pu.String()
	}
	return u
}

// Path returns the bare mirror directory of remote u.
func (m *Mirrors) Path(u string) string {
	sum := sha256.Sum256([]byte(CleanURL(u)))
	return filepath.Join(m.Dir, hex.EncodeToString(sum[:16])+".git")
}

func (m *Mirrors) auth(u string) transport.AuthMethod {
	tok := m.Creds.For(u)
	if tok == "" {
		return nil
	}
	return &githttp.BasicAuth{Username: "x-access-token", Password: tok}
}

// localPath returns the directory of a plain-path or file:// remote, or "".
func localPath(u string) string {
	switch {
	case strings.HasPrefix(u, "file://"):
		return strings.TrimPrefix(u, "file://")
	case strings.Contains(u, "://"):
		return ""
	case filepath.IsAbs(u) || strings.HasPrefix(u, "."):
		return u
	}
	return ""
}

// checkLocal gives a clear error for a local remote that is missing or not a repository.
func checkLocal(u string) error {
	p := localPath(u)
	if p == "" {
		return nil
	}
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrNotRepository, p)
	}
	for _, probe := range []string{filepath.Join(p, ".git"), filepath.Join(p, "HEAD")} {
		if _, err := os.Stat(probe); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrNotRepository, p)
}

// classify maps go-git errors onto this package's errors.
func classify(u string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUnreachable), errors.Is(err, ErrNotRepository), errors.Is(err, ErrNoSpace), errors.Is(err, ErrUnknownRef), errors.Is(err, ErrCommitNotFound):
		return err
	case errors.Is(err, transport.ErrRepositoryNotFound):
		if localPath(u) != "" {
			return fmt.Errorf("%w: %v", ErrNotRepository, err)
		}
		return fmt.Errorf("%w: repository not found (or private: set GIT_TOKEN)", ErrUnreachable)
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		return fmt.Errorf("%w: %v (set GIT_TOKEN or GITHUB_TOKEN for private https repositories)", ErrUnreachable, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return fmt.Errorf("%w: the remote repository is empty", ErrUnknownRef)
	case errors.Is(err, plumbing.ErrObjectNotFound) || remoteCorrupt(err.Error()):
		return corruptError(err.Error())
	}
	if localPath(u) != "" && strings.Contains(err.Error(), "not appear to be a git repository") {
		return fmt.Errorf("%w: %s", ErrNotRepository, cleanMessage(err.Error()))
	}
	return fmt.Errorf("%w: %s", ErrUnreachable, cleanMessage(err.Error()))
}

// corruptSigns are what git servers (git-upload-pack, go-git) say when a repository lacks
// objects its refs point at.
var corruptSigns = []string{
	"repository corruption", "missing blob", "missing tree", "missing commit", "bad object",
	"object not found", "did not send all necessary objects", "unable to read", "pack-objects died",
	"invalid index-pack output", "failed to traverse parents", "is corrupt",
}

// corruptError is ErrCorrupt with the remote's message and what to do.
func corruptError(msg string) error {
	return fmt.Errorf("%w: %s: the remote answered but could not send every object the commit needs; "+
		"repair or re-push the repository (git fsck on the server), or point the spec at a sound copy", ErrCorrupt, cleanMessage(msg))
}

// firstCorruptLine returns the first line of git's stderr that tells of corruption (the
// remote's own "unable to read <object>" comes before the generic lines that follow it).
func firstCorruptLine(msg string) string {
	for _, l := range strings.Split(msg, "\n") {
		if remoteCorrupt(l) {
			return strings.TrimSpace(l)
		}
	}
	return lastLine(msg)
}

func remoteCorrupt(msg string) bool {
	msg = strings.ToLower(msg)
	for _, s := range corruptSigns {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// cleanMessage drops the control characters (a NUL ending a sideband packet, escapes) a
// remote's message may carry, and trims it.
func cleanMessage(s string) string {
	return strings.TrimRight(strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return -1
		}
		return r
	}, s), " \n\t.")
}

// Ref is one remote reference and the commit it points at (peeled for annotated tags).
type Ref struct {
	Name   string
	Commit string
}

// LsRemote lists the remote's refs, with annotated tags peeled to their commits.
func (m *Mirrors) LsRemote(ctx context.Context, u string) ([]Ref, error) {
	if err := checkLocal(u); err != nil {
		return nil, &Error{Op: "listing refs of", URL: CleanURL(u), Err: err}
	}
	rem := gogit.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{u}})
	refs, err := rem.ListContext(ctx, &gogit.ListOptions{Auth: m.auth(u), CABundle: m.CABundle, PeelingOption: gogit.AppendPeeled})
	if err != nil {
		return nil, &Error{Op: "listing refs of", URL: CleanURL(u), Err: classify(u, err)}
	}
	byName := map[string]string{}
	var head string
	for _, r := range refs {
		switch r.Type() {
		case plumbing.HashReference:
			byName[r.Name().String()] = r.Hash().String()
		case plumbing.SymbolicReference:
			if r.Name() == plumbing.HEAD {
				head = r.Target().String()
			}
		}
	}
	if head != "" {
		if c, ok := byName[head]; ok {
			byName["HEAD"] = c
		}
	}
	out := make([]Ref, 0, len(byName))
	for n, c := range byName {
		out = append(out, Ref{Name: n, Commit: c})
	}
	return out, nil
}

// ResolveRef resolves ref on remote u to a commit: a full ref name, a branch, a tag (peeled),
// HEAD, or an abbreviated commit id present on the remote's branches or tags.
func (m *Mirrors) ResolveRef(ctx context.Context, u, ref string) (string, error) {
	if IsCommit(ref) {
		return ref, nil
	}
	refs, err := m.LsRemote(ctx, u)
	if err != nil {
		return "", err
	}
	byName := make(map[string]string, len(refs))
	for _, r := range refs {
		byName[r.Name] = r.Commit
	}
	for _, cand := range []string{
		ref + "^{}", ref,
		"refs/heads/" + ref,
		"refs/tags/" + ref + "^{}", "refs/tags/" + ref,
	} {
		if c, ok := byName[cand]; ok {
			return c, nil
		}
	}
	if regexp.MustCompile(`^[0-9a-f]{7,39}$`).MatchString(ref) {
		// An abbreviated commit: fetch, then look it up in the mirror.
		c, err := m.expand(ctx, u, ref)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, ErrUnknownRef) {
			return "", err
		}
	}
	return "", &Error{Op: "resolving", URL: CleanURL(u), Ref: ref, Err: fmt.Errorf("%w: no branch, tag or commit %q", ErrUnknownRef, ref)}
}

// expand finds the full commit id for an abbreviated one, fetching the mirror first.
func (m *Mirrors) expand(ctx context.Context, u, prefix string) (string, error) {
	unlock, err := m.lock(u)
	if err != nil {
		return "", err
	}
	defer unlock()
	repo, err := m.openChecked(u)
	if err != nil {
		return "", err
	}
	if err := m.fetch(ctx, repo, u, ""); err != nil {
		return "", err
	}
	iter, err := repo.CommitObjects()
	if err != nil {
		return "", err
	}
	var found []string
	_ = iter.ForEach(func(c *object.Commit) error {
		if strings.HasPrefix(c.Hash.String(), prefix) {
			found = append(found, c.Hash.String())
		}
		return nil
	})
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", ErrUnknownRef
	default:
		return "", &Error{Op: "resolving", URL: CleanURL(u), Ref: prefix, Err: fmt.Errorf("%w: abbreviated commit %q is ambiguous", ErrUnknownRef, prefix)}
	}
}

// lock serialises work on one mirror: within the process with a mutex, across processes
// with flock on a lock file beside it (best effort on network filesystems; the mirror is a
// cache, and store objects are checked by NAR hash).
func (m *Mirrors) lock(u string) (func(), error) {
	p := m.Path(u)
	m.mu.Lock()
	if m.locks == nil {
		m.locks = map[string]*sync.Mutex{}
	}
	l := m.locks[p]
	if l == nil {
		l = &sync.Mutex{}
		m.locks[p] = l
	}
	m.mu.Unlock()
	l.Lock()
	if err := os.MkdirAll(m.Dir, 0o755); err != nil {
		l.Unlock()
		return nil, fmt.Errorf("creating git cache: %w", err)
	}
	f, err := os.OpenFile(p+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		l.Unlock()
		return nil, fmt.Errorf("locking mirror: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil && !errors.Is(err, syscall.ENOLCK) && !errors.Is(err, syscall.ENOTSUP) {
		f.Close()
		l.Unlock()
		return nil, fmt.Errorf("locking mirror: %w", err)
	}
	return func() { f.Close(); l.Unlock() }, nil
}

// open opens the mirror of u, creating it (atomically: init in a temp dir, then rename).
func (m *Mirrors) open(u string) (*gogit.Repository, error) {
	p := m.Path(u)
	if repo, err := gogit.PlainOpen(p); err == nil {
		return repo, nil
	}
	if err := os.MkdirAll(m.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating git cache: %w", err)
	}
	tmp, err := os.MkdirTemp(m.Dir, ".init-")
	if err != nil {
		return nil, fmt.Errorf("creating mirror: %w", err)
	}
	defer os.RemoveAll(tmp)
	repo, err := gogit.PlainInit(tmp, true)
	if err != nil {
		return nil, fmt.Errorf("creating mirror: %w", err)
	}
	cfg, err := repo.Config()
	if err == nil {
		cfg.Raw.Section("core").SetOption("autocrlf", "false")
		cfg.Raw.Section("runpod-comfy").SetOption("url", CleanURL(u))
		_ = repo.SetConfig(cfg)
	}
	if err := os.Rename(tmp, p); err != nil && !errors.Is(err, os.ErrExist) && !isNotEmpty(err) {
		return nil, fmt.Errorf("creating mirror: %w", err)
	}
	return gogit.PlainOpen(p)
}

func isNotEmpty(err error) bool {
	return errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST)
}

// fetch updates every branch and tag of the mirror from u; with commit set and still missing
// afterwards, it asks for that commit directly (servers allowing reachable SHA-1 in want).
// Local remotes are fetched with the git command (see fetchCLI), others with go-git; either
// way the fetch ends with ctx.
func (m *Mirrors) fetch(ctx context.Context, repo *gogit.Repository, u, commit string) error {
	if err := checkLocal(u); err != nil {
		return &Error{Op: "fetching", URL: CleanURL(u), Err: err}
	}
	if localPath(u) != "" {
		if err := fetchCLI(ctx, m.Path(u), u, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"); err != nil {
			return &Error{Op: "fetching", URL: CleanURL(u), Err: err}
		}
		if commit == "" || m.hasCommitFresh(u, commit) {
			return nil
		}
		if err := fetchCLI(ctx, m.Path(u), u, commit+":refs/runpod-comfy/"+commit); err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		return nil
	}
	rem := gogit.NewRemote(repo.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{u}})
	err := goGitFetch(ctx, rem, &gogit.FetchOptions{
		RemoteName: "origin",
		RefSpecs:   []config.RefSpec{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"},
		Tags:       gogit.NoTags,
		Force:      true,
		Auth:       m.auth(u),
		CABundle:   m.CABundle,
	})
	if err != nil && !errors.Is(err, gogit.NoErrAlreadyUpToDate) {
		return &Error{Op: "fetching", URL: CleanURL(u), Err: classify(u, err)}
	}
	if commit == "" || hasCommit(repo, commit) {
		return nil
	}
	err = goGitFetch(ctx, rem, &gogit.FetchOptions{
		RemoteName: "origin",
		RefSpecs:   []config.RefSpec{config.RefSpec(commit + ":refs/runpod-comfy/" + commit)},
		Tags:       gogit.NoTags,
		Auth:       m.auth(u),
		CABundle:   m.CABundle,
	})
	if err != nil && errors.Is(err, ErrNoSpace) {
		return &Error{Op: "fetching", URL: CleanURL(u), Err: err}
	}
	if err != nil && !errors.Is(err, gogit.NoErrAlreadyUpToDate) && ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// hasCommitFresh opens the mirror of u anew (seeing packs written by a git command) and
// reports whether it holds commit.
func (m *Mirrors) hasCommitFresh(u, commit string) bool {
	repo, err := gogit.PlainOpen(m.Path(u))
	return err == nil && hasCommit(repo, commit)
}

func hasCommit(repo *gogit.Repository, commit string) bool {
	_, err := repo.CommitObject(plumbing.NewHash(commit))
	return err == nil
}

// Ensure makes sure the mirror of u holds commit, fetching only when it does not, and returns
// the opened mirror.
func (m *Mirrors) Ensure(ctx context.Context, u, commit string) (*gogit.Repository, error) {
	if !IsCommit(commit) {
		msg := fmt.Errorf("%q is not a full 40-hex commit id", commit)
		if regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(commit) {
			msg = errors.New("SHA-256 repositories are not supported yet (go-git reads SHA-1 repositories only)")
		}
		return nil, &Error{Op: "fetching", URL: CleanURL(u), Ref: commit, Err: msg}
	}
	if repo, err := gogit.PlainOpen(m.Path(u)); err == nil && hasCommit(repo, commit) {
		return repo, nil
	}
	unlock, err := m.lock(u)
	if err != nil {
		return nil, &Error{Op: "fetching", URL: CleanURL(u), Err: noSpace(err, m.Dir)}
	}
	defer unlock()
	repo, err := m.openChecked(u)
	if err != nil {
		return nil, err
	}
	if hasCommit(repo, commit) {
		return repo, nil
	}
	if err := m.fetch(ctx, repo, u, commit); err != nil {
		return nil, err
	}
	// Re-open: the fetch wrote new packs that an open repository may not see.
	repo, err = gogit.PlainOpen(m.Path(u))
	if err != nil {
		return nil, fmt.Errorf("opening mirror: %w", err)
	}
	if !hasCommit(repo, commit) {
		return nil, &Error{Op: "fetching", URL: CleanURL(u), Ref: commit, Err: ErrCommitNotFound}
	}
	return repo, nil
}

// ReadFile returns the contents of file path in the tree of commit on remote u, fetching into
// the mirror only when the commit is missing. A missing file gives an error wrapping
// os.ErrNotExist. Resolvers use it to read requirements.txt without exporting the tree.
func (m *Mirrors) ReadFile(ctx context.Context, u, commit, path string) ([]byte, error) {
	b, err := m.readFile(ctx, u, commit, path)
	if err != nil && ctx.Err() == nil && !errors.Is(err, os.ErrNotExist) {
		// The commit is there but an object under it is unreadable: a damaged mirror?
		repaired, rerr := m.repairIfBroken(u, err)
		if rerr != nil {
			return nil, rerr
		}
		if repaired {
			b, err = m.readFile(ctx, u, commit, path)
		}
	}
	return b, err
}

func (m *Mirrors) readFile(ctx context.Context, u, commit, path string) ([]byte, error) {
	repo, err := m.Ensure(ctx, u, commit)
	if err != nil {
		return nil, err
	}
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return nil, &Error{Op: "reading", URL: CleanURL(u), Ref: commit, Err: err}
	}
	f, err := c.File(path)
	if err != nil {
		if errors.Is(err, object.ErrFileNotFound) {
			return nil, &Error{Op: "reading " + path + " from", URL: CleanURL(u), Ref: commit, Err: os.ErrNotExist}
		}
		return nil, &Error{Op: "reading " + path + " from", URL: CleanURL(u), Ref: commit, Err: err}
	}
	s, err := f.Contents()
	if err != nil {
		return nil, &Error{Op: "reading " + path + " from", URL: CleanURL(u), Ref: commit, Err: err}
	}
	return []byte(s), nil
}
