package model

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"

	"github.com/runpod-comfy/runpod-comfy/internal/progress"
	"github.com/runpod-comfy/runpod-comfy/internal/rawfile"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// Want is what a download must match. Zero fields are unknown: a download without a checksum
// is hashed with sha256 and trusted on first use.
type Want struct {
	Checksum Checksum
	Size     int64
}

// Result describes a finished download.
type Result struct {
	// Checksum is the file's hash in Want's algorithm (sha256 when Want had none).
	Checksum Checksum
	Size     int64
	// NarHash is "sha256:<nix32>" of the file as a single-file NAR (package store/nar),
	// computed in the same pass; empty when the size was not announced before the body.
	NarHash string
	NarSize int64
}

// MismatchError is a download whose bytes do not match the expected checksum. The bytes are
// discarded: they never enter the store. In a build the scheduler's error names the model and
// its spec line around it; callers outside a build may fill Model and Pos.
type MismatchError struct {
	Model    string    // the model's target, when set by the caller
	Pos      specs.Pos // the spec line, when set by the caller
	Source   string    // redacted
	Expected string
	Actual   string
}

func (e *MismatchError) Error() string {
	var b strings.Builder
	if e.Model != "" {
		fmt.Fprintf(&b, "model %s", e.Model)
		if p := e.Pos.String(); p != "" {
			fmt.Fprintf(&b, " (%s)", p)
		}
		b.WriteString(": ")
	} else if p := e.Pos.String(); p != "" {
		b.WriteString(p + ": ")
	}
	fmt.Fprintf(&b, "checksum mismatch for %s: expected %s, got %s; the downloaded bytes were discarded", e.Source, e.Expected, e.Actual)
	return b.String()
}

// retryable marks an error worth another try; after is the server's Retry-After.
type retryable struct {
	err   error
	after time.Duration
}

func (e *retryable) Error() string { return e.err.Error() }
func (e *retryable) Unwrap() error { return e.err }

// errRestart asks the download loop to drop the partial and start from byte 0 at once (the
// server refused the range, or the file changed).
var errRestart = errors.New("restart from byte 0")

// opened is one response body: the bytes of the source from start on.
type opened struct {
	body      io.ReadCloser
	start     int64
	total     int64 // the whole file's size, -1 when unknown
	validator string
	host      string // for hints
	// ranged is set when the body is a range the server vouched for (HTTP 206 with a
	// Content-Range, or a ranged read of GCS): then end is the end of that range (exclusive)
	// and length the body's announced length (-1 when not announced).
	ranged bool
	end    int64
	length int64
	// acceptRanges: the server said "Accept-Ranges: bytes".
	acceptRanges bool
	// again opens further ranges of the same file: for HTTP, against the URL the redirects
	// led to (a CDN), so that they are followed once.
	again opener
}

// span is the part of a source to open: from start to end (exclusive; -1 means to the end of
// the file). probe asks an HTTP server for the range even from byte 0 ("bytes=0-"), so that
// its answer tells whether it serves ranges.
type span struct {
	start, end int64
	probe      bool
}

// opener opens a span of a source; validator (from an earlier response) lets the server tell
// whether the file is still the same.
type opener func(ctx context.Context, sp span, validator string) (*opened, error)

// Fetch downloads src to dst (which must not exist), hashing in the same pass, resuming a
// partial download left in Options.PartialDir, retrying as Options.Retry says, and reporting
// bytes to task (which may be nil). The file is checked against want before it is renamed to
// dst: a mismatch removes the bytes and returns a *MismatchError. dst is not fsynced: the store
// does that when it registers the object (other callers must, before relying on it).
func (f *Fetcher) Fetch(ctx context.Context, src Source, want Want, dst string, task *progress.Task) (Result, error) {
	src = f.classify(src)
	open, err := f.opener(src)
	if err != nil {
		return Result{}, err
	}
	algo := want.Checksum.Algo
	if algo == "" {
		algo = SHA256
	}
	dir := f.opts.PartialDir
	if dir == "" {
		dir = filepath.Dir(dst)
	}
	red := src.Redacted()
	// Every download has its own first connection (the download-jobs limit bounds how many
	// run); only the extra connections of ranged downloads come from the budget.
	for try := 0; ; try++ {
		p, err := openPartial(ctx, dir, partialKey(red, want.Checksum, algo), red, algo, f.opts.CheckpointEvery)
		if err != nil {
			return Result{}, err
		}
		if p.resumed {
			f.warnf("%s: resuming the download at byte %d", red, p.offset)
		}
		res, err := f.download(ctx, p, open, want, red, task)
		if err != nil {
			var mm *MismatchError
			if errors.As(err, &mm) && p.resumed && try == 0 {
				// The checkpointed bytes may have been lost (power cut): try once from zero.
				p.discard()
				f.warnf("%s: the resumed download did not match (%s); downloading again from the start", red, mm.Actual)
				continue
			}
			if errors.As(err, &mm) || p.broken || p.offset == 0 {
				p.discard()
			} else {
				p.save()
				p.close()
			}
			return Result{}, err
		}
		if err := moveFile(p.path(".part"), dst); err != nil {
			p.close()
			return Result{}, fmt.Errorf("moving download into place: %w", err)
		}
		p.discard() // the .part is gone already; removes the checkpoint and the lock
		return res, nil
	}
}

// moveFile renames src to dst, copying (and fsyncing the copy) when they are on different
// filesystems.
func moveFile(src, dst string) error {
	err := os.Rename(src, dst)
	if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	if err := rawfile.CopyFile(dst, src, 0o644); err != nil {
		return err
	}
	if err := syncFile(dst, 0o644); err != nil {
		os.Remove(dst)
		return err
	}
	return os.Remove(src)
}

// download runs tries until the partial holds the whole file, then checks it. When the
// Fetcher may use more than one connection per file, the first request of each try asks for
// a range ("bytes=<offset>-"): a server that answers it with a 206, a matching Content-Range,
// a known size and a strong validator gets the rest of the file asked for in pieces over
// several connections (receiveRanges); any other answer is read as one stream.
func (f *Fetcher) download(ctx context.Context, p *partial, open opener, want Want, red string, task *progress.Task) (Result, error) {
	host := ""
	fails := 0
	ranges := f.perFile > 1
	for {
		o, err := open(ctx, span{start: p.offset, end: -1, probe: ranges}, p.validator)
		if err == nil {
			host = o.host
			if err = f.accept(p, o, want, red, task); err == nil {
				if ranges && f.parallelOK(p, o) {
					err = f.receiveRanges(ctx, p, o, red, task)
				} else {
					err = f.receive(ctx, p, o, want, red, task)
				}
			}
			o.body.Close()
			if err == nil {
				break
			}
		}
		var nr *noRangesError
		if errors.As(err, &nr) && !p.broken {
			switch {
			case ranges:
				f.warnf("%s: %v; continuing over one connection from byte %d", red, err, p.offset)
				ranges = false
				if err := p.save(); err != nil {
					return Result{}, err
				}
				continue
			case p.offset > 0:
				f.warnf("%s: %v; starting again from byte 0 without ranges", red, err)
				err = errRestart
			default:
				return Result{}, fmt.Errorf("downloading %s: %w", red, err)
			}
		}
		if errors.Is(err, errRestart) {
			var ce *changedError
			if errors.As(err, &ce) {
				f.warnf("%s: %v; starting again from byte 0", red, ce)
			}
			if err := p.reset(); err != nil {
				return Result{}, err
			}
			fails++
			if fails >= f.retry.Attempts {
				return Result{}, fmt.Errorf("downloading %s: the server keeps refusing to resume, or the file keeps changing", red)
			}
			continue
		}
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		var re *retryable
		if !errors.As(err, &re) || p.broken {
			return Result{}, err
		}
		if o != nil && p.offset > o.start {
			fails = 0 // progress was made
		}
		fails++
		if fails >= f.retry.Attempts {
			return Result{}, fmt.Errorf("downloading %s: giving up after %d tries without progress: %w", red, fails, err)
		}
		if err := p.save(); err != nil {
			return Result{}, err
		}
		d := f.retry.delay(fails-1, re.after)
		f.warnf("%s: %v; retrying in %s from byte %d", red, err, d.Round(time.Millisecond), p.offset)
		if err := sleep(ctx, d); err != nil {
			return Result{}, err
		}
	}
	size := p.offset
	if want.Size > 0 && size != want.Size {
		return Result{}, f.sizeError(red, host, size, want.Size, "received")
	}
	res := Result{Checksum: Checksum{Algo: p.algo, Hex: fmt.Sprintf("%x", p.content.Sum(nil))}, Size: size}
	if p.nar != nil && p.total == size {
		var err error
		if res.NarHash, res.NarSize, err = p.nar.Finish(); err != nil {
			return Result{}, err
		}
	}
	if !want.Checksum.IsZero() && res.Checksum != want.Checksum {
		return Result{}, &MismatchError{Source: red, Expected: want.Checksum.String(), Actual: res.Checksum.String()}
	}
	return res, nil
}

// accept checks where a response starts against the partial: a body from byte 0 where a
// resume was asked for restarts the partial, a changed size or validator restarts the
// download, and a download from byte 0 records the announced size and validator.
func (f *Fetcher) accept(p *partial, o *opened, want Want, red string, task *progress.Task) error {
	if o.start != p.offset {
		if o.start != 0 {
			return fmt.Errorf("downloading %s: asked for byte %d, the server sent from byte %d", red, p.offset, o.start)
		}
		if p.offset > 0 {
			f.warnf("%s: the server does not resume (no Range support or the file changed); starting again from byte 0", red)
			if err := p.reset(); err != nil {
				return err
			}
		}
	}
	if p.offset > 0 && o.total >= 0 && p.total >= 0 && o.total != p.total {
		f.warnf("%s: the file's size changed from %d to %d bytes; starting again from byte 0", red, p.total, o.total)
		return errRestart
	}
	if p.offset > 0 && o.validator != "" && o.validator != p.validator {
		// A validator where the partial has none proves nothing either way: start over
		// rather than join two files.
		was := p.validator
		if was == "" {
			was = "none"
		}
		f.warnf("%s: the file changed at the source (validator %s, was %s); starting again from byte 0", red, o.validator, was)
		return errRestart
	}
	if p.offset == 0 {
		if want.Size > 0 && o.total >= 0 && o.total != want.Size {
			return f.sizeError(red, o.host, o.total, want.Size, "announced")
		}
		total := o.total
		if total < 0 && want.Size > 0 {
			total = want.Size // checked against the bytes received at the end
		}
		p.begin(total, o.validator)
	}
	if task != nil {
		task.SetBytes(p.offset, p.progressTotal(want))
	}
	return nil
}

// receive appends one response body to the partial.
func (f *Fetcher) receive(ctx context.Context, p *partial, o *opened, want Want, red string, task *progress.Task) error {
	var onBytes func(int64)
	if task != nil {
		total := p.progressTotal(want)
		onBytes = func(n int64) { task.SetBytes(n, total) }
	}
	_, err := p.copyFrom(ctx, o.body, onBytes)
	if err != nil {
		if ctx.Err() != nil || p.broken {
			return err
		}
		return &retryable{err: fmt.Errorf("connection lost after byte %d: %w", p.offset, err)}
	}
	if p.total >= 0 && p.offset < p.total {
		return &retryable{err: fmt.Errorf("body ended at byte %d of %d", p.offset, p.total)}
	}
	return nil
}

func (f *Fetcher) sizeError(red, host string, got, want int64, verb string) error {
	return fmt.Errorf("downloading %s: the server %s %d bytes but %d were expected: the file changed at the source, or the server sent an error page instead of the model (%s)", red, verb, got, want, f.authHint(host))
}

// opener returns how to open a classified source.
func (f *Fetcher) opener(src Source) (opener, error) {
	switch src.Kind {
	case KindHTTP:
		return f.httpOpener(src.URL.String()), nil
	case KindHF:
		return f.httpOpener(f.hfResolveURL(src)), nil
	case KindCivitai:
		return f.httpOpener(f.civitaiDownloadURL(src)), nil
	case KindFile:
		return fileOpener(src.Path), nil
	case KindGCS:
		if f.opts.GCS == nil {
			return nil, fmt.Errorf("model source %s: no Google Cloud Storage client (credentials are read from GOOGLE_APPLICATION_CREDENTIALS or the metadata server)", src.Redacted())
		}
		return f.gcsOpener(src.Bucket, src.Object), nil
	}
	return nil, fmt.Errorf("model source %s: unknown kind %q", src.Redacted(), src.Kind)
}

func (f *Fetcher) httpOpener(rawURL string) opener {
	red := Redact(rawURL)
	var open opener
	open = func(ctx context.Context, sp span, validator string) (*opened, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
		if err != nil {
			return nil, fmt.Errorf("downloading %s: %w", red, err)
		}
		firstHost := req.URL.Host
		if sp.start > 0 || sp.end >= 0 || sp.probe {
			if sp.end >= 0 {
				req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", sp.start, sp.end-1))
			} else {
				req.Header.Set("Range", fmt.Sprintf("bytes=%d-", sp.start))
			}
			if validator != "" {
				req.Header.Set("If-Range", validator)
			}
		}
		resp, err := f.client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if hostNotFound(err) {
				return nil, fmt.Errorf("downloading %s: %w", red, redactErr(err))
			}
			return nil, &retryable{err: fmt.Errorf("downloading %s: %w", red, redactErr(err))}
		}
		switch sc := resp.StatusCode; {
		case sc == http.StatusOK || sc == http.StatusPartialContent:
			if isHTML(resp.Header.Get("Content-Type")) {
				resp.Body.Close()
				return nil, fmt.Errorf("downloading %s: the server sent an HTML page (Content-Type %s) instead of the model file, probably a login or error page: %s", red, resp.Header.Get("Content-Type"), f.authHint(firstHost))
			}
			o := &opened{body: resp.Body, total: resp.ContentLength, validator: validatorOf(resp.Header), host: firstHost, length: resp.ContentLength,
				acceptRanges: strings.EqualFold(strings.TrimSpace(resp.Header.Get("Accept-Ranges")), "bytes")}
			if sc == http.StatusPartialContent {
				start, end, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
				if !ok {
					resp.Body.Close()
					return nil, &noRangesError{fmt.Sprintf("bad Content-Range %q", resp.Header.Get("Content-Range"))}
				}
				o.start, o.end, o.total, o.ranged = start, end, total, true
			}
			// Further ranges go straight to where the redirects led (a CDN): its host is
			// matched against the token table like any other, so a token stays home.
			o.again = open
			if final := resp.Request.URL.String(); final != rawURL {
				o.again = f.httpOpener(final)
			}
			return o, nil
		case sc == http.StatusRequestedRangeNotSatisfiable:
			resp.Body.Close()
			if sp.start == 0 && sp.end < 0 && sp.probe {
				// "bytes=0-" of an empty file is unsatisfiable: ask for it whole.
				return open(ctx, span{end: -1}, validator)
			}
			return nil, errRestart
		case sc == http.StatusRequestTimeout || sc == http.StatusTooManyRequests || sc >= 500:
			resp.Body.Close()
			return nil, &retryable{err: fmt.Errorf("downloading %s: %s", red, resp.Status), after: retryAfter(resp.Header.Get("Retry-After"))}
		case sc == http.StatusUnauthorized || sc == http.StatusForbidden:
			resp.Body.Close()
			return nil, fmt.Errorf("downloading %s: %s: %s", red, resp.Status, f.authHint(firstHost))
		case sc == http.StatusNotFound:
			resp.Body.Close()
			return nil, fmt.Errorf("downloading %s: %s: no such file at the source (check the URL, the repository path and the revision)", red, resp.Status)
		default:
			resp.Body.Close()
			return nil, fmt.Errorf("downloading %s: unexpected %s", red, resp.Status)
		}
	}
	return open
}

func isHTML(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "text/html" || mt == "application/xhtml+xml")
}

// validatorOf picks the value for If-Range: a strong ETag, else Last-Modified.
func validatorOf(h http.Header) string {
	if et := h.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		return et
	}
	return h.Get("Last-Modified")
}

// parseContentRange reads "bytes <first>-<last>/<total or *>" into the range [start, end)
// and the total (-1 for "*"). It refuses what no honest server sends: a last byte before
// the first, or at or past the total.
func parseContentRange(s string) (start, end, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || last < start {
		return 0, 0, 0, false
	}
	total = -1
	if tot != "*" {
		var err error
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= last {
			return 0, 0, 0, false
		}
	}
	return start, last + 1, total, true
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// redactErr removes credentials from the URL an *url.Error carries.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: Redact(ue.URL), Err: ue.Err}
	}
	return err
}

func fileOpener(path string) opener {
	var open opener
	open = func(ctx context.Context, sp span, validator string) (*opened, error) {
		fh, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("reading model file: %w", err)
		}
		fi, err := fh.Stat()
		if err != nil {
			fh.Close()
			return nil, fmt.Errorf("reading model file: %w", err)
		}
		if !fi.Mode().IsRegular() {
			fh.Close()
			return nil, fmt.Errorf("reading model file %s: not a regular file", path)
		}
		v := fmt.Sprintf("%d-%d", fi.Size(), fi.ModTime().UnixNano())
		off := sp.start
		if off > 0 && validator == v && off <= fi.Size() {
			if _, err := fh.Seek(off, io.SeekStart); err != nil {
				fh.Close()
				return nil, fmt.Errorf("reading model file: %w", err)
			}
		} else {
			off = 0
		}
		// A local file is read as one stream: parallel reads would not make it faster.
		return &opened{body: fh, start: off, total: fi.Size(), validator: v, length: -1, again: open}, nil
	}
	return open
}

func (f *Fetcher) gcsOpener(bucket, object string) opener {
	red := "gs://" + bucket + "/" + object
	var open opener
	open = func(ctx context.Context, sp span, validator string) (*opened, error) {
		obj := f.opts.GCS.Bucket(bucket).Object(object)
		gen, err := strconv.ParseInt(validator, 10, 64)
		if err == nil && (sp.start > 0 || sp.end >= 0) {
			obj = obj.Generation(gen)
		}
		length := int64(-1)
		if sp.end >= 0 {
			length = sp.end - sp.start
		}
		r, err := obj.NewRangeReader(ctx, sp.start, length)
		if err != nil {
			if validator != "" && errors.Is(err, storage.ErrObjectNotExist) {
				// The generation read so far is gone: the object was replaced.
				return nil, errRestart
			}
			return nil, gcsError(ctx, red, err)
		}
		o := &opened{body: r, start: r.Attrs.StartOffset, total: r.Attrs.Size, validator: strconv.FormatInt(r.Attrs.Generation, 10),
			host: "storage.googleapis.com", length: r.Remain(), again: open}
		if o.total >= 0 && r.Remain() >= 0 {
			// The client library checks the server's Content-Range against what it asked for.
			o.ranged, o.end = true, o.start+r.Remain()
		}
		return o, nil
	}
	return open
}

func gcsError(ctx context.Context, red string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, storage.ErrObjectNotExist) || errors.Is(err, storage.ErrBucketNotExist) {
		return fmt.Errorf("reading %s: no such object", red)
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		switch {
		case ge.Code == 401 || ge.Code == 403:
			return fmt.Errorf("reading %s: %d: the credentials (GOOGLE_APPLICATION_CREDENTIALS or the metadata server) do not allow reading this object", red, ge.Code)
		case ge.Code == 408 || ge.Code == 429 || ge.Code >= 500:
			return &retryable{err: fmt.Errorf("reading %s: %w", red, err)}
		}
		return fmt.Errorf("reading %s: %w", red, err)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &retryable{err: fmt.Errorf("reading %s: %w", red, err)}
	}
	return fmt.Errorf("reading %s: %w", red, err)
}

// hostNotFound reports whether err is a DNS answer that the host does not exist: no retry
// will change it (a wrong host name, or no network), so it fails at once.
func hostNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}
