package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/access"
	"github.com/gitgate/gitgate/gitgate"
)

// authFunc adapts a function to Authenticator.
type authFunc func(r *http.Request) (*gitgate.User, error)

func (f authFunc) Authenticate(r *http.Request) (*gitgate.User, error) { return f(r) }

// newTestAPI returns an API over a real state file in a temporary data dir,
// in maintenance when enabled is set, with the banner "back at noon".
func newTestAPI(t *testing.T, enabled bool, auth Authenticator) *API {
	t.Helper()
	store := gitgate.NewFileStore(t.TempDir())
	live := gitgate.NewLiveState(store, slog.New(slog.DiscardHandler))
	msg := "back at noon"
	if _, err := store.Apply(context.Background(), gitgate.Change{Enabled: &enabled, Message: &msg}); err != nil {
		t.Fatal(err)
	}
	live.Reload()
	if live.Current().State.Enabled != enabled {
		t.Fatalf("state not loaded: %+v", live.Current())
	}
	return New(Config{Auth: auth, Store: store, Live: live})
}

func do(t *testing.T, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, target, nil))
	return w
}

func anonymous(*http.Request) (*gitgate.User, error) { return nil, nil }

// In maintenance, a write outside the allow list gets GitLab's documented
// 503 text, never the banner (which is for the UI).
func TestMaintenanceBlocksOtherWritesWithGitLabText(t *testing.T) {
	a := newTestAPI(t, true, authFunc(anonymous))
	for _, tc := range []struct{ method, path string }{
		{"POST", "/api/v4/projects"},
		{"PUT", "/api/v4/projects/1"},
		{"PATCH", "/api/v4/users/1"},
		{"DELETE", "/api/v4/projects/1"},
		{"DELETE", SettingsPath},
	} {
		w := do(t, a, tc.method, tc.path)
		if w.Code != http.StatusServiceUnavailable {
			t.Errorf("%s %s: status %d, want 503", tc.method, tc.path, w.Code)
		}
		if got, want := w.Body.String(), `{"message":"GitLab Maintenance: system is in maintenance mode"}`+"\n"; got != want {
			t.Errorf("%s %s: body %q, want %q", tc.method, tc.path, got, want)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: content type %q", tc.method, tc.path, ct)
		}
	}
	// The allow list and reads go through to the handlers (here: 401 for
	// the settings without a token, 404 for routes the gate does not serve).
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"PUT", SettingsPath, http.StatusUnauthorized},
		{"POST", SettingsPath, http.StatusUnauthorized},
		{"GET", SettingsPath, http.StatusUnauthorized},
		{"GET", "/api/v4/projects", http.StatusNotFound},
		{"POST", "/api/v4/internal/allowed", http.StatusNotFound},
		{"POST", "/api/v4/internal", http.StatusNotFound},
		{"POST", "/api/v4/geo_replication/designs/resync", http.StatusNotFound},
		{"POST", "/api/v4/geo/status", http.StatusNotFound},
		{"POST", "/api/v4/projects/1/repository/compare", http.StatusNotFound},
		{"POST", "/api/graphql", http.StatusNotFound},
	} {
		if w := do(t, a, tc.method, tc.path); w.Code != tc.status {
			t.Errorf("%s %s: status %d, want %d (%s)", tc.method, tc.path, w.Code, tc.status, w.Body)
		}
	}
}

// DELETE on the settings is 405 with an Allow header, in GitLab's JSON.
func TestSettingsMethodNotAllowed(t *testing.T) {
	a := newTestAPI(t, false, authFunc(anonymous))
	for _, method := range []string{"DELETE", "PATCH"} {
		w := do(t, a, method, SettingsPath)
		if w.Code != http.StatusMethodNotAllowed {
			t.Fatalf("%s: status %d, want 405 (%s)", method, w.Code, w.Body)
		}
		if got := w.Header().Get("Allow"); got != "GET, HEAD, PUT, POST" {
			t.Errorf("%s: Allow %q", method, got)
		}
		if got, want := w.Body.String(), `{"message":"405 Method Not Allowed"}`+"\n"; got != want {
			t.Errorf("%s: body %q, want %q", method, got, want)
		}
	}
	if w := do(t, a, "DELETE", "/api/v4/other"); w.Code != http.StatusNotFound {
		t.Errorf("DELETE elsewhere: status %d, want 404", w.Code)
	}
}

// Retry-After is whole seconds, as HTTP requires, never a Go duration.
func TestThrottledRetryAfterIsSeconds(t *testing.T) {
	for _, tc := range []struct {
		wait time.Duration
		want string
	}{
		{time.Minute, "60"},
		{59*time.Second + 300*time.Millisecond, "60"},
		{time.Hour, "3600"},
		{200 * time.Millisecond, "1"},
		{90 * time.Minute, "5400"},
	} {
		a := newTestAPI(t, false, authFunc(func(*http.Request) (*gitgate.User, error) {
			return nil, &access.ThrottledError{Wait: tc.wait}
		}))
		w := do(t, a, "GET", SettingsPath)
		if w.Code != http.StatusTooManyRequests {
			t.Fatalf("status %d", w.Code)
		}
		if got := w.Header().Get("Retry-After"); got != tc.want {
			t.Errorf("wait %s: Retry-After %q, want %q", tc.wait, got, tc.want)
		}
		body, _ := io.ReadAll(w.Body)
		if !strings.Contains(string(body), "429 Too Many Requests") {
			t.Errorf("body %q", body)
		}
	}
}

// The settings API needs an admin whose token has the api scope; an
// unscoped (legacy) admin token keeps working.
func TestSettingsNeedAPIScope(t *testing.T) {
	for _, tc := range []struct {
		name   string
		user   *gitgate.User
		status int
		body   string
	}{
		{"unscoped admin", &gitgate.User{Name: "root", Admin: true}, http.StatusOK, `"maintenance_mode":false`},
		{"admin with api", &gitgate.User{Name: "root", Admin: true, Scopes: gitgate.ScopeAPI}, http.StatusOK, `"maintenance_mode":false`},
		{"admin with repository scopes", &gitgate.User{Name: "root", Admin: true, Scopes: gitgate.ScopeReadRepository | gitgate.ScopeWriteRepository},
			http.StatusForbidden, `{"error":"insufficient_scope","error_description":"The request requires higher privileges than provided by the access token.","scope":"api"}`},
		{"non-admin with api", &gitgate.User{Name: "bob", Scopes: gitgate.ScopeAPI}, http.StatusForbidden, `{"message":"403 Forbidden"}`},
	} {
		a := newTestAPI(t, false, authFunc(func(*http.Request) (*gitgate.User, error) { return tc.user, nil }))
		for _, method := range []string{"GET", "PUT"} {
			w := do(t, a, method, SettingsPath+"?maintenance_mode=false")
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.body) {
				t.Errorf("%s, %s: %d %s; want %d %s", tc.name, method, w.Code, w.Body, tc.status, tc.body)
			}
		}
	}
}
