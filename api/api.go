package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gitgate/gitgate/access"
	"github.com/gitgate/gitgate/audit"
	"github.com/gitgate/gitgate/gitgate"
)

// SettingsPath is GitLab's application settings endpoint.
const SettingsPath = "/api/v4/application/settings"

// Retry-After sent with 503 answers during maintenance, in seconds.
const retryAfterSeconds = "60"

// MaintenanceWriteMessage is the message of the 503 that refuses a write
// request outside the allow list during maintenance: GitLab's documented
// text. The banner (maintenance_mode_message) is for people, not for API
// clients, so it never replaces this.
const MaintenanceWriteMessage = "GitLab Maintenance: system is in maintenance mode"

// settingsAllow is the Allow header of a 405 on the settings endpoint.
const settingsAllow = "GET, HEAD, PUT, POST"

// maxBody bounds a settings request body.
const maxBody = 64 << 10

// Authenticator finds the user behind a request; (nil, nil) is anonymous.
type Authenticator interface {
	Authenticate(r *http.Request) (*gitgate.User, error)
}

// StateChanger changes the maintenance state durably.
type StateChanger interface {
	Apply(ctx context.Context, c gitgate.Change) (gitgate.State, error)
}

// Config holds the API's dependencies.
type Config struct {
	Auth    Authenticator
	Store   StateChanger
	Live    *gitgate.LiveState
	Tracker *gitgate.Tracker
	Audit   *audit.Log
	// ReadOnly, when set and returning ok, refuses changes with msg (a Geo
	// secondary, whose state follows the primary's).
	ReadOnly func() (msg string, ok bool)
	// Extra adds fields to the settings answer (Geo status).
	Extra func() map[string]any
	// SitePushes, when set, lists the pushes running on every gate of the
	// site (ok false: the gate has no shared database).
	SitePushes func(ctx context.Context) (pushes []SitePush, ok bool, err error)
	// Transport names where requests come from in the audit log ("api",
	// or "socket" for the local admin socket).
	Transport string
	Log       *slog.Logger
}

// API is the admin API.
type API struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
}

// New returns the API for cfg.
func New(cfg Config) *API {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Transport == "" {
		cfg.Transport = "api"
	}
	a := &API{cfg: cfg, log: cfg.Log.With("transport", cfg.Transport)}
	a.mux = http.NewServeMux()
	a.mux.Handle("GET "+SettingsPath, a.RequireAdmin(http.HandlerFunc(a.getSettings)))
	a.mux.Handle("PUT "+SettingsPath, a.RequireAdmin(http.HandlerFunc(a.putSettings)))
	a.mux.Handle("POST "+SettingsPath, a.RequireAdmin(http.HandlerFunc(a.putSettings)))
	a.mux.HandleFunc(SettingsPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", settingsAllow)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"message": "405 Method Not Allowed"})
	})
	a.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "404 Not Found"})
	})
	return a
}

// Handle adds a handler under /api/ (Geo endpoints); wrap it with
// RequireAdmin where it needs an admin.
func (a *API) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// ServeHTTP serves the API, refusing non-allowed writes during maintenance.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.blockedByMaintenance(r) {
		w.Header().Set("Retry-After", retryAfterSeconds)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"message": MaintenanceWriteMessage})
		return
	}
	a.mux.ServeHTTP(w, r)
}

// blockedByMaintenance mirrors GitLab's read-only middleware: in maintenance,
// write requests are refused unless they are on GitLab's allow list, as far
// as it reaches the API: the settings update itself, internal routes, Geo
// replication (GitLab's geo_replication and gitgate's own Geo endpoints)
// and POSTs ending in /compare.
func (a *API) blockedByMaintenance(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	if !a.cfg.Live.Current().State.Enabled {
		return false
	}
	p := r.URL.Path
	switch r.Method {
	case http.MethodPut:
		return p != SettingsPath
	case http.MethodPost:
		return !(p == SettingsPath ||
			underPath(p, "/api/v4/internal") ||
			underPath(p, "/api/v4/geo_replication") ||
			underPath(p, "/api/v4/geo") ||
			p == "/api/graphql" || // GitLab lets it through and refuses mutations; the gate has none
			strings.HasSuffix(p, "/compare"))
	}
	return true
}

// underPath reports whether p is prefix or a path below it.
func underPath(p, prefix string) bool {
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// RequireAdmin lets only authenticated admins whose token has the api scope
// (or no scopes) through, with GitLab's 401 and 403 bodies.
func (a *API) RequireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := a.cfg.Auth.Authenticate(r)
		var throttled *access.ThrottledError
		switch {
		case errors.As(err, &throttled):
			a.log.Warn("sign-in throttled", "remote_addr", r.RemoteAddr, "path", r.URL.Path)
			w.Header().Set("Retry-After", retryAfter(throttled.Wait))
			writeJSON(w, http.StatusTooManyRequests, map[string]string{"message": "429 Too Many Requests"})
		case err != nil || user == nil:
			a.log.Warn("api authentication failed", "remote_addr", r.RemoteAddr, "path", r.URL.Path, "err", errString(err))
			writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "401 Unauthorized"})
		case !user.Scopes.Has(gitgate.ScopeAPI):
			a.log.Warn("api access denied: the token lacks the api scope", "user", user.Name, "remote_addr", r.RemoteAddr, "path", r.URL.Path)
			writeJSON(w, http.StatusForbidden, map[string]string{
				"error":             "insufficient_scope",
				"error_description": "The request requires higher privileges than provided by the access token.",
				"scope":             "api",
			})
		case !user.Admin:
			a.log.Warn("api access denied: not an admin", "user", user.Name, "remote_addr", r.RemoteAddr, "path", r.URL.Path)
			writeJSON(w, http.StatusForbidden, map[string]string{"message": "403 Forbidden"})
		default:
			next.ServeHTTP(w, r.WithContext(withUser(r.Context(), user)))
		}
	})
}

// retryAfter is d as a Retry-After value: whole seconds, rounded up, at
// least 1.
func retryAfter(d time.Duration) string {
	return strconv.FormatInt(max(1, int64((d+time.Second-1)/time.Second)), 10)
}

type userKey struct{}

func withUser(ctx context.Context, u *gitgate.User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFrom returns the admin that RequireAdmin let through.
func UserFrom(ctx context.Context) *gitgate.User {
	u, _ := ctx.Value(userKey{}).(*gitgate.User)
	return u
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func errString(err error) string {
	if err == nil {
		return "no credentials"
	}
	return err.Error()
}
