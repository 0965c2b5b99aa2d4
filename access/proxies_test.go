package access

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestTrustedProxiesClientAddr(t *testing.T) {
	tp, err := ParseTrustedProxies([]string{"10.0.0.0/8,192.0.2.7", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"no proxy: header ignored", "198.51.100.1:5000", []string{"203.0.113.9"}, "198.51.100.1:5000"},
		{"trusted proxy", "10.1.2.3:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"single trusted address", "192.0.2.7:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"client-forged entries on the left are ignored", "10.1.2.3:5000", []string{"1.1.1.1, 6.6.6.6, 203.0.113.9"}, "203.0.113.9"},
		{"chain of trusted proxies", "10.1.2.3:5000", []string{"203.0.113.9, 10.9.9.9"}, "203.0.113.9"},
		{"several headers are one list", "10.1.2.3:5000", []string{"6.6.6.6", "203.0.113.9, 10.9.9.9"}, "203.0.113.9"},
		{"no header: the proxy", "10.1.2.3:5000", nil, "10.1.2.3"},
		{"only trusted hops: the leftmost", "10.1.2.3:5000", []string{"10.5.5.5, 10.9.9.9"}, "10.5.5.5"},
		{"garbage stops at the last trusted hop", "10.1.2.3:5000", []string{"203.0.113.9, evil, 10.9.9.9"}, "10.9.9.9"},
		{"garbage right away", "10.1.2.3:5000", []string{"not an address"}, "10.1.2.3"},
		{"port and brackets", "10.1.2.3:5000", []string{"[2001:db9::1]:443"}, "2001:db9::1"},
		{"bracketed v6", "10.1.2.3:5000", []string{"[2001:db9::2]"}, "2001:db9::2"},
		{"v6 proxy", "[2001:db8::5]:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"v4-mapped proxy", "[::ffff:10.0.0.1]:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"mapped client", "10.1.2.3:5000", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.peer
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := tp.ClientAddr(r); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	var none *TrustedProxies
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.1.2.3:5000"
	r.Header.Set("X-Forwarded-For", "203.0.113.9")
	if got := none.ClientAddr(r); got != "10.1.2.3:5000" {
		t.Errorf("no trusted proxies: %q", got)
	}
}

// Behind a trusted proxy, throttling is per client: one client's failures
// do not block another's bad credentials, and the proxy never gets blocked
// as a whole.
func TestThrottlingBehindTrustedProxy(t *testing.T) {
	fx := newSigninFixture(t)
	tp, err := ParseTrustedProxies([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	var last error
	h := tp.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, last = fx.auth.Authenticate(r)
	}))
	try := func(client string) error {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("X-Forwarded-For", client)
		r.Header.Set("PRIVATE-TOKEN", "ggt_wrong")
		h.ServeHTTP(httptest.NewRecorder(), r)
		return last
	}
	for range 12 {
		try("203.0.113.1")
	}
	if !isThrottled(try("203.0.113.1")) {
		t.Fatal("the failing client behind the proxy is not throttled")
	}
	if err := try("203.0.113.2"); isThrottled(err) {
		t.Fatalf("another client behind the same proxy is throttled: %v", err)
	}
}

func TestParseTrustedProxiesErrors(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "host.example", "10.0.0.1-10.0.0.9"} {
		if _, err := ParseTrustedProxies([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if tp, err := ParseTrustedProxies([]string{"", " , "}); tp != nil || err != nil {
		t.Errorf("empty list: %v, %v", tp, err)
	}
}

// Whatever X-Forwarded-For holds, an untrusted peer is its own address, and
// behind a trusted one the answer is an address that is either the proxy's
// or an entry of the header, never one left of an untrusted entry.
func FuzzClientAddr(f *testing.F) {
	f.Add("10.1.2.3:5000", "203.0.113.9, 10.9.9.9")
	f.Add("198.51.100.1:1", "1.1.1.1")
	f.Add("10.1.2.3:5000", "6.6.6.6, 203.0.113.9, evil")
	f.Add("[::ffff:10.0.0.1]:9", "[2001:db8::1]:80,,")
	tp, err := ParseTrustedProxies([]string{"10.0.0.0/8"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, peer, xff string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = peer
		r.Header.Set("X-Forwarded-For", xff)
		got := tp.ClientAddr(r)
		p, ok := peerAddr(peer)
		if !ok || !tp.Trusts(p) {
			if got != peer {
				t.Fatalf("untrusted peer %q: got %q", peer, got)
			}
			return
		}
		a, ok := peerAddr(got)
		if !ok {
			t.Fatalf("trusted peer: %q is not an address", got)
		}
		hops := forwardedHops([]string{xff})
		// The answer is the rightmost entry equal to it, with only trusted
		// proxies to its right; or, matching no entry, the proxy itself.
		for i := len(hops) - 1; i >= 0; i-- {
			if h, ok := parseHop(hops[i]); ok && h == a {
				for _, right := range hops[i+1:] {
					if h, ok := parseHop(right); !ok || !tp.Trusts(h) {
						t.Fatalf("answer %s is left of the untrusted entry %q in %q", got, right, xff)
					}
				}
				return
			}
		}
		if a != p {
			t.Fatalf("answer %s is neither the proxy %s nor an entry of %q", got, p, xff)
		}
	})
}
