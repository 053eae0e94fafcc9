package worker

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"time"

	"github.com/runpod-comfy/runpod-comfy/internal/netguard"
)

// SDKVersion is the RunPod Python SDK release whose wire behaviour this package mirrors. It is
// sent as runpod_version on pings and in exception bodies, and in the User-Agent.
const SDKVersion = "1.12.0"

// DefaultUserAgent is the User-Agent sent when Config.UserAgent is empty: the SDK's shape,
// naming Go as the language.
func DefaultUserAgent() string {
	arch := runtime.GOARCH
	switch arch {
	case "amd64":
		arch = "x86_64"
	case "arm64":
		arch = "aarch64"
	}
	osName := runtime.GOOS
	if osName == "linux" {
		osName = "Linux"
	}
	return fmt.Sprintf("RunPod-Python-SDK/%s (%s; %s) Language/Go %s runpod-comfy", SDKVersion, osName, arch, runtime.Version())
}

// expandTemplate substitutes the worker id for $RUNPOD_POD_ID and id for $ID in a URL template
// (reference section 3). $RUNPOD_POD_ID does not contain "$ID", so the order does not matter.
func expandTemplate(tmpl, workerID, id string) string {
	s := strings.ReplaceAll(tmpl, "$RUNPOD_POD_ID", workerID)
	return strings.ReplaceAll(s, "$ID", id)
}

// appendQuery appends raw query text to u with "?" or "&" as needed, keeping the template's
// own query as it is.
func appendQuery(u, query string) string {
	if query == "" {
		return u
	}
	switch {
	case !strings.Contains(u, "?"):
		return u + "?" + query
	case strings.HasSuffix(u, "?") || strings.HasSuffix(u, "&"):
		return u + query
	default:
		return u + "&" + query
	}
}

// stopTemplate derives the job-stop template from the job-take template, or "" when the
// template has no /job-take/ (the feature is off then).
func stopTemplate(getJob string) string {
	if !strings.Contains(getJob, "/job-take/") {
		return ""
	}
	return strings.Replace(getJob, "/job-take/", "/job-stop/", 1)
}

// httpStatusError is a non-2xx answer from the platform.
type httpStatusError struct {
	Method, URL string
	Status      int
	Body        string
}

func (e *httpStatusError) Error() string {
	msg := fmt.Sprintf("%s %s: %d %s", e.Method, netguard.RedactURL(e.URL), e.Status, http.StatusText(e.Status))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// retryable reports whether a failed post may be retried: network errors and 5xx, not 4xx.
func retryable(err error) bool {
	var se *httpStatusError
	if errors.As(err, &se) {
		return se.Status >= 500
	}
	return err != nil
}

// client wraps the one http.Client of a worker and adds the SDK's headers to every call.
type client struct {
	http      *http.Client
	apiKey    string
	userAgent string
}

// get sends a GET with the SDK's GET headers; the caller closes the response body.
func (c *client) get(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	c.headers(req)
	req.Header.Set("Content-Type", "application/json")
	return c.http.Do(req)
}

// postJSON sends body as the SDK does for result, progress and stream posts: a JSON body under
// a form content type, with charset and X-Request-ID headers. It returns an *httpStatusError
// on a non-2xx answer.
func (c *client) postJSON(ctx context.Context, u, jobID string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	c.headers(req)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("charset", "utf-8")
	req.Header.Set("X-Request-ID", jobID)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := readBody(resp, 4096)
	if resp.StatusCode/100 != 2 {
		return &httpStatusError{Method: http.MethodPost, URL: u, Status: resp.StatusCode, Body: strings.TrimSpace(string(data))}
	}
	return nil
}

func (c *client) headers(req *http.Request) {
	if c.apiKey != "" {
		req.Header.Set("Authorization", c.apiKey)
	}
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept-Encoding", "gzip, deflate")
}

// readBody reads at most limit bytes of a response body (limit <= 0: no limit), undoing the
// gzip or deflate encoding that Accept-Encoding allows (Go decodes it only when it sent the
// header itself).
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	var r io.Reader = resp.Body
	switch strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))) {
	case "gzip":
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("reading gzip body: %w", err)
		}
		defer zr.Close()
		r = zr
	case "deflate":
		zr, err := zlib.NewReader(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("reading deflate body: %w", err)
		}
		defer zr.Close()
		r = zr
	}
	if limit > 0 {
		r = io.LimitReader(r, limit)
	}
	return io.ReadAll(r)
}

// marshalBody encodes v as the SDK does: UTF-8 JSON, non-ASCII and HTML characters left as they
// are, no trailing newline.
func marshalBody(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// isJSONContentType reports whether a Content-Type names JSON.
func isJSONContentType(ct string) bool {
	ct = strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	return ct == "application/json"
}

// pingQuery is the heartbeat query: job_id (comma-joined, encoded; omitted when none) and
// runpod_version.
func pingQuery(ids []string) string {
	q := ""
	if len(ids) > 0 {
		q = "job_id=" + url.QueryEscape(strings.Join(ids, ",")) + "&"
	}
	return q + "runpod_version=" + url.QueryEscape(SDKVersion)
}

// sleepCtx sleeps for d or until ctx is done; it reports whether the full sleep happened.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
