package git

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Credentials decide which token goes to which https remote. A token goes only to the hosts
// it was given for: Token to the hosts in Hosts (the spec's own repositories), each PerHost
// token to its host. A submodule on another host, or a redirect to one, gets no token (go-git
// drops the Authorization header on a redirect that leaves the origin). Tokens are sent as
// HTTP basic auth (user "x-access-token"), over https only.
type Credentials struct {
	// Token ($GIT_TOKEN, else $GITHUB_TOKEN) goes to the hosts in Hosts.
	Token string
	// Hosts are the hosts Token goes to, as "host" or "host:port" (HostKey of a URL).
	Hosts []string
	// PerHost maps a host ("host" or "host:port") to its own token ($GIT_TOKENS). It goes to
	// that host wherever the host appears, a submodule included, and wins over Token.
	PerHost map[string]string
}

// For returns the token to send with a request to remote u, or "" when none may go there.
func (c Credentials) For(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "https" || p.Host == "" {
		return ""
	}
	key := HostKey(p)
	if t, ok := c.PerHost[key]; ok {
		return t
	}
	if c.Token == "" {
		return ""
	}
	for _, h := range c.Hosts {
		if h == key {
			return c.Token
		}
	}
	return ""
}

// HostKey is the key that names p's host in Credentials: the lower-case host name, with
// ":port" only when the port is not https's 443; IPv6 addresses keep their brackets only
// with a port ("::1", "[::1]:8443").
func HostKey(p *url.URL) string {
	h := strings.ToLower(p.Hostname())
	if port := p.Port(); port != "" && port != "443" {
		return net.JoinHostPort(h, port)
	}
	return h
}

// RepoHost returns the HostKey of an https repository URL, or "" for any other URL (ssh,
// file, local paths get no token).
func RepoHost(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "https" || p.Host == "" {
		return ""
	}
	return HostKey(p)
}

// ParseHostTokens parses the per-host token setting ($GIT_TOKENS): "host=token" pairs
// separated by commas, spaces or newlines; a host may carry a port ("git.example.com:8443")
// or be written as an https URL ("https://git.example.com"). Errors never show a token.
func ParseHostTokens(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' || r == '\r' }) {
		host, tok, ok := strings.Cut(f, "=")
		if !ok || host == "" || tok == "" {
			return nil, fmt.Errorf("entry %d is not host=token", len(out)+1)
		}
		raw := host
		if !strings.Contains(raw, "://") {
			raw = "https://" + raw
		}
		p, err := url.Parse(raw)
		if err != nil || p.Scheme != "https" || p.Host == "" || p.User != nil || (p.Path != "" && p.Path != "/") || p.RawQuery != "" {
			return nil, fmt.Errorf("entry %d: %q is not a host name (host or host:port)", len(out)+1, host)
		}
		key := HostKey(p)
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("host %s is given twice", key)
		}
		out[key] = tok
	}
	return out, nil
}
