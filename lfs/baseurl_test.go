package lfs

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHrefsIgnoreForgedHost: without --external-url, hrefs (which carry a
// signed header to wherever they point) name the address the request
// really arrived on; the Host header counts only when it names that very
// address, or localhost on a loopback connection.
func TestHrefsIgnoreForgedHost(t *testing.T) {
	for _, tt := range []struct {
		local, host string
		tls         bool
		want        string
	}{
		{"127.0.0.1:8080", "evil.example", false, "http://127.0.0.1:8080"},
		{"127.0.0.1:8080", "evil.example:8080", false, "http://127.0.0.1:8080"},
		{"127.0.0.1:8080", "127.0.0.1:8080", false, "http://127.0.0.1:8080"},
		{"127.0.0.1:8080", "localhost:8080", false, "http://localhost:8080"},
		{"127.0.0.1:8080", "LocalHost:8080", false, "http://localhost:8080"},
		{"127.0.0.1:8080", "localhost:9999", false, "http://127.0.0.1:8080"},
		{"127.0.0.1:8080", "localhost", false, "http://127.0.0.1:8080"},
		{"10.0.0.5:8080", "localhost:8080", false, "http://10.0.0.5:8080"},
		{"10.0.0.5:8080", "10.0.0.5:8080", true, "https://10.0.0.5:8080"},
		{"[::1]:8080", "[::1]:8080", false, "http://[::1]:8080"},
		{"[::1]:8080", "evil.example", false, "http://[::1]:8080"},
		{"[::ffff:127.0.0.1]:8080", "127.0.0.1:8080", false, "http://127.0.0.1:8080"},
	} {
		r := httptest.NewRequest("POST", "/proj.git/info/lfs/objects/batch", nil)
		r.Host = tt.host
		if tt.tls {
			r.TLS = &tls.ConnectionState{}
		}
		addr, err := net.ResolveTCPAddr("tcp", tt.local)
		if err != nil {
			t.Fatal(err)
		}
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, addr))
		if got, ok := arrivalURL(r); !ok || got != tt.want {
			t.Errorf("local %s, Host %q: %q, %v; want %q", tt.local, tt.host, got, ok, tt.want)
		}
	}

	// Through the batch API: a forged Host gets hrefs to the gate itself;
	// with an external URL, always that.
	f := newFixture(t, nil)
	ext := newFixture(t, func(c *Config) { c.ExternalURL = "https://git.example.com" })
	for fx, want := range map[*fixture]string{f: "http://127.0.0.1:8080/", ext: "https://git.example.com/"} {
		r := httptest.NewRequest("POST", "http://evil.example/proj.git/info/lfs/objects/batch",
			strings.NewReader(`{"operation":"upload","objects":[{"oid":"`+oidOf([]byte("x"))+`","size":1}]}`))
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, gateAddr))
		r.SetBasicAuth("alice", "token")
		w := httptest.NewRecorder()
		fx.srv.ServeHTTP(w, r)
		if w.Code != http.StatusOK || strings.Contains(w.Body.String(), "evil.example") || !strings.Contains(w.Body.String(), `"href":"`+want) {
			t.Errorf("batch with a forged Host: %d %s; want hrefs at %s", w.Code, w.Body, want)
		}
	}
}
