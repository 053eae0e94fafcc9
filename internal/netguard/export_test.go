package netguard

import (
	"context"
	"net"
	"net/netip"
	"syscall"
)

// dialAllowing is a guarded dialer that treats the one address allowed as public: it stands
// for a public server that redirects to a private address.
func dialAllowing(allowed netip.AddrPort) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Control: func(network, address string, c syscall.RawConn) error {
		if ap, err := netip.ParseAddrPort(address); err == nil && ap == allowed {
			return nil
		}
		return Control(network, address, c)
	}}
	return d.DialContext
}
