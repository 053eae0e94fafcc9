package model

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

// testData returns n pseudo-random bytes (seeded, so every run serves the same file).
func testData(n int) []byte {
	r := rand.New(rand.NewPCG(1, uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sha256Of(b []byte) Checksum {
	return Checksum{Algo: SHA256, Hex: fmt.Sprintf("%x", sha256.Sum256(b))}
}

// request is what a test server saw of one request.
type request struct {
	Method, Path, Range, Auth string
	Query                     string
}

// fileServer serves one file with Range support. fault, when set, may handle request number
// n (0-based) itself and return true.
type fileServer struct {
	data        []byte
	contentType string
	fault       func(w http.ResponseWriter, r *http.Request, n int) bool

	mu   sync.Mutex
	reqs []request
}

func (s *fileServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := len(s.reqs)
	s.reqs = append(s.reqs, request{r.Method, r.URL.Path, r.Header.Get("Range"), r.Header.Get("Authorization"), r.URL.RawQuery})
	s.mu.Unlock()
	if s.fault != nil && s.fault(w, r, n) {
		return
	}
	serveRange(w, r, s.data, s.contentType)
}

func (s *fileServer) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.reqs...)
}

// serveRange answers a GET or HEAD as net/http's file server does: the whole file, or the
// range asked for (any "bytes=" form, If-Range against the ETag, 416 past the end).
func serveRange(w http.ResponseWriter, r *http.Request, data []byte, contentType string) {
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	w.Header().Set("Content-Type", contentType)
	if w.Header().Get("ETag") == "" {
		w.Header().Set("ETag", `"v1"`)
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

// dropAfter answers with the full Content-Length, sends only the first cut bytes of the range
// asked for, and then aborts the connection.
func dropAfter(w http.ResponseWriter, r *http.Request, data []byte, cut int) {
	if _, set := w.Header()["Etag"]; !set {
		w.Header().Set("ETag", `"v1"`) // as serveRange: the same file has the same ETag
	}
	start := 0
	if rg := r.Header.Get("Range"); rg != "" {
		a, _, _ := strings.Cut(strings.TrimPrefix(rg, "bytes="), "-")
		start, _ = strconv.Atoi(a)
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(data)-1, len(data)))
		w.Header().Set("Content-Length", strconv.Itoa(len(data)-start))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
	}
	w.Write(data[start : start+cut])
	w.(http.Flusher).Flush()
	panic(http.ErrAbortHandler)
}

// warnings collects Warnf output.
type warnings struct {
	mu    sync.Mutex
	lines []string
}

func (w *warnings) warnf(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines = append(w.lines, fmt.Sprintf(format, args...))
}

func (w *warnings) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

// fastRetry retries at once, so tests do not wait.
var fastRetry = Retry{Attempts: 4, Base: time.Millisecond, Max: 5 * time.Millisecond}

func newTestFetcher(t *testing.T, opts Options) (*Fetcher, *warnings) {
	t.Helper()
	w := &warnings{}
	if opts.Retry == (Retry{}) {
		opts.Retry = fastRetry
	}
	if opts.PartialDir == "" {
		opts.PartialDir = filepath.Join(t.TempDir(), "partial")
	}
	opts.Warnf = w.warnf
	f, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return f, w
}

func mustSource(t *testing.T, raw string) Source {
	t.Helper()
	s, err := ParseSource(raw, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func checkFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("%s: %d bytes with the wrong content (want %d bytes)", path, len(got), len(want))
	}
}

// emptyDir fails unless dir holds nothing (or does not exist).
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("%s is not empty: %v", dir, names)
	}
}

func TestFetchResumesAfterDroppedConnection(t *testing.T) {
	data := testData(3<<20 + 123)
	fs := &fileServer{data: data, fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n == 0 {
			dropAfter(w, r, data, 1<<20+500<<10)
			return true
		}
		return false
	}}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	f, _ := newTestFetcher(t, Options{})
	dst := filepath.Join(t.TempDir(), "m.safetensors")
	res, err := f.Fetch(context.Background(), mustSource(t, srv.URL+"/m.safetensors"), Want{Checksum: sha256Of(data)}, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	if res.Checksum != sha256Of(data) || res.Size != int64(len(data)) {
		t.Fatalf("result %+v", res)
	}
	reqs := fs.requests()
	if len(reqs) != 2 {
		t.Fatalf("want 2 requests, got %+v", reqs)
	}
	if reqs[0].Range != "bytes=0-" {
		t.Fatalf("the first request should probe for ranges from byte 0: %q", reqs[0].Range)
	}
	off, ok := strings.CutPrefix(reqs[1].Range, "bytes=")
	n, err := strconv.Atoi(strings.TrimSuffix(off, "-"))
	if !ok || err != nil || n <= 0 || n > 1<<20+500<<10 {
		t.Fatalf("second request should resume with a Range from the bytes received, got %q", reqs[1].Range)
	}
	// The NAR hash was computed in the same pass, across the resume; check it against the
	// store's NAR serialiser on the same bytes.
	ref := filepath.Join(t.TempDir(), "ref")
	if err := os.WriteFile(ref, data, 0o644); err != nil {
		t.Fatal(err)
	}
	want, wantSize, err := nar.Hash(ref)
	if err != nil {
		t.Fatal(err)
	}
	if res.NarHash != want || res.NarSize != wantSize {
		t.Fatalf("nar hash %s size %d, want %s %d", res.NarHash, res.NarSize, want, wantSize)
	}
}

func TestFetchResumesAcrossCalls(t *testing.T) {
	data := testData(4<<20 + 7)
	broken := true
	fs := &fileServer{data: data, fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
		if broken {
			dropAfter(w, r, data, 2<<20+100)
			return true
		}
		return false
	}}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	partial := filepath.Join(t.TempDir(), "partial")
	opts := Options{PartialDir: partial, CheckpointEvery: 512 << 10, Retry: Retry{Attempts: 1, Base: time.Millisecond}}
	f, _ := newTestFetcher(t, opts)
	src := mustSource(t, srv.URL+"/big.bin")
	dst := filepath.Join(t.TempDir(), "big.bin")
	if _, err := f.Fetch(context.Background(), src, Want{Checksum: sha256Of(data)}, dst, nil); err == nil {
		t.Fatal("first fetch should fail")
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("a failed fetch left %s", dst)
	}
	broken = false
	f2, warn := newTestFetcher(t, Options{PartialDir: partial})
	res, err := f2.Fetch(context.Background(), src, Want{Checksum: sha256Of(data)}, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	if res.Checksum != sha256Of(data) {
		t.Fatalf("checksum %s", res.Checksum)
	}
	reqs := fs.requests()
	last := reqs[len(reqs)-1]
	if last.Range != "bytes="+strconv.Itoa(2<<20+100)+"-" {
		t.Fatalf("the second call should resume from the checkpoint, asked for %q", last.Range)
	}
	if !strings.Contains(warn.String(), "resuming the download at byte") {
		t.Fatalf("no resume warning: %s", warn)
	}
	emptyDir(t, partial)
}

func TestFetchRetries500ThenSucceeds(t *testing.T) {
	data := testData(100 << 10)
	fs := &fileServer{data: data, fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n < 2 {
			http.Error(w, "oops", http.StatusInternalServerError)
			return true
		}
		return false
	}}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	f, warn := newTestFetcher(t, Options{})
	dst := filepath.Join(t.TempDir(), "x.bin")
	if _, err := f.Fetch(context.Background(), mustSource(t, srv.URL+"/x.bin"), Want{Checksum: sha256Of(data)}, dst, nil); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	if n := len(fs.requests()); n != 3 {
		t.Fatalf("want 3 requests, got %d", n)
	}
	if !strings.Contains(warn.String(), "500 Internal Server Error") {
		t.Fatalf("warnings do not mention the 500: %s", warn)
	}
}

func TestFetchGivesUpOnPersistent503(t *testing.T) {
	fs := &fileServer{fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return true
	}}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	f, _ := newTestFetcher(t, Options{})
	_, err := f.Fetch(context.Background(), mustSource(t, srv.URL+"/x.bin"), Want{}, filepath.Join(t.TempDir(), "x"), nil)
	if err == nil || !strings.Contains(err.Error(), "giving up after 4 tries") || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err = %v", err)
	}
}

func TestFetchHonoursRetryAfter(t *testing.T) {
	data := testData(10 << 10)
	fs := &fileServer{data: data, fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return true
		}
		return false
	}}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	f, warn := newTestFetcher(t, Options{})
	dst := filepath.Join(t.TempDir(), "x.bin")
	if _, err := f.Fetch(context.Background(), mustSource(t, srv.URL+"/x.bin"), Want{Checksum: sha256Of(data)}, dst, nil); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	// The policy's own delay is at most 5ms: waiting 1s is Retry-After's doing.
	if !strings.Contains(warn.String(), "429 Too Many Requests; retrying in 1s") {
		t.Fatalf("Retry-After not honoured: %s", warn)
	}
}

func TestFetchRejectsHTMLPage(t *testing.T) {
	page := []byte("<html><body>Please log in</body></html>")
	fs := &fileServer{data: page, contentType: "text/html; charset=utf-8"}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	partial := filepath.Join(t.TempDir(), "partial")
	f, _ := newTestFetcher(t, Options{CivitaiEndpoint: srv.URL, PartialDir: partial})
	dst := filepath.Join(t.TempDir(), "m.safetensors")
	_, err := f.Fetch(context.Background(), mustSource(t, srv.URL+"/api/download/models/42"), Want{}, dst, nil)
	if err == nil || !strings.Contains(err.Error(), "HTML page") || !strings.Contains(err.Error(), "CIVITAI_API_TOKEN is not set") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatal("an HTML page was saved")
	}
	emptyDir(t, partial)
}

func TestFetchRejectsAnnouncedSizeMismatch(t *testing.T) {
	data := testData(1000)
	srv := httptest.NewServer(&fileServer{data: data})
	defer srv.Close()
	f, _ := newTestFetcher(t, Options{HFEndpoint: srv.URL})
	_, err := f.Fetch(context.Background(), mustSource(t, "hf://o/r/m.bin"), Want{Checksum: sha256Of(data), Size: 5000}, filepath.Join(t.TempDir(), "m"), nil)
	if err == nil || !strings.Contains(err.Error(), "announced 1000 bytes but 5000 were expected") || !strings.Contains(err.Error(), "HF_TOKEN is not set") {
		t.Fatalf("err = %v", err)
	}
}

func TestFetchChecksumMismatchLeavesNothing(t *testing.T) {
	data := testData(300 << 10)
	srv := httptest.NewServer(&fileServer{data: data})
	defer srv.Close()
	partial := filepath.Join(t.TempDir(), "partial")
	f, _ := newTestFetcher(t, Options{PartialDir: partial})
	dstDir := t.TempDir()
	wrong := sha256Of([]byte("something else"))
	_, err := f.Fetch(context.Background(), mustSource(t, srv.URL+"/m.bin"), Want{Checksum: wrong}, filepath.Join(dstDir, "m.bin"), nil)
	var mm *MismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("err = %v, want a *MismatchError", err)
	}
	if mm.Expected != wrong.String() || mm.Actual != sha256Of(data).String() {
		t.Fatalf("mismatch %+v", mm)
	}
	emptyDir(t, dstDir)
	emptyDir(t, partial)
}

func TestFetchMD5(t *testing.T) {
	data := testData(70000)
	srv := httptest.NewServer(&fileServer{data: data})
	defer srv.Close()
	f, _ := newTestFetcher(t, Options{})
	want := Checksum{Algo: MD5, Hex: fmt.Sprintf("%x", md5.Sum(data))}
	res, err := f.Fetch(context.Background(), mustSource(t, srv.URL+"/m.ckpt"), Want{Checksum: want}, filepath.Join(t.TempDir(), "m"), nil)
	if err != nil || res.Checksum != want {
		t.Fatalf("res %+v err %v", res, err)
	}
}

func TestTokenNotForwardedToRedirectHost(t *testing.T) {
	data := testData(5000)
	cdn := &fileServer{data: data}
	cdnSrv := httptest.NewServer(cdn)
	defer cdnSrv.Close()
	hub := &fileServer{fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
		http.Redirect(w, r, cdnSrv.URL+"/blob/abc?X-Amz-Signature=s3cr3t", http.StatusFound)
		return true
	}}
	hubSrv := httptest.NewServer(hub)
	defer hubSrv.Close()
	f, _ := newTestFetcher(t, Options{HFEndpoint: hubSrv.URL, HFToken: "hf_marker_token", CivitaiToken: "civ_marker_token"})
	dst := filepath.Join(t.TempDir(), "m.bin")
	if _, err := f.Fetch(context.Background(), mustSource(t, "hf://owner/repo/sub/m.bin@v1"), Want{Checksum: sha256Of(data)}, dst, nil); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	h := hub.requests()
	if len(h) != 1 || h[0].Auth != "Bearer hf_marker_token" || h[0].Path != "/owner/repo/resolve/v1/sub/m.bin" {
		t.Fatalf("hub saw %+v, want the token on the resolve URL", h)
	}
	for _, r := range cdn.requests() {
		if r.Auth != "" {
			t.Fatalf("the token reached the redirect target: %+v", r)
		}
	}
	if len(cdn.requests()) != 1 {
		t.Fatalf("cdn saw %+v", cdn.requests())
	}
}

func TestResolveHFFromLinkedEtag(t *testing.T) {
	data := testData(2048)
	sum := sha256Of(data)
	fs := &fileServer{fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.Method != http.MethodHead || r.URL.Path != "/o/r/resolve/main/unet/m.safetensors" {
			http.Error(w, "unexpected", http.StatusTeapot)
			return true
		}
		w.Header().Set("X-Linked-Etag", `"`+sum.Hex+`"`)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(data)))
		w.Header().Set("Location", "http://127.0.0.1:1/never-followed")
		w.WriteHeader(http.StatusFound)
		return true
	}}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	f, _ := newTestFetcher(t, Options{HFEndpoint: srv.URL})
	rem, err := f.Resolve(context.Background(), mustSource(t, "hf://o/r/unet/m.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if rem.Checksum != sum || rem.Size != int64(len(data)) || rem.FileName != "m.safetensors" {
		t.Fatalf("remote %+v", rem)
	}
	if reqs := fs.requests(); len(reqs) != 1 || reqs[0].Method != http.MethodHead {
		t.Fatalf("want one HEAD, got %+v", reqs)
	}
	// A plain https URL of the endpoint is recognised as Hugging Face too.
	rem, err = f.Resolve(context.Background(), mustSource(t, srv.URL+"/o/r/resolve/main/unet/m.safetensors"))
	if err != nil || rem.Checksum != sum {
		t.Fatalf("remote %+v err %v", rem, err)
	}
}

func TestResolveHFGatedNamesToken(t *testing.T) {
	srv := httptest.NewServer(&fileServer{fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
		w.WriteHeader(http.StatusUnauthorized)
		return true
	}})
	defer srv.Close()
	f, _ := newTestFetcher(t, Options{HFEndpoint: srv.URL})
	_, err := f.Resolve(context.Background(), mustSource(t, "hf://o/gated/m.safetensors"))
	if err == nil || !strings.Contains(err.Error(), "HF_TOKEN is not set") {
		t.Fatalf("err = %v", err)
	}
}

func TestResolveAndFetchCivitai(t *testing.T) {
	data := testData(9000)
	sum := sha256Of(data)
	var srvURL string
	fs := &fileServer{data: data, fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.URL.Path == "/api/v1/model-versions/777" {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":777,"files":[
			  {"name":"other.pt","type":"VAE","primary":false,"hashes":{"SHA256":"%064d"}},
			  {"name":"dreamy_v2.safetensors","type":"Model","primary":true,"sizeKB":8.8,
			   "downloadUrl":%q,"hashes":{"SHA256":%q},"metadata":{"format":"SafeTensor"}}]}`,
				0, srvURL+"/api/download/models/777", strings.ToUpper(sum.Hex))
			return true
		}
		if r.URL.Path != "/api/download/models/777" {
			http.NotFound(w, r)
			return true
		}
		return false
	}}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	srvURL = srv.URL
	f, _ := newTestFetcher(t, Options{CivitaiEndpoint: srv.URL, CivitaiToken: "civ_marker"})
	rem, err := f.Resolve(context.Background(), mustSource(t, "civitai://777"))
	if err != nil {
		t.Fatal(err)
	}
	if rem.Checksum != sum || rem.FileName != "dreamy_v2.safetensors" {
		t.Fatalf("remote %+v", rem)
	}
	dst := filepath.Join(t.TempDir(), "d")
	if _, err := f.Fetch(context.Background(), mustSource(t, "civitai://777"), Want{Checksum: rem.Checksum}, dst, nil); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	for _, r := range fs.requests() {
		if r.Auth != "Bearer civ_marker" {
			t.Fatalf("Civitai's own host should get the token: %+v", r)
		}
	}
	// A civitai.com-style download URL with a format query picks the matching file.
	rem, err = f.Resolve(context.Background(), mustSource(t, srv.URL+"/api/download/models/777?type=VAE"))
	if err != nil || rem.FileName != "other.pt" {
		t.Fatalf("remote %+v err %v", rem, err)
	}
	// The seed tool's forms resolve and download alike; the query selects the file and goes
	// on to the download URL.
	for _, raw := range []string{"civitai://models/777", "civitai://api/download/models/777?type=Model&format=SafeTensor", "civitai:///api/download/models/777"} {
		rem, err := f.Resolve(context.Background(), mustSource(t, raw))
		if err != nil || rem.Checksum != sum || rem.FileName != "dreamy_v2.safetensors" {
			t.Fatalf("%s: remote %+v err %v", raw, rem, err)
		}
		dst := filepath.Join(t.TempDir(), "d")
		if _, err := f.Fetch(context.Background(), mustSource(t, raw), Want{Checksum: rem.Checksum}, dst, nil); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		checkFile(t, dst, data)
	}
	rem, err = f.Resolve(context.Background(), mustSource(t, "civitai://777?type=VAE"))
	if err != nil || rem.FileName != "other.pt" {
		t.Fatalf("civitai://777?type=VAE: remote %+v err %v", rem, err)
	}
	var sawQuery bool
	for _, r := range fs.requests() {
		if r.Path == "/api/download/models/777" && r.Query == "type=Model&format=SafeTensor" {
			sawQuery = true
		}
	}
	if !sawQuery {
		t.Errorf("the seed form's query did not reach the download URL: %+v", fs.requests())
	}
}

func TestFetchLocalFile(t *testing.T) {
	data := testData(200 << 10)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "local.safetensors"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, _ := newTestFetcher(t, Options{})
	for _, raw := range []string{"file://" + filepath.Join(dir, "local.safetensors"), "local.safetensors"} {
		src, err := ParseSource(raw, dir)
		if err != nil {
			t.Fatal(err)
		}
		if src.FileName() != "local.safetensors" {
			t.Fatalf("file name %q", src.FileName())
		}
		dst := filepath.Join(t.TempDir(), "out")
		res, err := f.Fetch(context.Background(), src, Want{}, dst, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Checksum != sha256Of(data) || res.NarHash == "" {
			t.Fatalf("result %+v", res)
		}
		checkFile(t, dst, data)
	}
}

// TestUnknownHostFailsAtOnce: a host that DNS says does not exist is not retried.
func TestUnknownHostFailsAtOnce(t *testing.T) {
	err := &net.DNSError{Err: "no such host", Name: "no-such-host.invalid", IsNotFound: true}
	if !hostNotFound(fmt.Errorf("wrapped: %w", &url.Error{Op: "Get", URL: "https://no-such-host.invalid/x", Err: err})) {
		t.Error("a wrapped not-found DNS error is not recognised")
	}
	if hostNotFound(&net.DNSError{Err: "i/o timeout", Name: "example.com", IsTimeout: true}) {
		t.Error("a DNS timeout is treated as permanent; it should be retried")
	}
}

// Civitai's download endpoint redirects to a storage host (here: the same loopback address on
// another port, a different host:port); the Civitai token must not follow, while the
// endpoint's own requests carry it.
func TestCivitaiTokenNotForwardedToRedirectHost(t *testing.T) {
	data := testData(7000)
	storage := &fileServer{data: data}
	storageSrv := httptest.NewServer(storage)
	defer storageSrv.Close()
	civ := &fileServer{fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
		http.Redirect(w, r, storageSrv.URL+"/file/m.safetensors?sig=s3cr3t", http.StatusTemporaryRedirect)
		return true
	}}
	civSrv := httptest.NewServer(civ)
	defer civSrv.Close()
	f, _ := newTestFetcher(t, Options{CivitaiEndpoint: civSrv.URL, CivitaiToken: "civ_marker", HFToken: "hf_marker"})
	dst := filepath.Join(t.TempDir(), "m.safetensors")
	if _, err := f.Fetch(context.Background(), mustSource(t, civSrv.URL+"/api/download/models/42"), Want{Checksum: sha256Of(data)}, dst, nil); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	if rs := civ.requests(); len(rs) == 0 || rs[0].Auth != "Bearer civ_marker" {
		t.Fatalf("Civitai saw %+v, want its token", rs)
	}
	if rs := storage.requests(); len(rs) == 0 {
		t.Fatal("the storage host saw no request")
	}
	for _, r := range storage.requests() {
		if r.Auth != "" {
			t.Fatalf("a token reached the redirect target: %+v", r)
		}
	}
}
