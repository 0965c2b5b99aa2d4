package httpgit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// Authenticator finds the user behind a request's credentials. It returns
// (nil, nil) for a request without credentials (anonymous) and an error for
// credentials that are wrong; the error's text is not shown to the client.
type Authenticator interface {
	Authenticate(r *http.Request) (*gitgate.User, error)
}

// Anonymous is the Authenticator for a gate without users: every request is
// anonymous.
type Anonymous struct{}

// Authenticate always returns the anonymous user.
func (Anonymous) Authenticate(*http.Request) (*gitgate.User, error) { return nil, nil }

// PushProxy carries out pushes elsewhere: a Geo secondary hands every push
// it would allow to the primary, which applies its own rules and state.
type PushProxy interface {
	ProxyHTTPPush(w http.ResponseWriter, r *http.Request, user *gitgate.User, repo string)
}

// Config holds a Server's dependencies and limits. Policy, Resolver,
// Runner, Auth and Ready are required.
type Config struct {
	Policy   *gitgate.Policy
	Resolver *gitgate.Resolver
	Runner   *gitgate.Runner
	Auth     Authenticator
	// Ready reports whether the gate can serve (state readable, repository
	// root reachable); readiness answers 503 with its error.
	Ready func(ctx context.Context) error
	// ReadyDetails, when set, adds a "details" object to the readiness
	// answer (a Geo secondary's staleness).
	ReadyDetails func() any
	// Tracker counts operations in flight and feeds metrics (optional).
	Tracker *gitgate.Tracker
	// LFS, when set, serves the Git LFS API: every path with /info/lfs/
	// (see package lfs). Without it those paths are 404.
	LFS http.Handler
	// PushProxy, when set, serves allowed pushes (both the advertisement
	// and the POST) instead of the local git (a Geo secondary).
	PushProxy PushProxy
	// ClientAddr, when set, gives the client's address behind trusted
	// proxies (see access.TrustedProxies); it replaces r.RemoteAddr for
	// every handler, so logs, throttling, audit and metrics see the client.
	ClientAddr func(r *http.Request) string
	// Limiter bounds the git processes run at once (optional; nil: no
	// limit). Share one with the SSH server.
	Limiter *gitgate.Limiter
	Log     *slog.Logger

	// MaxRequestBody bounds a fetch's request body after decompression
	// (zero: DefaultMaxRequestBody; negative: no limit).
	MaxRequestBody int64
	// MaxInflatedBody bounds any gzip-compressed request body after
	// decompression (zero: DefaultMaxInflatedBody; negative: no limit).
	MaxInflatedBody int64
	// BodyIdleTimeout ends a Git request whose client sent nothing, or
	// read nothing of the answer, for this long; its git ends with it
	// (zero: DefaultBodyIdleTimeout; negative: no timeout).
	BodyIdleTimeout time.Duration
}

// Server is the smart HTTP front end of the gate.
type Server struct {
	cfg          Config
	log          *slog.Logger
	mux          *http.ServeMux
	shuttingDown atomic.Bool
	// hardStop ends when Serve's grace period is over: pushes outlive
	// their client, not the server. Set by Serve before it accepts.
	hardStop context.Context
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Policy == nil || cfg.Resolver == nil || cfg.Runner == nil || cfg.Auth == nil || cfg.Ready == nil {
		return nil, errors.New("httpgit: Policy, Resolver, Runner, Auth and Ready are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Tracker == nil {
		cfg.Tracker = gitgate.NewTracker(nil)
	}
	if cfg.MaxRequestBody == 0 {
		cfg.MaxRequestBody = DefaultMaxRequestBody
	}
	if cfg.MaxInflatedBody == 0 {
		cfg.MaxInflatedBody = DefaultMaxInflatedBody
	}
	if cfg.BodyIdleTimeout == 0 {
		cfg.BodyIdleTimeout = DefaultBodyIdleTimeout
	}
	s := &Server{cfg: cfg, log: cfg.Log.With("transport", gitgate.TransportHTTP)}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /-/health", s.health)
	s.mux.HandleFunc("GET /-/readiness", s.readiness)
	return s, nil
}

// Handle registers another handler (the admin API, metrics) on the server's
// mux, with the pattern syntax of net/http.ServeMux.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// ServeHTTP dispatches to the probe and registered handlers, and everything
// else to the Git endpoints. Git paths bypass ServeMux on purpose: it would
// answer a path with ".." by a redirect to the cleaned path, and the gate
// answers every name it does not serve with the same 404 instead.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.cfg.ClientAddr != nil {
		if addr := s.cfg.ClientAddr(r); addr != r.RemoteAddr {
			r = r.WithContext(r.Context()) // a shallow copy
			r.RemoteAddr = addr
		}
	}
	if strings.HasPrefix(r.URL.Path, "/-/") || strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/metrics" {
		s.mux.ServeHTTP(w, r)
		return
	}
	if s.cfg.LFS != nil && strings.Contains(r.URL.Path, "/info/lfs/") {
		s.cfg.LFS.ServeHTTP(w, r)
		return
	}
	s.serveGit(w, r)
}

// Serve accepts connections on ln until ctx is done, then shuts down
// gracefully: readiness turns to 503, no new connections are accepted, and
// running requests get up to grace to finish before their contexts (and so
// their git processes) are cancelled. It returns when every handler has
// returned.
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	hardStop, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	s.hardStop = hardStop
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return hardStop },
		ConnContext:       withConn,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	s.shuttingDown.Store(true)
	s.log.Info("http server shutting down", "grace", grace)
	graceCtx, graceCancel := context.WithTimeout(context.Background(), grace)
	defer graceCancel()
	err := srv.Shutdown(graceCtx)
	if err != nil {
		s.log.Warn("grace period over: ending the requests still running", "err", err)
		cancel(errors.New("server shut down"))
		srv.Close()
	}
	<-errc // Serve has returned http.ErrServerClosed
	return nil
}

// BeginShutdown makes readiness answer 503 ahead of Serve's own shutdown,
// for a process that stops several servers together.
func (s *Server) BeginShutdown() { s.shuttingDown.Store(true) }

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintln(w, "gitgate OK")
}

func (s *Server) readiness(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	answer := struct {
		Status  string `json:"status"`
		Message string `json:"message,omitempty"`
		Details any    `json:"details,omitempty"`
	}{Status: "ok"}
	if s.cfg.ReadyDetails != nil {
		answer.Details = s.cfg.ReadyDetails()
	}
	status := http.StatusOK
	switch {
	case s.shuttingDown.Load():
		status, answer.Status, answer.Message = http.StatusServiceUnavailable, "failed", "shutting down"
	default:
		if err := s.cfg.Ready(r.Context()); err != nil {
			s.log.Warn("not ready", "err", err)
			status, answer.Status, answer.Message = http.StatusServiceUnavailable, "failed", "not ready; see the server log"
		}
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(answer)
}
