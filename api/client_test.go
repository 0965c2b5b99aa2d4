package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// A gate URL that redirects must not carry the token anywhere: the client
// refuses to follow, with an error that says where it was sent.
func TestClientRefusesRedirects(t *testing.T) {
	var mu sync.Mutex
	var seen []http.Header
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"maintenance_mode":true}`))
	}))
	defer elsewhere.Close()
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, elsewhere.URL+r.URL.RequestURI(), status)
		}))
		c, err := NewClient(gate.URL, "ggt_secret")
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Settings(context.Background())
		if err == nil || !strings.Contains(err.Error(), "redirect") || !strings.Contains(err.Error(), elsewhere.URL) {
			t.Errorf("GET, %d: error %v, want a refused redirect naming the target", status, err)
		}
		on := true
		_, err = c.Update(context.Background(), &on, nil)
		if err == nil || !strings.Contains(err.Error(), "redirect") {
			t.Errorf("PUT, %d: error %v, want a refused redirect", status, err)
		}
		gate.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 0 {
		t.Errorf("the redirect target got %d requests, first with headers %v", len(seen), seen[0])
	}
}
