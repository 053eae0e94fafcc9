package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/runpod-comfy/runpod-comfy/internal/semver"
)

// DefaultURL is the Comfy Registry's API.
const DefaultURL = "https://api.comfy.org"

// Statuses of a NodeVersion, as the registry spells them.
const (
	StatusActive  = "NodeVersionStatusActive"
	StatusPending = "NodeVersionStatusPending"
	StatusFlagged = "NodeVersionStatusFlagged"
	StatusDeleted = "NodeVersionStatusDeleted"
	StatusBanned  = "NodeVersionStatusBanned"
)

// maxJSON bounds one API answer (a node's version list holds every changelog).
const maxJSON = 16 << 20

// NodeVersion is one published version of a node, as the registry's API returns it (the
// fields this package reads).
type NodeVersion struct {
	ID           string   `json:"id"`
	NodeID       string   `json:"node_id"`
	Version      string   `json:"version"`
	DownloadURL  string   `json:"downloadUrl"`
	Status       string   `json:"status"`
	StatusReason string   `json:"status_reason"`
	Deprecated   bool     `json:"deprecated"`
	Dependencies []string `json:"dependencies"`
	CreatedAt    string   `json:"createdAt"`
}

// Client reads the registry's API.
type Client struct {
	base string
	http *http.Client
}

// NewClient returns a client of the registry at baseURL ("" = DefaultURL): https, or plain
// http on a loopback host (a test or local mirror). The client sends no credentials.
func NewClient(baseURL string) (*Client, error) {
	if baseURL == "" {
		baseURL = DefaultURL
	}
	if err := checkURL(baseURL); err != nil {
		return nil, fmt.Errorf("registry URL: %w", err)
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), http: newHTTPClient(time.Minute)}, nil
}

// BaseURL is the registry's base URL.
func (c *Client) BaseURL() string { return c.base }

// newHTTPClient is a client that never carries credentials (no cookie jar, no headers of the
// caller's) and refuses to be redirected off https (or off loopback for http).
func newHTTPClient(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = time.Minute
	return &http.Client{
		Transport: t,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("more than 10 redirects")
			}
			if err := checkURL(req.URL.String()); err != nil {
				return fmt.Errorf("redirect refused: %w", err)
			}
			req.Header.Del("Authorization")
			req.Header.Del("Cookie")
			return nil
		},
	}
}

// checkURL accepts https URLs and http ones on loopback, without user info.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q does not parse", redact(raw))
	}
	if u.User != nil {
		return fmt.Errorf("%q carries credentials: the registry needs none", redact(raw))
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%q uses plain http, which is accepted only on loopback", raw)
	}
	return fmt.Errorf("%q: scheme %q is not accepted (https)", raw, u.Scheme)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redact drops user info and query from a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery = nil, ""
	return u.String()
}

// APIError is an answer of the registry other than 200.
type APIError struct {
	URL    string
	Status int
	// Message is the registry's error message, when it sent one.
	Message string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("registry %s: HTTP %d", e.URL, e.Status)
	switch e.Status {
	case http.StatusNotFound:
		s += " (not found)"
	case http.StatusForbidden:
		s += " (refused: the registry answers 403 for a banned node)"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// NotFound reports whether the registry said the node or version does not exist.
func (e *APIError) NotFound() bool { return e.Status == http.StatusNotFound }

// get decodes the JSON answer of GET base+path into v.
func (c *Client) get(ctx context.Context, path string, q url.Values, v any) error {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJSON+1))
	if err != nil {
		return fmt.Errorf("registry %s: reading the answer: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Message string `json:"message"`
			Error   string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		msg := e.Message
		if msg == "" {
			msg = e.Error
		}
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		return &APIError{URL: u, Status: resp.StatusCode, Message: msg}
	}
	if len(body) > maxJSON {
		return fmt.Errorf("registry %s: the answer is larger than %d bytes", u, maxJSON)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("registry %s: the answer is not the registry's JSON: %v", u, err)
	}
	return nil
}

// Install returns the version ComfyUI-Manager would install: GET /nodes/{id}/install?version=V.
func (c *Client) Install(ctx context.Context, id, version string) (*NodeVersion, error) {
	var nv NodeVersion
	if err := c.get(ctx, "/nodes/"+url.PathEscape(id)+"/install", url.Values{"version": {version}}, &nv); err != nil {
		return nil, err
	}
	return &nv, nil
}

// Version returns one version of a node: GET /nodes/{id}/versions/{version}.
func (c *Client) Version(ctx context.Context, id, version string) (*NodeVersion, error) {
	var nv NodeVersion
	if err := c.get(ctx, "/nodes/"+url.PathEscape(id)+"/versions/"+url.PathEscape(version), nil, &nv); err != nil {
		return nil, err
	}
	return &nv, nil
}

// Versions lists a node's versions of the given statuses (all when none):
// GET /nodes/{id}/versions?statuses=...
func (c *Client) Versions(ctx context.Context, id string, statuses ...string) ([]NodeVersion, error) {
	var out []NodeVersion
	q := url.Values{}
	for _, s := range statuses {
		q.Add("statuses", s)
	}
	if err := c.get(ctx, "/nodes/"+url.PathEscape(id)+"/versions", q, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Pick resolves request (an exact version, "latest" or a range) for node id to one
// published version with a download URL. An exact version is asked for directly and may be
// active or pending review; "latest" and ranges choose the newest active release the request
// allows. A deleted, banned or flagged version is refused with the registry's reason. The
// warnings name a deprecated or pending version.
func (c *Client) Pick(ctx context.Context, id, request string) (*NodeVersion, []string, error) {
	req, err := semver.ParseRequest(request)
	if err != nil {
		return nil, nil, err
	}
	var nv *NodeVersion
	if req.Exact != nil {
		nv, err = c.Install(ctx, id, request)
		if err != nil {
			return nil, nil, err
		}
		got, perr := semver.Parse(nv.Version)
		if perr != nil || semver.Compare(got, *req.Exact) != 0 {
			return nil, nil, fmt.Errorf("registry answered version %q for %s@%s", nv.Version, id, request)
		}
	} else {
		all, err := c.Versions(ctx, id, StatusActive)
		if err != nil {
			return nil, nil, err
		}
		vs := make([]string, 0, len(all))
		var active []NodeVersion
		for _, v := range all {
			if v.Status != "" && v.Status != StatusActive {
				continue // a registry that ignores the filter
			}
			active = append(active, v)
			vs = append(vs, v.Version)
		}
		i := req.Best(vs)
		if i < 0 {
			return nil, nil, fmt.Errorf("no active version of %s matches %q (active versions: %s)", id, request, listVersions(vs))
		}
		nv = &active[i]
		if nv.DownloadURL == "" {
			if nv, err = c.Version(ctx, id, nv.Version); err != nil {
				return nil, nil, err
			}
		}
	}
	var warns []string
	switch nv.Status {
	case StatusActive, "":
	case StatusPending:
		warns = append(warns, fmt.Sprintf("%s@%s is pending the registry's review", id, nv.Version))
	default:
		why := ""
		if nv.StatusReason != "" {
			why = ": " + nv.StatusReason
		}
		return nil, nil, fmt.Errorf("%s@%s is %s in the registry%s: pin another version", id, nv.Version, strings.TrimPrefix(nv.Status, "NodeVersionStatus"), why)
	}
	if nv.Deprecated {
		warns = append(warns, fmt.Sprintf("%s@%s is deprecated in the registry", id, nv.Version))
	}
	if nv.DownloadURL == "" {
		return nil, nil, fmt.Errorf("registry gave no downloadUrl for %s@%s", id, nv.Version)
	}
	if err := checkURL(nv.DownloadURL); err != nil {
		return nil, nil, fmt.Errorf("%s@%s: downloadUrl %w", id, nv.Version, err)
	}
	return nv, warns, nil
}

// listVersions shows up to 10 versions, newest last as the registry lists them.
func listVersions(vs []string) string {
	if len(vs) == 0 {
		return "none"
	}
	if len(vs) > 10 {
		return strings.Join(vs[:10], ", ") + fmt.Sprintf(" and %d more", len(vs)-10)
	}
	return strings.Join(vs, ", ")
}
