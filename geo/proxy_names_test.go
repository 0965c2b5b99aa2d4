package geo_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/gitgate"
)

// The proxy forwards a push under the canonical name it was given and no
// other spelling: a second spelling is not found, and the primary is never
// asked (here it would be unreachable).
func TestProxyTakesOnlyCanonicalNames(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	primaryURL := "http://" + ln.Addr().String()
	ln.Close() // nothing listens: a request to the primary fails
	s := newSite(t)
	f, err := geo.NewFollower(followerOptions(t, primaryURL, secretEU), s.store, s.live, testLog())
	if err != nil {
		t.Fatal(err)
	}
	user := &gitgate.User{Name: "bob"}
	for _, name := range []string{"group/secret.git", "group/secret.git.git", "group/../secret", ""} {
		err := f.ProxySSHPush(context.Background(), user, name, "", strings.NewReader(""), io.Discard)
		if !errors.Is(err, gitgate.ErrNotFound) {
			t.Errorf("ProxySSHPush(%q) = %v; want not found", name, err)
		}
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/"+name+".git/info/refs?service=git-receive-pack", nil)
		f.ProxyHTTPPush(w, r, user, name)
		if w.Code != http.StatusNotFound {
			t.Errorf("ProxyHTTPPush(%q) = %d; want 404", name, w.Code)
		}
	}
}
