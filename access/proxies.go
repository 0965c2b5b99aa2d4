package access

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// maxForwardedHops bounds how many X-Forwarded-For entries are examined.
const maxForwardedHops = 32

// TrustedProxies are the peers whose word about the client's address is
// taken: the X-Forwarded-For header over HTTP, a PROXY protocol header over
// SSH. Everyone else's is ignored. The nil *TrustedProxies trusts no one.
type TrustedProxies struct {
	nets []netip.Prefix
}

// ParseTrustedProxies reads CIDR ranges or single addresses ("10.0.0.0/8",
// "192.0.2.7", "2001:db8::/32"); each item may be a comma-separated list.
// Empty items are skipped; no ranges at all gives nil.
func ParseTrustedProxies(items []string) (*TrustedProxies, error) {
	var t TrustedProxies
	for _, item := range items {
		for _, s := range strings.Split(item, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			p, err := netip.ParsePrefix(s)
			if err != nil {
				a, aerr := netip.ParseAddr(s)
				if aerr != nil {
					return nil, fmt.Errorf("trusted proxy %q: want an address or a CIDR range such as 10.0.0.0/8", truncate(s, 60))
				}
				p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
			}
			if p.Addr().Is4In6() {
				p = netip.PrefixFrom(p.Addr().Unmap(), max(0, p.Bits()-96))
			}
			t.nets = append(t.nets, p.Masked())
		}
	}
	if len(t.nets) == 0 {
		return nil, nil
	}
	return &t, nil
}

// Trusts reports whether addr is one of the trusted proxies.
func (t *TrustedProxies) Trusts(addr netip.Addr) bool {
	if t == nil || !addr.IsValid() {
		return false
	}
	addr = addr.Unmap().WithZone("")
	for _, p := range t.nets {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// TrustsAddr is Trusts for a net.Addr (a TCP peer); anything else is not
// trusted.
func (t *TrustedProxies) TrustsAddr(a net.Addr) bool {
	if tcp, ok := a.(*net.TCPAddr); ok {
		ip, ok := netip.AddrFromSlice(tcp.IP)
		return ok && t.Trusts(ip)
	}
	return false
}

// ClientAddr returns the address of the client behind r. When the peer is
// not a trusted proxy it is r.RemoteAddr, unchanged. When it is, the
// X-Forwarded-For entries are walked from the right, past every trusted
// proxy, and the first untrusted one is the client (entries further left
// were written by the client itself and prove nothing). An entry that is
// not an address ends the walk at the last trusted hop, as does a chain of
// trusted proxies only; the answer is then that proxy's address.
func (t *TrustedProxies) ClientAddr(r *http.Request) string {
	peer, ok := peerAddr(r.RemoteAddr)
	if !ok || !t.Trusts(peer) {
		return r.RemoteAddr
	}
	hops := forwardedHops(r.Header.Values("X-Forwarded-For"))
	client := peer
	for i := len(hops) - 1; i >= 0 && len(hops)-i <= maxForwardedHops; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			break
		}
		client = a
		if !t.Trusts(a) {
			break
		}
	}
	return client.String()
}

// Handler returns h with r.RemoteAddr replaced by [TrustedProxies.ClientAddr],
// so that logs, throttling, audit and metrics all see the client. With no
// trusted proxies it returns h.
func (t *TrustedProxies) Handler(h http.Handler) http.Handler {
	if t == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if addr := t.ClientAddr(r); addr != r.RemoteAddr {
			r = r.WithContext(r.Context()) // a shallow copy
			r.RemoteAddr = addr
		}
		h.ServeHTTP(w, r)
	})
}

// peerAddr parses "ip:port" or a bare IP.
func peerAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(s)
	return a.Unmap(), err == nil
}

// forwardedHops splits X-Forwarded-For values (several headers are one list,
// in order) into entries.
func forwardedHops(values []string) []string {
	var hops []string
	for _, v := range values {
		for _, h := range strings.Split(v, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	return hops
}

// parseHop reads one X-Forwarded-For entry: an address, possibly with a
// port, IPv6 possibly in brackets.
func parseHop(s string) (netip.Addr, bool) {
	if a, ok := peerAddr(s); ok {
		return a.WithZone(""), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}
