package git

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// gitServer is a real smart-HTTP git server on loopback over TLS (git http-backend run as
// CGI) that records the Authorization header of every request.
type gitServer struct {
	*httptest.Server
	root string // GIT_PROJECT_ROOT: bare repositories <name>.git

	mu    sync.Mutex
	auths []string // Authorization of each request, "" when none
	// redirect, when set, sends every request to redirect+path?query instead.
	redirect string
}

func newGitServer(t *testing.T) *gitServer {
	t.Helper()
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	backend := filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Skipf("no git-http-backend: %v", err)
	}
	s := &gitServer{root: t.TempDir()}
	cg := &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + s.root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + s.root}}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.auths = append(s.auths, r.Header.Get("Authorization"))
		redirect := s.redirect
		s.mu.Unlock()
		if redirect != "" {
			http.Redirect(w, r, redirect+r.URL.RequestURI(), http.StatusFound)
			return
		}
		cg.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// caBundle is the PEM of the httptest certificate, which every httptest TLS server shares.
func (s *gitServer) caBundle() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}

// hostKey is the server's Credentials key ("127.0.0.1:port").
func (s *gitServer) hostKey() string {
	u, _ := url.Parse(s.URL)
	return HostKey(u)
}

// publish puts a bare clone of the work repository dir on the server as name.git and
// returns its URL.
func (s *gitServer) publish(t *testing.T, dir, name string) string {
	t.Helper()
	gitCmd(t, s.root, "clone", "-q", "--bare", dir, name+".git")
	return s.URL + "/" + name + ".git"
}

func (s *gitServer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auths...)
}

func basic(tok string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+tok))
}

// workRepo makes a work repository with one file and returns it and its commit.
func workRepo(t *testing.T, name string) (dir, commit string) {
	dir = filepath.Join(t.TempDir(), name)
	os.MkdirAll(dir, 0o755)
	gitCmd(t, dir, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(dir, name+".py"), []byte("NAME = '"+name+"'\n"), 0o644)
	gitCmd(t, dir, "add", "-A")
	gitCmd(t, dir, "commit", "-q", "-m", name)
	return dir, gitCmd(t, dir, "rev-parse", "HEAD")
}

// parentWith makes a work repository whose .gitmodules names each path's URL, pinned at
// the given commits.
func parentWith(t *testing.T, subs map[string][2]string) (dir, commit string) {
	dir, _ = workRepo(t, "parent")
	var mods strings.Builder
	for p, uc := range subs {
		mods.WriteString("[submodule \"" + p + "\"]\n\tpath = " + p + "\n\turl = " + uc[0] + "\n")
		gitCmd(t, dir, "update-index", "--add", "--cacheinfo", "160000,"+uc[1]+","+p)
	}
	os.WriteFile(filepath.Join(dir, ".gitmodules"), []byte(mods.String()), 0o644)
	gitCmd(t, dir, "add", ".gitmodules")
	gitCmd(t, dir, "commit", "-q", "-m", "submodules")
	return dir, gitCmd(t, dir, "rev-parse", "HEAD")
}

func checkAuths(t *testing.T, what string, got []string, want string) {
	t.Helper()
	if len(got) == 0 {
		t.Fatalf("%s saw no request", what)
	}
	for _, a := range got {
		if a != want {
			t.Errorf("%s saw Authorization %q, want %q", what, a, want)
		}
	}
}

// A token goes to the hosts it was given for: the spec's repository host gets GIT_TOKEN (for
// the parent and a relative submodule on it), a submodule on another host gets nothing, and a
// per-host token reaches its own host only.
func TestTokenOnlyToNamedHosts(t *testing.T) {
	a, b := newGitServer(t), newGitServer(t)
	subDir, subCommit := workRepo(t, "same")
	a.publish(t, subDir, "same")
	otherDir, otherCommit := workRepo(t, "other")
	otherURL := b.publish(t, otherDir, "other")
	parentDir, parentCommit := parentWith(t, map[string][2]string{
		"vendor/same":  {"../same.git", subCommit},
		"vendor/other": {otherURL, otherCommit},
	})
	parentURL := a.publish(t, parentDir, "parent")

	for _, exp := range []string{ExportGoGit, ExportGitCLI} {
		t.Run(exp, func(t *testing.T) {
			before := len(a.seen())
			beforeB := len(b.seen())
			m := NewMirrors(filepath.Join(t.TempDir(), "git"), Credentials{Token: "tok-A", Hosts: []string{a.hostKey()}})
			m.CABundle, m.Exporter = a.caBundle(), exp
			out := filepath.Join(t.TempDir(), "out")
			if err := m.Export(context.Background(), parentURL, parentCommit, out, ExportOptions{Submodules: true}); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"vendor/same/same.py", "vendor/other/other.py"} {
				if _, err := os.Stat(filepath.Join(out, f)); err != nil {
					t.Errorf("submodule file: %v", err)
				}
			}
			checkAuths(t, "the spec's host", a.seen()[before:], basic("tok-A"))
			checkAuths(t, "the submodule's other host", b.seen()[beforeB:], "")
		})
	}

	// GIT_TOKENS gives the other host its own token; the spec's host never sees it.
	before, beforeB := len(a.seen()), len(b.seen())
	m := NewMirrors(filepath.Join(t.TempDir(), "git"), Credentials{Token: "tok-A", Hosts: []string{a.hostKey()},
		PerHost: map[string]string{b.hostKey(): "tok-B"}})
	m.CABundle = a.caBundle()
	if err := m.Export(context.Background(), parentURL, parentCommit, filepath.Join(t.TempDir(), "out"), ExportOptions{Submodules: true}); err != nil {
		t.Fatal(err)
	}
	checkAuths(t, "the spec's host", a.seen()[before:], basic("tok-A"))
	checkAuths(t, "the per-host token's host", b.seen()[beforeB:], basic("tok-B"))
}

// A redirect to another host carries no token, neither on the redirected discovery request
// nor on the upload-pack requests that follow it.
func TestRedirectDropsToken(t *testing.T) {
	a, b := newGitServer(t), newGitServer(t)
	dir, commit := workRepo(t, "node")
	b.publish(t, dir, "node")
	a.redirect = b.URL
	m := NewMirrors(filepath.Join(t.TempDir(), "git"), Credentials{Token: "tok-A", Hosts: []string{a.hostKey()}})
	m.CABundle = a.caBundle()
	if _, err := m.Ensure(context.Background(), a.URL+"/node.git", commit); err != nil {
		t.Fatal(err)
	}
	checkAuths(t, "the spec's host", a.seen(), basic("tok-A"))
	checkAuths(t, "the redirect target", b.seen(), "")
}

func TestCredentialsFor(t *testing.T) {
	c := Credentials{Token: "T", Hosts: []string{"github.com", "git.example.com:8443"}, PerHost: map[string]string{"gitlab.com": "G"}}
	for u, want := range map[string]string{
		"https://github.com/o/r":              "T",
		"https://GitHub.com:443/o/r":          "T",
		"https://github.com:444/o/r":          "",
		"http://github.com/o/r":               "",
		"ssh://git@github.com/o/r":            "",
		"https://evil.example/o/r":            "",
		"https://github.com.evil.example/o/r": "",
		"https://git.example.com:8443/x":      "T",
		"https://git.example.com/x":           "",
		"https://gitlab.com/x":                "G",
		"https://user@github.com/o/r":         "T",
		"git@github.com:o/r.git":              "",
		"/srv/git/r":                          "",
		"https://sub.github.com/o/r":          "",
	} {
		if got := c.For(u); got != want {
			t.Errorf("For(%q) = %q, want %q", u, got, want)
		}
	}
}

func TestParseHostTokens(t *testing.T) {
	got, err := ParseHostTokens("github.com=a, https://git.example.com:8443=b\nGitLab.com:443=c")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"github.com": "a", "git.example.com:8443": "b", "gitlab.com": "c"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	for _, bad := range []string{"github.com", "=SECRETX", "github.com=", "github.com/o=SECRETX", "a=SECRETX,a=SECRETX", "user@github.com=SECRETX", "http://github.com=SECRETX"} {
		_, err := ParseHostTokens(bad)
		if err == nil {
			t.Errorf("ParseHostTokens(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "SECRETX") {
			t.Errorf("ParseHostTokens(%q): error shows the token: %v", bad, err)
		}
	}
}

func TestCheckSubmoduleURL(t *testing.T) {
	for _, c := range []struct {
		parent, sub string
		ok          bool
	}{
		{"https://github.com/o/r", "https://gitlab.com/x/y.git", true},
		{"https://github.com/o/r", "git@github.com:o/s.git", true},
		{"https://github.com/o/r", "ssh://git@github.com/o/s.git", true},
		{"https://github.com/o/r", "git://github.com/o/s.git", false},
		{"https://github.com/o/r", "http://example.com/o/s.git", false},
		{"https://github.com/o/r", "http://127.0.0.1:8080/s.git", false},
		{"https://github.com/o/r", "file:///etc", false},
		{"https://github.com/o/r", "/srv/git/s", false},
		{"https://github.com/o/r", "https://tok@github.com/o/s.git", false},
		{"https://github.com/o/r", "ext::sh -c touch% /tmp/pwned", false},
		{"https://github.com/o/r", "-oProxyCommand=x:y", false},
		{"git@github.com:o/r.git", "/srv/git/s", false},
		{"/srv/git/r", "/srv/git/s", true},
		{"file:///srv/git/r", "file:///srv/git/s", true},
		{"http://127.0.0.1:9/r", "http://127.0.0.1:9/s", true},
	} {
		err := CheckSubmoduleURL(c.parent, c.sub)
		if (err == nil) != c.ok {
			t.Errorf("CheckSubmoduleURL(%q, %q) = %v, want ok=%v", c.parent, c.sub, err, c.ok)
		}
	}
}

// A repository fetched over https cannot make the build read a local repository, nor fetch
// over git://, through its .gitmodules; a relative URL is resolved, then checked.
func TestSubmoduleURLRulesAtExport(t *testing.T) {
	a := newGitServer(t)
	local, localCommit := workRepo(t, "local")
	for name, sub := range map[string]string{
		"file":     "file://" + local,
		"path":     local,
		"git":      "git://127.0.0.1/local.git",
		"relative": "../../../../../../../.." + local, // resolves on the https host, so allowed
	} {
		t.Run(name, func(t *testing.T) {
			parentDir, parentCommit := parentWith(t, map[string][2]string{"vendor/x": {sub, localCommit}})
			parentURL := a.publish(t, parentDir, "parent-"+name)
			m := NewMirrors(filepath.Join(t.TempDir(), "git"), Credentials{})
			m.CABundle = a.caBundle()
			err := m.Export(context.Background(), parentURL, parentCommit, filepath.Join(t.TempDir(), "out"), ExportOptions{Submodules: true})
			if name == "relative" {
				// https://127.0.0.1:port/<local path>: a URL on the server, not the local repository.
				if err == nil || strings.Contains(err.Error(), "refused") {
					t.Fatalf("relative submodule: %v, want a fetch error from the server", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "submodule vendor/x") || !strings.Contains(err.Error(), "refused") {
				t.Fatalf("want the submodule refused, got %v", err)
			}
		})
	}
}
