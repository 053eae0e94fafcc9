package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/internal/registrytest"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

func testRegistry(t *testing.T) *registrytest.Server {
	t.Helper()
	files := func(v string) map[string]string {
		return map[string]string{"__init__.py": "VERSION = " + v + "\n", "requirements.txt": "numpy\n"}
	}
	srv := registrytest.Start(registrytest.Static(map[string]registrytest.Node{
		"comfyui-impact-pack": {Versions: []registrytest.Version{
			{Version: "8.7.0", Files: files("8.7.0")},
			{Version: "8.8.0", Files: files("8.8.0"), Deprecated: true},
			{Version: "8.8.1", Files: files("8.8.1"), NoURLInList: true},
			{Version: "8.9.0", Status: registrytest.Deleted, StatusReason: "broken release", Files: files("8.9.0")},
			{Version: "9.0.0-beta.1", Files: files("9.0.0-beta.1")},
			{Version: "9.0.0", Status: registrytest.Pending, Files: files("9.0.0")},
			{Version: "9.1.0", Status: registrytest.Flagged, StatusReason: "malware scan", Files: files("9.1.0")},
		}},
		"banned-node": {Banned: true, Versions: []registrytest.Version{{Version: "1.0.0", Files: files("1")}}},
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestPick(t *testing.T) {
	srv := testRegistry(t)
	c, err := NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		req, want, warn string
	}{
		{"8.7.0", "8.7.0", ""},
		{"latest", "8.8.1", ""}, // 8.9.0 deleted, 9.0.0 pending, 9.1.0 flagged, 9.0.0-beta.1 a pre-release
		{"^8.7.0", "8.8.1", ""},
		{"~8.8.0", "8.8.1", ""},
		{"<8.8.1", "8.8.0", "deprecated"},
		{"9.0.0-beta.1", "9.0.0-beta.1", ""},
		{"9.0.0", "9.0.0", "pending"},
	} {
		nv, warns, err := c.Pick(ctx, "comfyui-impact-pack", tc.req)
		if err != nil {
			t.Errorf("Pick(%q): %v", tc.req, err)
			continue
		}
		if nv.Version != tc.want {
			t.Errorf("Pick(%q) = %s, want %s", tc.req, nv.Version, tc.want)
		}
		if !strings.HasPrefix(nv.DownloadURL, srv.Files+"/comfyui-impact-pack/"+tc.want+"/") {
			t.Errorf("Pick(%q): downloadUrl %q", tc.req, nv.DownloadURL)
		}
		if got := strings.Join(warns, "; "); (tc.warn == "") != (got == "") || !strings.Contains(got, tc.warn) {
			t.Errorf("Pick(%q): warnings %q, want %q", tc.req, got, tc.warn)
		}
	}
	for _, tc := range []struct{ id, req, want string }{
		{"comfyui-impact-pack", "8.9.0", "8.9.0 is Deleted in the registry: broken release"},
		{"comfyui-impact-pack", "9.1.0", "9.1.0 is Flagged in the registry: malware scan"},
		{"comfyui-impact-pack", "7.0.0", "HTTP 404 (not found): Node version not found"},
		{"comfyui-impact-pack", "^10.0.0", `no active version of comfyui-impact-pack matches "^10.0.0" (active versions: 9.0.0-beta.1, 8.8.1, 8.8.0, 8.7.0)`},
		{"no-such-node", "latest", "HTTP 404 (not found): Node not found"},
		{"banned-node", "latest", "HTTP 403 (refused: the registry answers 403 for a banned node)"},
	} {
		_, _, err := c.Pick(ctx, tc.id, tc.req)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Pick(%s, %q): %v, want %q", tc.id, tc.req, err, tc.want)
		}
	}
	// Ranges ask for active versions only, as ComfyUI-Manager asks for its own statuses.
	for _, r := range srv.Requests() {
		if strings.HasSuffix(strings.SplitN(r.URL, "?", 2)[0], "/versions") && !strings.Contains(r.URL, "statuses=NodeVersionStatusActive") {
			t.Errorf("list without the statuses filter: %s", r.URL)
		}
	}
}

func TestClientURLs(t *testing.T) {
	for _, bad := range []string{"http://registry.example.com", "https://user:pw@api.comfy.org", "ftp://x", "api.comfy.org"} {
		if _, err := NewClient(bad); err == nil {
			t.Errorf("NewClient(%q) accepted", bad)
		}
	}
	for _, ok := range []string{"", "https://api.comfy.org", "http://127.0.0.1:8080/", "http://localhost:1"} {
		if _, err := NewClient(ok); err != nil {
			t.Errorf("NewClient(%q): %v", ok, err)
		}
	}
}

// Resolving downloads the archive once and pins its sha256; a build fetches it again only
// when the cache lost it, and refuses an archive whose hash changed. Neither server ever
// gets a credential.
func TestResolveAndFetch(t *testing.T) {
	srv := testRegistry(t)
	c, _ := NewClient(srv.URL)
	dir := t.TempDir()
	r := &Resolver{Client: c, Fetcher: NewFetcher(dir)}
	ctx := context.Background()
	n := specs.CustomNode{Name: "impact", Registry: "comfyui-impact-pack", Version: "^8.7.0"}
	l, _, err := r.Resolve(ctx, n, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	want := "sha256:" + sha256Hex(registrytest.Zip(map[string]string{"__init__.py": "VERSION = 8.8.1\n", "requirements.txt": "numpy\n"}))
	if l.Version != "8.8.1" || l.SHA256 != want || l.Request != "^8.7.0" || l.ID != n.Registry {
		t.Fatalf("lock %+v, want 8.8.1 with %s", l, want)
	}
	if _, err := os.Stat(filepath.Join(dir, strings.TrimPrefix(want, "sha256:")+".zip")); err != nil {
		t.Fatalf("archive not cached: %v", err)
	}
	// Unchanged request: the pin is kept without asking the registry.
	before := len(srv.Requests())
	if l2, _, err := r.Resolve(ctx, n, &l, false); err != nil || l2 != l || len(srv.Requests()) != before {
		t.Fatalf("unchanged request re-resolved: %+v %v (%d requests)", l2, err, len(srv.Requests())-before)
	}
	b, err := r.ReadFile(ctx, l, "requirements.txt")
	if err != nil || string(b) != "numpy\n" {
		t.Fatalf("ReadFile: %q %v", b, err)
	}
	// A cached archive that was damaged is fetched again; a download that does not match the
	// lock is refused and not kept.
	if err := os.WriteFile(filepath.Join(dir, strings.TrimPrefix(want, "sha256:")+".zip"), []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Fetcher.Fetch(ctx, l.URL, l.SHA256); err != nil {
		t.Fatalf("refetch of a damaged cache entry: %v", err)
	}
	bad := l
	bad.SHA256 = "sha256:" + strings.Repeat("ab", 32)
	_, _, err = r.Fetcher.Fetch(ctx, bad.URL, bad.SHA256)
	var hm *HashMismatchError
	if !errors.As(err, &hm) || hm.Got != strings.TrimPrefix(want, "sha256:") {
		t.Fatalf("Fetch with another hash: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, strings.Repeat("ab", 32)+".zip")); err == nil {
		t.Fatal("a mismatching archive was kept under the lock's hash")
	}
	// A lock's hash names a file in the cache, and a damaged entry is removed: a hash that is
	// no digest (a hand-edited lock) must neither reach outside the cache nor remove anything.
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim+".zip", []byte("not an archive of the lock"), 0o644); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, victim)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Fetcher.Fetch(ctx, l.URL, "sha256:"+rel); err == nil || !strings.Contains(err.Error(), "hex digits") {
		t.Fatalf("Fetch with a path for a hash: %v", err)
	}
	if _, err := os.Stat(victim + ".zip"); err != nil {
		t.Fatalf("a file outside the cache was removed: %v", err)
	}
	// Offline, an unpinned node cannot be resolved.
	off := &Resolver{Client: c, Fetcher: r.Fetcher, Offline: true}
	if _, _, err := off.Resolve(ctx, specs.CustomNode{Name: "x", Registry: "comfyui-impact-pack", Version: "8.7.0"}, nil, false); !errors.Is(err, ErrOffline) {
		t.Fatalf("offline resolve: %v", err)
	}
	for _, req := range srv.Requests() {
		for _, h := range []string{"Authorization", "Cookie", "Proxy-Authorization"} {
			if req.Header.Get(h) != "" {
				t.Errorf("%s %s carried %s", req.Host, req.URL, h)
			}
		}
	}
}

func TestFetchLimit(t *testing.T) {
	srv := testRegistry(t)
	f := NewFetcher(t.TempDir())
	f.MaxArchive = 10
	_, _, err := f.Fetch(context.Background(), srv.Files+"/comfyui-impact-pack/8.7.0/node.zip", "")
	if err == nil || !strings.Contains(err.Error(), "allowed for a node archive") {
		t.Fatalf("Fetch over the limit: %v", err)
	}
	if _, _, err := f.Fetch(context.Background(), "http://example.com/x.zip", ""); err == nil {
		t.Fatal("plain http off loopback accepted")
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
