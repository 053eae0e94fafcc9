// Package netguard makes HTTP clients for URLs that come from untrusted input (a job's
// workflow_url and input image URLs): by default they refuse to connect to the machine itself
// and its networks, so a job cannot read the cloud metadata service, ComfyUI's own API or a
// private service through the worker (server-side request forgery).
//
// Words:
//
//   - A refused address is loopback (127.0.0.0/8, ::1), link-local (169.254.0.0/16, holding
//     the cloud metadata address 169.254.169.254, and fe80::/10), private (10.0.0.0/8,
//     172.16.0.0/12, 192.168.0.0/16, fc00::/7), shared (100.64.0.0/10), unspecified or "this
//     network" (0.0.0.0/8, ::), multicast, or reserved (240.0.0.0/4, broadcast). IPv4-mapped
//     IPv6 addresses are judged as the IPv4 address they carry.
//   - The check runs in the dialer's Control function, on the IP address actually dialled
//     after name resolution, so neither DNS rebinding (a name that resolves to a public
//     address when checked and a private one when used) nor a redirect to a private address
//     gets past it: every connection, a redirect's included, is checked.
//   - Fetch reads such a URL with a size limit; its errors, like every message naming such a
//     URL, go through RedactURL, which cuts the query (a pre-signed URL's signature), and
//     never quote the body or the server's status text.
package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ErrRefused is wrapped by the error of a connection to a refused address.
var ErrRefused = errors.New("refused address")

var extraRefused = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// Check returns an error wrapping ErrRefused when ip is not a public unicast address.
func Check(ip netip.Addr) error {
	ip = ip.Unmap()
	kind := ""
	switch {
	case !ip.IsValid():
		kind = "not an IP address"
	case ip.IsLoopback():
		kind = "loopback"
	case ip.IsLinkLocalUnicast():
		kind = "link-local"
		if ip == netip.MustParseAddr("169.254.169.254") {
			kind = "link-local, the cloud metadata service"
		}
	case ip.IsPrivate():
		kind = "private"
	case ip.IsUnspecified():
		kind = "unspecified"
	case ip.IsMulticast(), ip.IsLinkLocalMulticast(), ip.IsInterfaceLocalMulticast():
		kind = "multicast"
	default:
		for _, p := range extraRefused {
			if p.Contains(ip) {
				kind = "reserved or shared"
				break
			}
		}
	}
	if kind == "" {
		return nil
	}
	return fmt.Errorf("%w %s (%s): loopback, link-local and private addresses are not fetched unless the worker allows them", ErrRefused, ip, kind)
}

// Control is a net.Dialer Control function refusing connections to refused addresses.
func Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot judge %q: %v", ErrRefused, address, err)
	}
	return Check(ap.Addr())
}

// NewClient returns an HTTP client for untrusted URLs. Unless allowPrivate, it refuses to
// connect to the addresses Check refuses. It uses no proxy (a proxy would connect on its
// behalf, unchecked) and follows at most 10 redirects, each checked when it dials.
func NewClient(allowPrivate bool) *http.Client {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = Control
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = d.DialContext
	return &http.Client{Transport: tr}
}
