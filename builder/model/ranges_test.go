package model

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

// rangedOpts are options that make ranged downloads of small test files: 64 KiB pieces.
func rangedOpts(o Options) Options {
	o.pieceSize = 64 << 10
	return o
}

// boundedRange parses a "bytes=a-b" Range header (a piece request); ok is false for anything
// else (no Range, or the open-ended probe "bytes=a-").
func boundedRange(r *http.Request) (a, b int, ok bool) {
	v, found := strings.CutPrefix(r.Header.Get("Range"), "bytes=")
	if !found {
		return 0, 0, false
	}
	x, y, found := strings.Cut(v, "-")
	if !found || y == "" {
		return 0, 0, false
	}
	a, err1 := strconv.Atoi(x)
	b, err2 := strconv.Atoi(y)
	return a, b, err1 == nil && err2 == nil
}

// pieceRequests are the bounded range requests a server saw.
func pieceRequests(reqs []request) int {
	n := 0
	for _, r := range reqs {
		if v, ok := strings.CutPrefix(r.Range, "bytes="); ok && !strings.HasSuffix(v, "-") {
			n++
		}
	}
	return n
}

// enter counts a request in: active rises by one and peak keeps the highest active seen.
func enter(active, peak *atomic.Int32) int32 {
	a := active.Add(1)
	for {
		p := peak.Load()
		if a <= p || peak.CompareAndSwap(p, a) {
			return a
		}
	}
}

// fetchVerified fetches url with data's sha256 expected and fails unless the file, the
// checksum and the NAR hash and size of the result are data's.
func fetchVerified(t *testing.T, f *Fetcher, url string, want Want, data []byte) Result {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "m")
	res, err := f.Fetch(context.Background(), mustSource(t, url), want, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	wantNar, wantNarSize := narOf(t, data)
	if res.Checksum != sha256Of(data) || res.NarHash != wantNar || res.NarSize != wantNarSize {
		t.Fatalf("result %+v, want nar %s (%d bytes)", res, wantNar, wantNarSize)
	}
	return res
}

func narOf(t *testing.T, data []byte) (string, int64) {
	t.Helper()
	ref := filepath.Join(t.TempDir(), "ref")
	if err := os.WriteFile(ref, data, 0o644); err != nil {
		t.Fatal(err)
	}
	h, n, err := nar.Hash(ref)
	if err != nil {
		t.Fatal(err)
	}
	return h, n
}

// TestRangedDownload: a server that serves ranges (net/http's ServeContent) gets the file
// asked for in pieces over several connections at once; the file, its checksum and its NAR
// hash (computed from the buffers in order, never read back) are right.
func TestRangedDownload(t *testing.T) {
	data := testData(3<<20 + 4321)
	var active, peak atomic.Int32
	var concurrent sync.Once
	two := make(chan struct{})
	fs := &fileServer{data: data, fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
		if _, _, ok := boundedRange(r); ok {
			a := enter(&active, &peak)
			defer active.Add(-1)
			if a >= 2 {
				concurrent.Do(func() { close(two) })
			}
			// Hold each piece until two are in flight at once (bounded, so a serial
			// downloader fails the test below instead of hanging it).
			select {
			case <-two:
			case <-time.After(10 * time.Second):
			}
		}
		return false
	}}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	f, warn := newTestFetcher(t, rangedOpts(Options{}))
	fetchVerified(t, f, srv.URL+"/m.safetensors", Want{Checksum: sha256Of(data), Size: int64(len(data))}, data)
	reqs := fs.requests()
	if reqs[0].Range != "bytes=0-" {
		t.Fatalf("first request %q, want the probe bytes=0-", reqs[0].Range)
	}
	if n := pieceRequests(reqs); n < 10 {
		t.Fatalf("only %d piece requests: %+v", n, reqs)
	}
	if peak.Load() < 2 {
		t.Fatal("the pieces were never fetched two at a time")
	}
	if warn.String() != "" {
		t.Fatalf("warnings: %s", warn)
	}
}

// TestRangedDownloadMemoryBound: the pieces held ahead of the hash front never exceed the
// buffer pool. The server holds the first piece back until the downloader asked for the
// last piece the pool allows; no piece past it may be asked for meanwhile.
func TestRangedDownloadMemoryBound(t *testing.T) {
	data := testData(2 << 20)
	const piece, bufs = 64 << 10, 6
	lastAllowed := (bufs - 1) * piece
	release := make(chan struct{})
	var once sync.Once
	var beyond atomic.Int64
	fs := &fileServer{data: data, fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n == 0 {
			// The probe: a proper answer, whose body waits.
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(data)-1, len(data)))
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.WriteHeader(http.StatusPartialContent)
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-time.After(10 * time.Second):
				t.Error("the downloader never asked for the last piece its buffers allow")
			}
			w.Write(data)
			return true
		}
		if a, _, ok := boundedRange(r); ok {
			select {
			case <-release:
			default:
				if a > lastAllowed {
					beyond.Store(int64(a))
				}
				if a == lastAllowed {
					once.Do(func() { close(release) })
				}
			}
		}
		return false
	}}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	o := rangedOpts(Options{})
	o.rangeBuffers = bufs
	f, _ := newTestFetcher(t, o)
	dst := filepath.Join(t.TempDir(), "m")
	if _, err := f.Fetch(context.Background(), mustSource(t, srv.URL+"/m"), Want{Checksum: sha256Of(data)}, dst, nil); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	if b := beyond.Load(); b != 0 {
		t.Logf("%+v", fs.requests())
		t.Fatalf("asked for the piece at %d while the front piece was missing: more than %d buffers ahead", b, bufs)
	}
	if f.pool.made > bufs {
		t.Fatalf("%d buffers made, the pool has %d", f.pool.made, bufs)
	}
}

// hostileCase is a server that misbehaves on piece requests from the third one on.
type hostileCase struct {
	name string
	// piece answers a piece request [a, b] itself and returns true, or leaves it to the
	// honest server.
	piece func(w http.ResponseWriter, r *http.Request, data []byte, a, b int) bool
	// warn is what the warnings must say.
	warn string
}

func TestRangedDownloadHostileServers(t *testing.T) {
	cases := []hostileCase{
		{"200 to a range", func(w http.ResponseWriter, r *http.Request, data []byte, a, b int) bool {
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.WriteHeader(http.StatusOK)
			w.Write(data)
			return true
		}, "answered the range"},
		{"wrong Content-Range", func(w http.ResponseWriter, r *http.Request, data []byte, a, b int) bool {
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a+1, b+1, len(data)))
			w.Header().Set("Content-Length", strconv.Itoa(b-a+1))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[a+1 : b+2])
			return true
		}, "it sent"},
		{"Content-Range past the end", func(w http.ResponseWriter, r *http.Request, data []byte, a, b int) bool {
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, len(data)+5, len(data)))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[a : b+1])
			return true
		}, "bad Content-Range"},
		{"wrong length", func(w http.ResponseWriter, r *http.Request, data []byte, a, b int) bool {
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b, len(data)))
			w.Header().Set("Content-Length", strconv.Itoa(b-a))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[a:b])
			return true
		}, "announced"},
		{"more bytes than the range", func(w http.ResponseWriter, r *http.Request, data []byte, a, b int) bool {
			// No Content-Length (chunked): the body runs past the range.
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b, len(data)))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[a:min(len(data), b+1+1000)])
			w.Write([]byte("trailing garbage"))
			return true
		}, "sent more than"},
		{"no validator", func(w http.ResponseWriter, r *http.Request, data []byte, a, b int) bool {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b, len(data)))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[a : b+1])
			return true
		}, "no validator"},
		{"short body", func(w http.ResponseWriter, r *http.Request, data []byte, a, b int) bool {
			if a%(3<<16) != 0 {
				return false
			}
			// Announce the range, send half, cut the connection: retried from where it stopped.
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b, len(data)))
			w.Header().Set("Content-Length", strconv.Itoa(b-a+1))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[a : a+(b-a)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := testData(1<<20 + 77)
			var short sync.Map
			fs := &fileServer{data: data, fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
				a, b, ok := boundedRange(r)
				if !ok || n < 3 {
					return false
				}
				if c.warn == "" { // short body: once per piece
					if _, seen := short.LoadOrStore(a, true); seen {
						return false
					}
				}
				return c.piece(w, r, data, a, b)
			}}
			srv := httptest.NewServer(fs)
			defer srv.Close()
			f, warn := newTestFetcher(t, rangedOpts(Options{}))
			fetchVerified(t, f, srv.URL+"/m", Want{Checksum: sha256Of(data)}, data)
			if c.warn != "" {
				if !strings.Contains(warn.String(), c.warn) || !strings.Contains(warn.String(), "continuing over one connection") {
					t.Fatalf("warnings %q, want %q and the fallback", warn, c.warn)
				}
				// After the fallback, one stream from the front to the end (besides the probe).
				reqs := fs.requests()
				if streams := len(reqs) - pieceRequests(reqs); streams != 2 {
					t.Fatalf("%d requests to the end, want the probe and the fallback stream: %+v", streams, reqs)
				}
			} else if warn.String() != "" {
				t.Fatalf("warnings: %s", warn)
			}
		})
	}
}

// TestRangedDownloadExtraBytesOnTheWire: a server whose piece answers carry more bytes than
// their Content-Length (the extra bytes would be read as the next answer on that connection)
// still gives the right file.
func TestRangedDownloadExtraBytesOnTheWire(t *testing.T) {
	data := testData(1<<20 + 3)
	// net/http logs each "Unsolicited response received on idle HTTP channel": expected here.
	log.SetOutput(io.Discard)
	defer log.SetOutput(os.Stderr)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					a, b := 0, len(data)-1
					if v, ok := strings.CutPrefix(req.Header.Get("Range"), "bytes="); ok {
						x, y, _ := strings.Cut(v, "-")
						a, _ = strconv.Atoi(x)
						if y != "" {
							b, _ = strconv.Atoi(y)
						}
					}
					fmt.Fprintf(c, "HTTP/1.1 206 Partial Content\r\nETag: \"v1\"\r\nContent-Range: bytes %d-%d/%d\r\nContent-Length: %d\r\n\r\n", a, b, len(data), b-a+1)
					c.Write(data[a : b+1])
					c.Write([]byte("EXTRA BYTES NOT DECLARED"))
				}
			}()
		}
	}()
	f, _ := newTestFetcher(t, rangedOpts(Options{}))
	dst := filepath.Join(t.TempDir(), "m")
	if _, err := f.Fetch(context.Background(), mustSource(t, "http://"+ln.Addr().String()+"/m"), Want{Checksum: sha256Of(data)}, dst, nil); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
}

// TestRangedDownloadRemoteChanges: the file changes at the source in the middle of a ranged
// download (new ETag and content): the download starts again from byte 0 and gives the new
// file whole, never a mix.
func TestRangedDownloadRemoteChanges(t *testing.T) {
	for _, sameSize := range []bool{true, false} {
		t.Run(fmt.Sprintf("same size %v", sameSize), func(t *testing.T) {
			old := testData(1<<20 + 11)
			newer := testData(1<<20 + 12)
			if sameSize {
				newer = append(newer[:0:0], old...)
				for i := range newer {
					newer[i] ^= 0x5a
				}
			}
			var changed atomic.Bool
			fs := &fileServer{fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
				if n == 5 {
					changed.Store(true)
				}
				if changed.Load() {
					w.Header().Set("ETag", `"v2"`)
					serveRange(w, r, newer, "")
				} else {
					serveRange(w, r, old, "")
				}
				return true
			}}
			srv := httptest.NewServer(fs)
			defer srv.Close()
			f, warn := newTestFetcher(t, rangedOpts(Options{}))
			dst := filepath.Join(t.TempDir(), "m")
			res, err := f.Fetch(context.Background(), mustSource(t, srv.URL+"/m"), Want{}, dst, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkFile(t, dst, newer)
			if res.Checksum != sha256Of(newer) {
				t.Fatalf("checksum %s", res.Checksum)
			}
			if !strings.Contains(warn.String(), "changed at the source") {
				t.Fatalf("warnings %q", warn)
			}
		})
	}
}

// TestRangedDownloadEmptyFile: "bytes=0-" of an empty file is unsatisfiable (416); the file
// is then asked for whole.
func TestRangedDownloadEmptyFile(t *testing.T) {
	fs := &fileServer{data: []byte{}}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	f, _ := newTestFetcher(t, rangedOpts(Options{}))
	dst := filepath.Join(t.TempDir(), "empty")
	res, err := f.Fetch(context.Background(), mustSource(t, srv.URL+"/empty"), Want{}, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, nil)
	if res.Checksum != sha256Of(nil) || res.NarHash == "" {
		t.Fatalf("result %+v", res)
	}
}

// TestRangedDownloadCDNGetsNoToken: a Hugging Face resolve URL, and a Civitai download URL,
// redirect to a CDN on another host (another port of loopback: the token table matches
// host:port). The redirect is followed once; every piece is asked of the CDN directly, and
// the token never reaches it.
func TestRangedDownloadCDNGetsNoToken(t *testing.T) {
	for _, c := range []struct{ name, source, wantAuth string }{
		{"huggingface", "hf://owner/repo/m.bin", "Bearer hf_marker_token"},
		{"civitai", "civitai://42", "Bearer civ_marker_token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := testData(1<<20 + 5)
			cdn := &fileServer{data: data}
			cdnSrv := httptest.NewServer(cdn)
			defer cdnSrv.Close()
			hub := &fileServer{fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
				http.Redirect(w, r, cdnSrv.URL+"/blob/abc?X-Amz-Signature=s3cr3t", http.StatusFound)
				return true
			}}
			hubSrv := httptest.NewServer(hub)
			defer hubSrv.Close()
			o := Options{HFToken: "hf_marker_token", CivitaiToken: "civ_marker_token"}
			if c.name == "huggingface" {
				o.HFEndpoint = hubSrv.URL
			} else {
				o.CivitaiEndpoint = hubSrv.URL
			}
			f, _ := newTestFetcher(t, rangedOpts(o))
			dst := filepath.Join(t.TempDir(), "m.bin")
			if _, err := f.Fetch(context.Background(), mustSource(t, c.source), Want{Checksum: sha256Of(data)}, dst, nil); err != nil {
				t.Fatal(err)
			}
			checkFile(t, dst, data)
			if h := hub.requests(); len(h) != 1 || h[0].Auth != c.wantAuth {
				t.Fatalf("hub saw %+v, want one request with the token", h)
			}
			reqs := cdn.requests()
			if pieceRequests(reqs) < 10 {
				t.Fatalf("cdn saw %d piece requests", pieceRequests(reqs))
			}
			for _, r := range reqs {
				if r.Auth != "" {
					t.Fatalf("the token reached the CDN: %+v", r)
				}
				if r.Path != "/blob/abc" || !strings.Contains(r.Query, "X-Amz-Signature") {
					t.Fatalf("cdn request %+v, want the redirect target", r)
				}
			}
		})
	}
}

// TestConnectionBudgetShared: three downloads at once through one Fetcher never hold more
// connections than its budget, whatever each may use alone.
func TestConnectionBudgetShared(t *testing.T) {
	const budget = 5
	var active, peak atomic.Int32
	files := map[string][]byte{}
	for i := range 3 {
		files[fmt.Sprintf("/m%d", i)] = testData(1<<20 + 100*i)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		enter(&active, &peak)
		defer active.Add(-1)
		serveRange(w, r, files[r.URL.Path], "")
	}))
	defer srv.Close()
	f, _ := newTestFetcher(t, rangedOpts(Options{Connections: 4, ConnectionBudget: budget}))
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for name, data := range files {
		wg.Go(func() {
			dst := filepath.Join(t.TempDir(), "out")
			if _, err := f.Fetch(context.Background(), mustSource(t, srv.URL+name), Want{Checksum: sha256Of(data)}, dst, nil); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if p := peak.Load(); p > 3+budget {
		t.Fatalf("%d requests at once, want at most one per download and %d extra", p, budget)
	}
}

// TestOneConnectionDownloadsRunTogether: with one connection per file, downloads still run
// side by side (a download's first connection is never waited for in the budget): four
// downloads are all answered only once all four asked.
func TestOneConnectionDownloadsRunTogether(t *testing.T) {
	const n = 4
	data := testData(1000)
	var arrived atomic.Int32
	all := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == n {
			close(all)
		}
		select {
		case <-all:
		case <-r.Context().Done():
			return
		}
		serveRange(w, r, data, "")
	}))
	defer srv.Close()
	f, _ := newTestFetcher(t, rangedOpts(Options{Connections: 1}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			dst := filepath.Join(t.TempDir(), fmt.Sprintf("m%d", i))
			// One URL each: downloads of one URL share a partial and wait for each other.
			if _, err := f.Fetch(ctx, mustSource(t, fmt.Sprintf("%s/m%d", srv.URL, i)), Want{Checksum: sha256Of(data)}, dst, nil); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("%v (%d of %d downloads reached the server)", err, arrived.Load(), n)
	}
}

// TestConnectionsOption: one connection means no range probe; a cap out of range is refused.
func TestConnectionsOption(t *testing.T) {
	data := testData(1 << 20)
	fs := &fileServer{data: data}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	f, _ := newTestFetcher(t, rangedOpts(Options{Connections: 1}))
	if _, err := f.Fetch(context.Background(), mustSource(t, srv.URL+"/m"), Want{}, filepath.Join(t.TempDir(), "m"), nil); err != nil {
		t.Fatal(err)
	}
	if reqs := fs.requests(); len(reqs) != 1 || reqs[0].Range != "" {
		t.Fatalf("requests %+v, want one plain GET", reqs)
	}
	for _, n := range []int{-1, MaxConnections + 1} {
		if _, err := New(Options{Connections: n}); err == nil || !strings.Contains(err.Error(), "download connections") {
			t.Fatalf("Connections %d: %v", n, err)
		}
	}
}

// TestTuner: the connection count doubles while the throughput grows by more than a tenth,
// and settles on the best count when a step brings nothing (or loses).
func TestTuner(t *testing.T) {
	t0 := time.Unix(0, 0)
	tn := tuner{cap: 16, lastT: t0}
	var recv int64
	n := 4
	tick := func(rate float64) int {
		t0 = t0.Add(time.Second)
		recv += int64(rate)
		n = tn.step(t0, recv, n)
		return n
	}
	steps := []struct {
		rate float64
		want int
	}{
		{100, 4},  // warm-up tick: not measured
		{100, 8},  // first measurement at 4: grow
		{150, 8},  // warm-up at 8
		{200, 16}, // doubled: grow to the cap
		{200, 16}, // warm-up at 16
		{150, 8},  // lost: back to the best count, settled
		{1000, 8}, // settled
	}
	for i, s := range steps {
		if got := tick(s.rate); got != s.want {
			t.Fatalf("step %d (rate %v): %d connections, want %d", i, s.rate, got, s.want)
		}
	}
	capped := tuner{cap: 4, lastT: time.Unix(0, 0)}
	if n := capped.step(time.Unix(1, 0), 10, 4); n != 4 {
		t.Fatal(n)
	}
	if n := capped.step(time.Unix(2, 0), 20, 4); n != 4 || !capped.settled {
		t.Fatalf("at the cap: %d, settled %v", n, capped.settled)
	}
}

// TestResumeRemoteChanged: a partial left by an interrupted download of one file; the source
// now serves another file of the same size under another ETag, and answers the resume's
// range even though If-Range names the old ETag (as a careless server does). The new
// validator restarts the download from byte 0: the result is the new file whole. The same
// when the first answer had no validator at all (nothing proves the file is the same).
func TestResumeRemoteChanged(t *testing.T) {
	for _, first := range []string{`"v1"`, ""} {
		t.Run("first ETag "+first, func(t *testing.T) { testResumeRemoteChanged(t, first) })
	}
}

func testResumeRemoteChanged(t *testing.T, firstETag string) {
	old := testData(1<<20 + 9)
	newer := make([]byte, len(old))
	for i := range old {
		newer[i] = old[i] ^ 0xa5
	}
	broken := true
	fs := &fileServer{fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
		if broken {
			w.Header()["Etag"] = nil // none unless firstETag
			if firstETag != "" {
				w.Header().Set("ETag", firstETag)
			}
			dropAfter(w, r, old, 300<<10)
			return true
		}
		// Ignores If-Range: always the range asked for, of the new file.
		r.Header.Del("If-Range")
		w.Header().Set("ETag", `"v2"`)
		serveRange(w, r, newer, "")
		return true
	}}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	partial := filepath.Join(t.TempDir(), "partial")
	f, _ := newTestFetcher(t, rangedOpts(Options{PartialDir: partial, CheckpointEvery: 64 << 10, Retry: Retry{Attempts: 1, Base: time.Millisecond}}))
	src := mustSource(t, srv.URL+"/m")
	dst := filepath.Join(t.TempDir(), "m")
	if _, err := f.Fetch(context.Background(), src, Want{}, dst, nil); err == nil {
		t.Fatal("the first fetch should fail")
	}
	broken = false
	f2, warn := newTestFetcher(t, rangedOpts(Options{PartialDir: partial}))
	res, err := f2.Fetch(context.Background(), src, Want{}, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, newer)
	if res.Checksum != sha256Of(newer) {
		t.Fatalf("checksum %s", res.Checksum)
	}
	if !strings.Contains(warn.String(), "resuming") || !strings.Contains(warn.String(), "changed at the source") {
		t.Fatalf("warnings %q", warn)
	}
}

// TestRangedDownloadProbeAnswered200: a server that answers the probe "bytes=0-" with a 200
// and "Accept-Ranges: bytes" (the range covers the whole file) is tried with pieces: when it
// serves them, the file comes in ranges; when it does not (a 200 to the first piece), the
// download goes on over one connection and the file is still right.
func TestRangedDownloadProbeAnswered200(t *testing.T) {
	for _, honours := range []bool{true, false} {
		t.Run(fmt.Sprintf("honours ranges %v", honours), func(t *testing.T) {
			data := testData(1<<20 + 21)
			fs := &fileServer{data: data, fault: func(w http.ResponseWriter, r *http.Request, n int) bool {
				_, _, piece := boundedRange(r)
				if piece && honours {
					return false
				}
				w.Header().Set("Accept-Ranges", "bytes")
				w.Header().Set("ETag", `"v1"`)
				w.Header().Set("Content-Length", strconv.Itoa(len(data)))
				w.WriteHeader(http.StatusOK)
				w.Write(data)
				return true
			}}
			srv := httptest.NewServer(fs)
			defer srv.Close()
			f, warn := newTestFetcher(t, rangedOpts(Options{}))
			fetchVerified(t, f, srv.URL+"/m", Want{Checksum: sha256Of(data)}, data)
			n := pieceRequests(fs.requests())
			if honours && (n < 10 || warn.String() != "") {
				t.Fatalf("%d piece requests, warnings %q", n, warn)
			}
			if !honours && !strings.Contains(warn.String(), "continuing over one connection") {
				t.Fatalf("warnings %q", warn)
			}
		})
	}
}
