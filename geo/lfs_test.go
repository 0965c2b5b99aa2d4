package geo_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/lfs"
)

// TestLFSReplicationEndpoints: a replicate token lists and reads the LFS
// objects of exactly its repository; an object linked only to another
// repository is not readable through it, and other tokens get nothing.
func TestLFSReplicationEndpoints(t *testing.T) {
	store, err := lfs.NewStore(filepath.Join(t.TempDir(), "lfs"))
	if err != nil {
		t.Fatal(err)
	}
	put := func(repo, content string) string {
		sum := sha256.Sum256([]byte(content))
		oid := hex.EncodeToString(sum[:])
		if _, err := store.Put(repo, oid, int64(len(content)), bytes.NewReader([]byte(content)), nil); err != nil {
			t.Fatal(err)
		}
		return oid
	}
	mine, theirs := put("group/p", "p's object"), put("group/q", "q's object")
	s := newSite(t)
	p := geo.NewPrimary(s.live, geo.NewVerifier(map[string][]byte{"eu": secretEU}), testLog())
	mux := http.NewServeMux()
	mux.Handle("GET "+geo.LFSObjectsPath, p.LFSObjectsHandler(store))
	mux.Handle("GET "+geo.LFSObjectPath, p.LFSObjectHandler(store))
	sign := func(c geo.Claims) string {
		h, err := geo.Sign(secretEU, "eu", c, 0)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	repl := sign(geo.Claims{Scope: geo.ScopeReplicate, Repo: "group/p"})
	call := func(path string, q url.Values, auth string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path+"?"+q.Encode(), nil)
		r.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}

	w := call(geo.LFSObjectsPath, url.Values{"repo": {"group/p"}}, repl)
	var l geo.LFSListing
	if err := json.Unmarshal(w.Body.Bytes(), &l); w.Code != http.StatusOK || err != nil ||
		len(l.Objects) != 1 || l.Objects[0] != (lfs.Object{OID: mine, Size: int64(len("p's object"))}) {
		t.Fatalf("listing: %d %s", w.Code, w.Body)
	}
	if w := call(geo.LFSObjectPath, url.Values{"repo": {"group/p"}, "oid": {mine}}, repl); w.Code != http.StatusOK || w.Body.String() != "p's object" {
		t.Fatalf("object: %d %q", w.Code, w.Body)
	}
	refused := []struct {
		name, path string
		q          url.Values
		auth       string
		code       int
	}{
		{"another repository's object", geo.LFSObjectPath, url.Values{"repo": {"group/p"}, "oid": {theirs}}, repl, http.StatusNotFound},
		{"another repository's listing", geo.LFSObjectsPath, url.Values{"repo": {"group/q"}}, repl, http.StatusUnauthorized},
		{"another repository's object by name", geo.LFSObjectPath, url.Values{"repo": {"group/q"}, "oid": {theirs}}, repl, http.StatusUnauthorized},
		{"another spelling", geo.LFSObjectsPath, url.Values{"repo": {"group/./p"}}, repl, http.StatusBadRequest},
		{"a bad oid", geo.LFSObjectPath, url.Values{"repo": {"group/p"}, "oid": {"../../secret"}}, repl, http.StatusNotFound},
		{"a status token", geo.LFSObjectsPath, url.Values{"repo": {"group/p"}}, sign(geo.Claims{Scope: geo.ScopeStatus}), http.StatusUnauthorized},
		{"a push token", geo.LFSObjectsPath, url.Values{"repo": {"group/p"}}, sign(geo.Claims{Scope: geo.ScopePush, Repo: "group/p"}), http.StatusUnauthorized},
		{"no token", geo.LFSObjectsPath, url.Values{"repo": {"group/p"}}, "", http.StatusUnauthorized},
	}
	for _, tc := range refused {
		if w := call(tc.path, tc.q, tc.auth); w.Code != tc.code || bytes.Contains(w.Body.Bytes(), []byte("object")) {
			t.Errorf("%s: %d %s, want %d", tc.name, w.Code, w.Body, tc.code)
		}
	}
}
