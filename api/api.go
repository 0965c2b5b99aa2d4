package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
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

// DefaultMaintenanceBody is the 503 message when no banner is set (GitLab's).
const DefaultMaintenanceBody = "GitLab is undergoing maintenance"

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
		msg := a.cfg.Live.Current().State.Message
		if msg == "" {
			msg = DefaultMaintenanceBody
		}
		w.Header().Set("Retry-After", retryAfterSeconds)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"message": msg})
		return
	}
	a.mux.ServeHTTP(w, r)
}

// blockedByMaintenance mirrors GitLab's read-only middleware: in maintenance,
// write requests are refused unless they are on the allow list (the settings
// update itself, sign-in, OAuth tokens, internal and Geo routes).
func (a *API) blockedByMaintenance(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	if !a.cfg.Live.Current().State.Enabled {
		return false
	}
	p := r.URL.Path
	return !(p == SettingsPath ||
		strings.HasPrefix(p, "/api/v4/internal/") ||
		strings.HasPrefix(p, "/api/v4/geo/") ||
		p == "/oauth/token")
}

// RequireAdmin lets only authenticated admins through, with GitLab's 401 and
// 403 bodies.
func (a *API) RequireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := a.cfg.Auth.Authenticate(r)
		var throttled *access.ThrottledError
		switch {
		case errors.As(err, &throttled):
			a.log.Warn("sign-in throttled", "remote_addr", r.RemoteAddr, "path", r.URL.Path)
			w.Header().Set("Retry-After", strings.TrimSuffix(throttled.Wait.Round(time.Second).String(), "s"))
			writeJSON(w, http.StatusTooManyRequests, map[string]string{"message": "429 Too Many Requests"})
		case err != nil || user == nil:
			a.log.Warn("api authentication failed", "remote_addr", r.RemoteAddr, "path", r.URL.Path, "err", errString(err))
			writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "401 Unauthorized"})
		case !user.Admin:
			a.log.Warn("api access denied: not an admin", "user", user.Name, "remote_addr", r.RemoteAddr, "path", r.URL.Path)
			writeJSON(w, http.StatusForbidden, map[string]string{"message": "403 Forbidden"})
		default:
			next.ServeHTTP(w, r.WithContext(withUser(r.Context(), user)))
		}
	})
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
