package netguard

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, s := range []string{
		"127.0.0.1", "127.1.2.3", "::1", "169.254.169.254", "169.254.0.1", "fe80::1",
		"10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", "fc00::1", "fd12::1",
		"0.0.0.0", "::", "0.1.2.3", "100.64.0.1", "224.0.0.1", "ff02::1", "255.255.255.255",
		"::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",
	} {
		if err := Check(netip.MustParseAddr(s)); !errors.Is(err, ErrRefused) {
			t.Errorf("Check(%s) = %v, want refused", s, err)
		}
	}
	for _, s := range []string{"8.8.8.8", "1.1.1.1", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "100.128.0.1"} {
		if err := Check(netip.MustParseAddr(s)); err != nil {
			t.Errorf("Check(%s) = %v, want allowed", s, err)
		}
	}
}

// A loopback server is refused by default, directly, by host name and through a redirect
// from a server that is itself allowed; the allowing client fetches it. Nothing of the
// refused server's answer reaches the error.
func TestClientRefusesLoopback(t *testing.T) {
	var hits atomic.Int32
	secret := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("instance-secret"))
	}))
	defer secret.Close()
	get := func(c *http.Client, u string) (string, error) {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b := make([]byte, 100)
		n, _ := resp.Body.Read(b)
		return string(b[:n]), nil
	}
	guarded := NewClient(false)
	for _, u := range []string{secret.URL, strings.Replace(secret.URL, "127.0.0.1", "localhost", 1)} {
		if _, err := get(guarded, u); !errors.Is(err, ErrRefused) || strings.Contains(err.Error(), "instance-secret") {
			t.Errorf("GET %s: %v, want refused", u, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the loopback server was reached %d times", n)
	}

	// The allowing client follows a redirect from one loopback server to the other; the
	// guarded one, whose first hop is allowed here only by a test hook, stops at the redirect.
	redir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, secret.URL+"/latest/meta-data", http.StatusFound)
	}))
	defer redir.Close()
	if body, err := get(NewClient(true), redir.URL); err != nil || body != "instance-secret" {
		t.Fatalf("allowing client: %q %v", body, err)
	}
	hits.Store(0)
	redirAddr := netip.MustParseAddrPort(strings.TrimPrefix(redir.URL, "http://"))
	half := NewClient(false)
	half.Transport.(*http.Transport).DialContext = dialAllowing(redirAddr)
	if _, err := get(half, redir.URL); !errors.Is(err, ErrRefused) {
		t.Errorf("redirect to loopback: %v, want refused", err)
	}
	if hits.Load() != 0 {
		t.Errorf("the redirect reached the loopback server")
	}
}
