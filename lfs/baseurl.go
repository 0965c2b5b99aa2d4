package lfs

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// baseURL is where hrefs point, and so where git-lfs sends the signed
// header that comes with them: the configured external URL, or else the
// address this request really arrived on (the connection's local address;
// see [arrivalURL]). The client's Host header alone never decides it: an
// attacker who can get a request to the gate with a forged Host (a DNS
// rebinding page, a misrouted proxy) would otherwise have the gate hand
// out hrefs, with credentials, to a host of their choosing.
func (s *Server) baseURL(r *http.Request) string {
	if s.cfg.ExternalURL != "" {
		return s.cfg.ExternalURL
	}
	if r != nil {
		if u, ok := arrivalURL(r); ok {
			return u
		}
	}
	if s.cfg.DefaultURL != nil {
		return strings.TrimRight(s.cfg.DefaultURL(), "/")
	}
	return ""
}

// arrivalURL is the URL of the listener address r arrived on: its Host
// header when that names exactly this address, or "localhost" with its
// port on a loopback connection (both reach this listener and no other);
// otherwise the address itself. ok is false when the server did not
// record the local address.
func arrivalURL(r *http.Request) (string, bool) {
	addr, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if addr == nil {
		return "", false
	}
	local, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return "", false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	ip := local.Addr().Unmap()
	host := ip.WithZone("").String()
	if ip.Is6() {
		host = "[" + host + "]"
	}
	hostPort := host + ":" + portOf(local)
	switch h := strings.ToLower(r.Host); {
	case h == strings.ToLower(hostPort):
	case ip.IsLoopback() && h == "localhost:"+portOf(local):
		hostPort = h
	}
	return scheme + "://" + hostPort, true
}

func portOf(a netip.AddrPort) string { return strconv.Itoa(int(a.Port())) }
