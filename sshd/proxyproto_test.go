package sshd_test

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	gossh "golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/sshd"
)

func trustLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// dialWithHeader connects, sends header (nil: none) and signs in with k.
func (g *gate) dialWithHeader(k clientKey, header []byte) (*gossh.Client, error) {
	g.t.Helper()
	nc, err := net.Dial("tcp", "127.0.0.1:"+g.port)
	if err != nil {
		g.t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second)) // a bound, not an assertion
	if header != nil {
		if _, err := nc.Write(header); err != nil {
			g.t.Fatal(err)
		}
	}
	cc, chans, reqs, err := gossh.NewClientConn(nc, nc.RemoteAddr().String(), &gossh.ClientConfig{
		User:            "git",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(k.signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(),
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	c := gossh.NewClient(cc, chans, reqs)
	g.t.Cleanup(func() { c.Close() })
	return c, nil
}

func proxyHeader(t *testing.T, version byte, client string) []byte {
	t.Helper()
	src, err := net.ResolveTCPAddr("tcp", client)
	if err != nil {
		t.Fatal(err)
	}
	dst := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22}
	h := proxyproto.HeaderProxyFromAddrs(version, src, dst)
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Behind a trusted TCP load balancer, the PROXY header (v1 or v2) names the
// client in the server's logs; without a header the peer is the client.
func TestProxyProtocolFromTrustedPeer(t *testing.T) {
	g := startGate(t, func(c *sshd.Config) { c.TrustProxyHeader = trustLoopback })
	k := g.addUser("alice", gitgate.PermissionRead)
	for _, tc := range []struct {
		version byte
		client  string
	}{{1, "203.0.113.5:5555"}, {2, "198.51.100.77:6666"}, {2, "[2001:db8::42]:7777"}} {
		c, err := g.dialWithHeader(k, proxyHeader(t, tc.version, tc.client))
		if err != nil {
			t.Fatalf("v%d: %v", tc.version, err)
		}
		if !waitFor(func() bool { return strings.Contains(g.logs.String(), "remote_addr="+tc.client) }) {
			t.Errorf("v%d: the log does not name the client %s", tc.version, tc.client)
		}
		c.Close()
	}
	if _, err := g.dialWithHeader(k, nil); err != nil {
		t.Fatalf("trusted peer without a header: %v", err)
	}
}

// A peer that is not trusted cannot claim an address: its header is not
// read as one (the SSH layer skips or rejects it), and the forged address
// appears nowhere; the peer's own address is used.
func TestProxyProtocolFromUntrustedPeer(t *testing.T) {
	g := startGate(t, func(c *sshd.Config) { c.TrustProxyHeader = func(net.Addr) bool { return false } })
	k := g.addUser("alice", gitgate.PermissionRead)
	for _, version := range []byte{1, 2} {
		if c, err := g.dialWithHeader(k, proxyHeader(t, version, "203.0.113.66:1")); err == nil {
			c.Close()
		}
	}
	if _, err := g.dialWithHeader(k, nil); err != nil {
		t.Fatalf("plain SSH from the untrusted peer: %v", err)
	}
	if !waitFor(func() bool { return strings.Contains(g.logs.String(), "remote_addr=127.0.0.1:") }) {
		t.Error("the peer's own address is not in the log")
	}
	if strings.Contains(g.logs.String(), "203.0.113.66") {
		t.Errorf("the forged address reached the log:\n%s", g.logs)
	}
}

// A trusted peer that sends nothing, or half a header, does not hold the
// connection: the header wait is bounded, then the login grace applies.
func TestProxyProtocolHeaderDeadline(t *testing.T) {
	g := startGate(t, func(c *sshd.Config) {
		c.TrustProxyHeader = trustLoopback
		c.ProxyHeaderTimeout = 100 * time.Millisecond
		c.LoginGraceTime = 500 * time.Millisecond
	})
	for _, send := range []string{"", "PROXY TCP4 203.0.113.9 "} {
		nc, err := net.Dial("tcp", "127.0.0.1:"+g.port)
		if err != nil {
			t.Fatal(err)
		}
		nc.Write([]byte(send))
		nc.SetReadDeadline(time.Now().Add(30 * time.Second)) // a bound, not an assertion
		_, err = io.ReadAll(nc)
		nc.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("sent %q: the server held the connection for 30s", send)
		}
	}
}
