package model

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"cloud.google.com/go/storage"
)

// Default endpoints of the hosted sources.
const (
	DefaultHFEndpoint      = "https://huggingface.co"
	DefaultCivitaiEndpoint = "https://civitai.com"
)

// Names of the environment variables that carry tokens. Package model never reads them (cmd
// does); it names them in error messages so that users know what to set.
const (
	HFTokenVar      = "HF_TOKEN"
	CivitaiTokenVar = "CIVITAI_API_TOKEN"
	// CivitaiSeedTokenVar is the seed tool's name for the Civitai token, read by the command
	// line when CIVITAI_API_TOKEN is not set.
	CivitaiSeedTokenVar = "CIVITAI_TOKEN"
)

// Options configure a Fetcher. The zero value fetches from the public endpoints without
// tokens, with the default retry policy.
type Options struct {
	// HTTPClient is the client downloads go through; nil means a client with
	// http.DefaultTransport. Its CheckRedirect is replaced: tokens are attached per request
	// and only to their own hosts.
	HTTPClient *http.Client
	// HFEndpoint and CivitaiEndpoint are the base URLs of Hugging Face and Civitai
	// (defaults DefaultHFEndpoint and DefaultCivitaiEndpoint).
	HFEndpoint, CivitaiEndpoint string
	// HFToken and CivitaiToken are sent as "Authorization: Bearer" to the host of their
	// endpoint only, never to a redirect target on another host. They are never logged.
	HFToken, CivitaiToken string
	// GCS is the client gs:// sources are read with; nil makes gs:// sources an error.
	GCS *storage.Client
	// PartialDir holds partial downloads and their checkpoints (hash state and offset), so
	// that an interrupted download continues where it stopped. It must be on the same
	// filesystem as the files Fetch writes, so that a finished download is renamed, not
	// copied. Empty means no resume across Fetch calls (retries inside one call still resume).
	PartialDir string
	// Retry is the retry policy for network errors, 408, 429 and 5xx responses.
	Retry Retry
	// CheckpointEvery is how many bytes are downloaded between two checkpoints
	// (default 64 MiB).
	CheckpointEvery int64
	// Warnf receives warnings (trust on first use, a restarted download). Nil discards them.
	Warnf func(format string, args ...any)
	// Connections caps the connections one file is downloaded over when its server serves
	// ranges (default DefaultConnections, at most MaxConnections; 1 downloads every file
	// over one connection). The build flag --download-connections and the spec's
	// options.download_connections set it.
	Connections int
	// ConnectionBudget is the most extra connections all the downloads of the Fetcher use at
	// once beyond each one's first (default Connections): a download always has its first
	// connection, and takes more only while the budget has some free.
	ConnectionBudget int
	// pieceSize is the size of one range request (default defaultPieceSize); tests make it
	// small.
	pieceSize int64
	// rangeBuffers is the number of piece buffers (default rangeMemory / pieceSize).
	rangeBuffers int
	// AdoptDirs are models directories a model may already sit in, at <dir>/<target> (the
	// seed tool's $MODELS_DIR or ROOT/models): a file there is adopted into the store when
	// its checksum matches (or trusted on first use when the spec gives none) instead of
	// downloaded. The files are never modified or moved.
	AdoptDirs []string
}

// Retry is a retry policy: exponential backoff from Base, doubled per attempt up to Max, with
// full jitter. A Retry-After header overrides the computed delay (capped at MaxRetryAfter).
// Attempts counts tries without progress: a try that received bytes resets the count.
type Retry struct {
	Attempts      int           // default 6
	Base          time.Duration // default 1s
	Max           time.Duration // default 30s
	MaxRetryAfter time.Duration // default 5m
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = 6
	}
	if r.Base <= 0 {
		r.Base = time.Second
	}
	if r.Max <= 0 {
		r.Max = 30 * time.Second
	}
	if r.MaxRetryAfter <= 0 {
		r.MaxRetryAfter = 5 * time.Minute
	}
	return r
}

// delay is the wait before try number attempt+1 (attempt counts from 0).
func (r Retry) delay(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, r.MaxRetryAfter)
	}
	d := r.Base << min(attempt, 30)
	if d <= 0 || d > r.Max {
		d = r.Max
	}
	// Full jitter, never below half the step so that retries do not stampede at zero.
	return d/2 + rand.N(d/2+1)
}

// Fetcher resolves model sources to checksums and sizes, and downloads them. It is safe for
// concurrent use.
type Fetcher struct {
	opts     Options
	client   *http.Client // follows redirects; tokens attached per request by host
	noFollow *http.Client // for Hugging Face's first, unfollowed response
	hfURL    *url.URL
	civURL   *url.URL
	retry    Retry

	perFile   int        // Options.Connections with its default
	budget    connBudget // connections of all downloads
	pool      *bufPool   // piece buffers of all ranged downloads
	pieceSize int64
}

// New returns a Fetcher for opts.
func New(opts Options) (*Fetcher, error) {
	if opts.HFEndpoint == "" {
		opts.HFEndpoint = DefaultHFEndpoint
	}
	if opts.CivitaiEndpoint == "" {
		opts.CivitaiEndpoint = DefaultCivitaiEndpoint
	}
	if opts.CheckpointEvery <= 0 {
		opts.CheckpointEvery = 64 << 20
	}
	f := &Fetcher{opts: opts, retry: opts.Retry.withDefaults()}
	switch {
	case opts.Connections == 0:
		f.perFile = DefaultConnections
	case opts.Connections < 1 || opts.Connections > MaxConnections:
		return nil, fmt.Errorf("download connections %d: must be from 1 to %d", opts.Connections, MaxConnections)
	default:
		f.perFile = opts.Connections
	}
	budget := opts.ConnectionBudget
	if budget <= 0 {
		budget = f.perFile
	}
	f.budget = make(connBudget, budget)
	f.pieceSize = cmp.Or(opts.pieceSize, defaultPieceSize)
	f.pool = newBufPool(f.pieceSize, cmp.Or(opts.rangeBuffers, int(max(2, rangeMemory/f.pieceSize))))
	var err error
	if f.hfURL, err = parseEndpoint(opts.HFEndpoint); err != nil {
		return nil, fmt.Errorf("hugging face endpoint: %w", err)
	}
	if f.civURL, err = parseEndpoint(opts.CivitaiEndpoint); err != nil {
		return nil, fmt.Errorf("civitai endpoint: %w", err)
	}
	base := opts.HTTPClient
	if base == nil {
		base = &http.Client{}
	}
	rt := base.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	tokens := map[string]string{}
	if opts.HFToken != "" {
		tokens[strings.ToLower(f.hfURL.Host)] = opts.HFToken
	}
	if opts.CivitaiToken != "" {
		tokens[strings.ToLower(f.civURL.Host)] = opts.CivitaiToken
	}
	tr := &tokenTransport{base: rt, tokens: tokens}
	f.client = &http.Client{Transport: tr, Jar: base.Jar, Timeout: base.Timeout, CheckRedirect: checkRedirect}
	f.noFollow = &http.Client{Transport: tr, Jar: base.Jar, Timeout: base.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return f, nil
}

func parseEndpoint(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(s, "/"))
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http(s) URL", s)
	}
	return u, nil
}

func (f *Fetcher) warnf(format string, args ...any) {
	if f.opts.Warnf != nil {
		f.opts.Warnf(format, args...)
	}
}

// checkRedirect follows at most 10 redirects and drops credentials a redirect would carry to
// another host: the client copies the Authorization header of the first request only when the
// target is the same domain or a subdomain, and tokens are never set on requests anyway (the
// transport adds them per hop), so this is a second fence.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if !strings.EqualFold(req.URL.Host, via[0].URL.Host) {
		req.Header.Del("Authorization")
		req.Header.Del("Cookie")
	}
	return nil
}

// tokenTransport adds "Authorization: Bearer <token>" to a request whose host is the token's
// own host, exactly; every hop of a redirect chain passes through it separately, so a token
// never reaches a redirect target on another host.
type tokenTransport struct {
	base   http.RoundTripper
	tokens map[string]string // lowercase host[:port] -> token
}

func (t *tokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, ok := t.tokens[strings.ToLower(req.URL.Host)]
	if !ok {
		return t.base.RoundTrip(req)
	}
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+tok)
	return t.base.RoundTrip(req)
}

// tokenVarFor names the token variable that matters for a host, or "" when none does.
func (f *Fetcher) tokenVarFor(host string) string {
	h := strings.ToLower(host)
	switch {
	case h == strings.ToLower(f.hfURL.Host) || h == "huggingface.co" || strings.HasSuffix(h, ".huggingface.co"):
		return HFTokenVar
	case h == strings.ToLower(f.civURL.Host) || isCivitaiHost(h):
		return CivitaiTokenVar
	}
	return ""
}

// tokenSet reports whether the token for the variable name is configured.
func (f *Fetcher) tokenSet(varName string) bool {
	switch varName {
	case HFTokenVar:
		return f.opts.HFToken != ""
	case CivitaiTokenVar:
		return f.opts.CivitaiToken != ""
	}
	return false
}

// authHint explains an authentication failure or an HTML page from host.
func (f *Fetcher) authHint(host string) string {
	v := f.tokenVarFor(host)
	switch {
	case v == "":
		return "the URL probably needs credentials or points at a web page rather than the file"
	case f.tokenSet(v):
		return fmt.Sprintf("the token in %s was sent but was not accepted: check that it is valid and has access to this model (gated models must be accepted on the website first)", v)
	default:
		return fmt.Sprintf("%s is not set: this model probably needs a token; set %s and try again", v, v)
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
