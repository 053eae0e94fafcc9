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
// Errors name u without its query (RedactQuery), and never hold the body or the server's status
// text: u is a client's, possibly a pre-signed URL, and the server may be anyone's.
func Fetch(ctx context.Context, hc *http.Client, u string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: not a valid URL", RedactQuery(u))
	}
	resp, err := hc.Do(req)
	if err != nil {
		// The *url.Error carries the whole URL: keep only what RedactQuery keeps.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = &url.Error{Op: ue.Op, URL: RedactQuery(ue.URL), Err: ue.Err}
		}
		return nil, fmt.Errorf("fetching: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// The status code only: the reason phrase is the server's text.
		return nil, fmt.Errorf("fetching %s: HTTP %d %s", RedactQuery(u), resp.StatusCode, http.StatusText(resp.StatusCode))
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

// RedactQuery drops the query of a URL for messages and logs (a pre-signed URL carries its
// signature there), marking the cut with "?...".
func RedactQuery(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i] + "?..."
	}
	return u
}
