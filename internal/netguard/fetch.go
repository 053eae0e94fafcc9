package netguard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// ErrTooLarge is a fetched body over Fetch's limit.
var ErrTooLarge = errors.New("larger than the limit")

// Fetch GETs u with hc and returns its body, at most limit bytes (more is ErrTooLarge).
// Errors name u without its query (RedactURL), and never hold the body or the server's status
// text: u is a client's, possibly a pre-signed URL, and the server may be anyone's.
func Fetch(ctx context.Context, hc *http.Client, u string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: not a valid URL", RedactURL(u))
	}
	resp, err := hc.Do(req)
	if err != nil {
		// The *url.Error carries the whole URL: keep only what RedactURL keeps.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = &url.Error{Op: ue.Op, URL: RedactURL(ue.URL), Err: ue.Err}
		}
		return nil, fmt.Errorf("fetching: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// The status code only: the reason phrase is the server's text.
		return nil, fmt.Errorf("fetching %s: HTTP %d %s", RedactURL(u), resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("fetching: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, ErrTooLarge
	}
	return data, nil
}

// RedactURL makes a URL fit for messages and logs: it drops the query (a pre-signed URL
// carries its signature there), marking the cut with "?...", the fragment, and the user info
// (user:token@), marked "***@". It works on the text, so a URL that does not parse is
// redacted too.
func RedactURL(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		mark := ""
		if u[i] == '?' {
			mark = "?..."
		}
		u = u[:i] + mark
	}
	if s := strings.Index(u, "://"); s >= 0 {
		auth := u[s+3:]
		if e := strings.IndexByte(auth, '/'); e >= 0 {
			auth = auth[:e]
		}
		if at := strings.LastIndexByte(auth, '@'); at >= 0 {
			u = u[:s+3] + "***@" + u[s+3+at+1:]
		}
	}
	return u
}
