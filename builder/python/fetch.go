package python

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// FetchOptions say where locked files may come from.
type FetchOptions struct {
	// CacheDir is the wheel cache, ROOT/cache/runpod-comfy/pip: files live at
	// CacheDir/files/<sha256>/<filename>.
	CacheDir string
	// FindLinks are the spec's find_links; local folders are searched by file name.
	FindLinks []string
	// Offline allows only the cache, file:// URLs and local find_links.
	Offline bool
	// Client downloads http(s) files; nil means http.DefaultClient.
	Client *http.Client
	// IndexURLs are the spec's index URLs as written, possibly with credentials: a file on the
	// same host is fetched with them (the lock holds URLs without credentials).
	IndexURLs []string
	// Jobs bounds parallel downloads; 0 means 4.
	Jobs int
}

// CachePath is where the wheel cache keeps a file of that sha256.
func CachePath(cacheDir string, p specs.PackageLock) string {
	return filepath.Join(cacheDir, "files", p.SHA256, p.Filename)
}

// MissingFilesError is an offline build missing files in the cache and find_links.
type MissingFilesError struct {
	CacheDir string
	Files    []string
}

func (e *MissingFilesError) Error() string {
	return fmt.Sprintf("offline: %d locked file(s) are neither in the wheel cache (%s) nor in find_links: %s",
		len(e.Files), e.CacheDir, strings.Join(e.Files, ", "))
}

// Fetch puts every locked file into the wheel cache, verified against its sha256, and returns
// the cached paths by sha256. Offline, a file found nowhere local is a *MissingFilesError
// naming all such files.
func Fetch(ctx context.Context, pkgs []specs.PackageLock, opts FetchOptions) (map[string]string, error) {
	if opts.CacheDir == "" {
		return nil, fmt.Errorf("fetching wheels: no wheel cache folder")
	}
	paths := map[string]string{}
	var todo []specs.PackageLock
	var missing []string
	for _, p := range pkgs {
		if !sha256Re.MatchString(p.SHA256) || p.Filename == "" || strings.ContainsAny(p.Filename, "/\\") {
			return nil, fmt.Errorf("lock entry %s %s: bad sha256 or filename", p.Name, p.Version)
		}
		cp := CachePath(opts.CacheDir, p)
		paths[p.SHA256] = cp
		if _, err := os.Stat(cp); err == nil {
			continue
		}
		if opts.Offline && localSource(p, opts.FindLinks) == "" {
			missing = append(missing, p.Filename)
			continue
		}
		todo = append(todo, p)
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, &MissingFilesError{CacheDir: opts.CacheDir, Files: missing}
	}
	g, gctx := errgroup.WithContext(ctx)
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = 4
	}
	g.SetLimit(jobs)
	for _, p := range todo {
		g.Go(func() error { return fetchOne(gctx, p, opts) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return paths, nil
}

// localSource is a local file that may hold p: its file:// URL or a find_links folder entry.
func localSource(p specs.PackageLock, findLinks []string) string {
	if u, err := url.Parse(p.URL); err == nil && u.Scheme == "file" {
		if _, err := os.Stat(u.Path); err == nil {
			return u.Path
		}
	}
	for _, fl := range findLinks {
		dir := fl
		if u, err := url.Parse(fl); err == nil && u.Scheme == "file" {
			dir = u.Path
		} else if !filepath.IsAbs(fl) {
			continue
		}
		cand := filepath.Join(dir, p.Filename)
		if _, err := os.Stat(cand); err == nil {
			return cand
		}
	}
	return ""
}

func fetchOne(ctx context.Context, p specs.PackageLock, opts FetchOptions) error {
	dst := CachePath(opts.CacheDir, p)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("fetching %s: %w", p.Filename, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".part-*")
	if err != nil {
		return fmt.Errorf("fetching %s: %w", p.Filename, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	w := io.MultiWriter(tmp, h)
	from := localSource(p, opts.FindLinks)
	if from != "" {
		f, err := os.Open(from)
		if err != nil {
			return fmt.Errorf("fetching %s: %w", p.Filename, err)
		}
		_, err = io.Copy(w, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("copying %s: %w", from, err)
		}
	} else {
		from = p.URL
		if err := download(ctx, p, opts, w); err != nil {
			return err
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 {
		return fmt.Errorf("%s (%s %s) from %s has sha256 %s, the lock says %s", p.Filename, p.Name, p.Version, redactURL(from), got, p.SHA256)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fetching %s: %w", p.Filename, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("fetching %s: %w", p.Filename, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("fetching %s: %w", p.Filename, err)
	}
	return nil
}

func download(ctx context.Context, p specs.PackageLock, opts FetchOptions, w io.Writer) error {
	u, err := url.Parse(p.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("fetching %s: cannot download %q", p.Filename, p.URL)
	}
	for _, ix := range opts.IndexURLs {
		if iu, err := url.Parse(ix); err == nil && iu.User != nil && iu.Host == u.Host {
			u.User = iu.User
			break
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", p.Filename, err)
	}
	client := opts.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("downloading %s: %s", p.Filename, redactErr(err, u))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("downloading %s from %s: %s", p.Filename, p.URL, resp.Status)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("downloading %s: %s", p.Filename, redactErr(err, u))
	}
	return nil
}

// redactErr formats err without the credentials of u.
func redactErr(err error, u *url.URL) string {
	s := err.Error()
	if u.User != nil {
		s = strings.ReplaceAll(s, u.User.String()+"@", "")
		if pw, ok := u.User.Password(); ok {
			s = strings.ReplaceAll(s, pw, "***")
		}
	}
	return s
}
