package sshd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/gitgate"
)

// KeyLookup finds the user who owns a public key. It is consulted on every
// authentication and again when a session starts, so a key removed from it is
// refused from then on. It must not do I/O.
type KeyLookup interface {
	UserByKey(key gossh.PublicKey) (*gitgate.User, bool)
}

// Defaults for the zero values of [Config].
const (
	DefaultAddr               = "127.0.0.1:2222"
	DefaultLoginGraceTime     = 30 * time.Second
	DefaultProxyHeaderTimeout = 5 * time.Second
	DefaultIdleTimeout        = 10 * time.Minute
	DefaultKeepAliveInterval  = 15 * time.Second
	DefaultKeepAliveCountMax  = 3
	DefaultMaxSessionsPerConn = 10
	DefaultMaxSessionsPerUser = 20
	DefaultMaxSessions        = 1000
)

// serverSoftware is the software part of the server's SSH identification.
const serverSoftware = "gitgate"

// PushProxy carries out pushes elsewhere: a Geo secondary hands every push
// it would allow to the primary. It streams the client's stdin to the
// primary and the answer to stdout; a *gitgate.Refusal error is shown to
// the user like the server's own refusals.
type PushProxy interface {
	ProxySSHPush(ctx context.Context, user *gitgate.User, repo, protocol string, stdin io.Reader, stdout io.Writer) error
}

// LFSAuthenticator answers git-lfs-authenticate for op (User set, Repo as
// sent) with the JSON git-lfs expects. A *gitgate.Refusal error is shown
// like the server's own refusals.
type LFSAuthenticator interface {
	SSHAuthenticate(ctx context.Context, op *gitgate.Operation, operation string) ([]byte, error)
}

// LFSTransferer runs git-lfs-transfer sessions (the pure-SSH LFS
// protocol) for op (User set, Repo as sent) on the session's streams. An
// LFSAuthenticator that implements it serves that command too, where
// TransferAvailable says so; elsewhere the command is refused as unknown,
// and git-lfs falls back to git-lfs-authenticate. A *gitgate.Refusal error
// is shown like the server's own refusals.
type LFSTransferer interface {
	TransferAvailable() bool
	SSHTransfer(ctx context.Context, op *gitgate.Operation, operation string, stdin io.Reader, stdout io.Writer) error
}

// Config holds a Server's dependencies and limits. Keys, Policy, Resolver,
// Runner and HostKeyDir are required. For the limits, zero means the default;
// a negative duration turns that limit off.
type Config struct {
	// Addr is the TCP address ListenAndServe listens on.
	Addr string
	// HostKeyDir is the data dir, where the host keys are generated on first
	// start and read from afterwards (see [LoadOrCreateHostKeys]).
	HostKeyDir string
	// ExtraHostKeyFiles are more host keys (OpenSSH private key files).
	ExtraHostKeyFiles []string

	Keys     KeyLookup
	Policy   *gitgate.Policy
	Resolver *gitgate.Resolver
	Runner   *gitgate.Runner
	// Tracker counts operations in flight and feeds metrics (optional).
	Tracker *gitgate.Tracker
	// PushProxy, when set, carries out allowed pushes instead of the
	// local git (a Geo secondary).
	PushProxy PushProxy
	// LFS, when set, answers git-lfs-authenticate; without it the command
	// is refused like any other.
	LFS LFSAuthenticator
	// TrustProxyHeader, when set, turns on the PROXY protocol (v1 and v2):
	// a connection from a peer it accepts may start with a PROXY header
	// naming the real client, read within ProxyHeaderTimeout. Anyone
	// else's connection is taken as plain SSH. See [ProxyProtocolListener].
	TrustProxyHeader   func(peer net.Addr) bool
	ProxyHeaderTimeout time.Duration
	Log                *slog.Logger

	// LoginGraceTime is how long a client has to authenticate after it
	// connects.
	LoginGraceTime time.Duration
	// IdleTimeout closes a connection on which no session data has moved
	// for this long. Keepalives do not count as activity.
	IdleTimeout time.Duration
	// KeepAliveInterval is how often the server asks the client whether it
	// is still there; after KeepAliveCountMax unanswered requests in a row
	// the connection is closed and its git processes are ended.
	KeepAliveInterval time.Duration
	KeepAliveCountMax int
	// MaxSessionsPerConn, MaxSessionsPerUser and MaxSessions bound the
	// sessions open at once on one connection, for one user (all their
	// connections) and on the whole server.
	MaxSessionsPerConn int
	MaxSessionsPerUser int
	MaxSessions        int
	// Limiter bounds the git processes run at once (optional; nil: no
	// limit). Share one with the HTTP server.
	Limiter *gitgate.Limiter

	// Ciphers are the ciphers offered, in order (empty: AES-GCM alone to
	// OpenSSH's client on CPUs with AES instructions, [DefaultCiphers] to
	// every other client).
	Ciphers []string

	// testHookServe, when set (by tests), is called as each session starts
	// serving its command.
	testHookServe func(command string)
}

// withDefaults fills the zero values in and checks the rest.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Keys == nil || cfg.Policy == nil || cfg.Resolver == nil || cfg.Runner == nil || cfg.HostKeyDir == "" {
		return cfg, errors.New("sshd: Keys, Policy, Resolver, Runner and HostKeyDir are required")
	}
	if cfg.KeepAliveCountMax < 0 || cfg.MaxSessionsPerConn < 0 || cfg.MaxSessionsPerUser < 0 || cfg.MaxSessions < 0 {
		return cfg, errors.New("sshd: KeepAliveCountMax, MaxSessionsPerConn, MaxSessionsPerUser and MaxSessions must not be negative")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Tracker == nil {
		cfg.Tracker = gitgate.NewTracker(nil)
	}
	if bad, ok := validCiphers(cfg.Ciphers); !ok {
		return cfg, fmt.Errorf("sshd: unsupported cipher %q (supported: %s)", bad, strings.Join(SupportedCiphers(), ", "))
	}
	setDefault(&cfg.ProxyHeaderTimeout, DefaultProxyHeaderTimeout)
	setDefault(&cfg.LoginGraceTime, DefaultLoginGraceTime)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.KeepAliveInterval, DefaultKeepAliveInterval)
	setDefault(&cfg.KeepAliveCountMax, DefaultKeepAliveCountMax)
	setDefault(&cfg.MaxSessionsPerConn, DefaultMaxSessionsPerConn)
	setDefault(&cfg.MaxSessionsPerUser, DefaultMaxSessionsPerUser)
	setDefault(&cfg.MaxSessions, DefaultMaxSessions)
	return cfg, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// errServerClosed is the cause given to the sessions ended by Close.
var errServerClosed = errors.New("ssh server closed")

// Server is the SSH front end of the gate.
type Server struct {
	cfg     Config
	log     *slog.Logger
	signers []gossh.Signer
	srv     *ssh.Server

	// base is the parent of every session's context; Close cancels it, which
	// ends the git processes still running.
	base   context.Context
	cancel context.CancelCauseFunc

	mu           sync.Mutex
	addr         net.Addr
	listeners    map[net.Listener]struct{}
	conns        map[*conn]struct{}
	sessions     int            // open sessions, all connections
	userSessions map[string]int // open sessions by user (key owner)
	shuttingDown bool           // no new connections or sessions
	// wg counts the goroutines the server starts: one watcher per
	// connection (which outlives its sessions and keepalives) and one per
	// session. Only shuttingDown keeps a new count from starting at zero.
	wg sync.WaitGroup
}

// New returns a server for cfg, with its host keys loaded or generated.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	signers, err := LoadOrCreateHostKeys(cfg.HostKeyDir, cfg.ExtraHostKeyFiles)
	if err != nil {
		return nil, fmt.Errorf("sshd: %w", err)
	}
	s := &Server{
		cfg:          cfg,
		log:          cfg.Log.With("transport", gitgate.TransportSSH),
		signers:      signers,
		conns:        make(map[*conn]struct{}),
		listeners:    make(map[net.Listener]struct{}),
		userSessions: make(map[string]int),
	}
	s.base, s.cancel = context.WithCancelCause(context.Background())
	hostSigners := make([]ssh.Signer, len(signers))
	for i, k := range signers {
		hostSigners[i] = k
	}
	s.srv = &ssh.Server{
		Version:                  serverSoftware,
		HostSigners:              hostSigners,
		ConnCallback:             s.accept,
		ServerConfigCallback:     s.serverConfig,
		PublicKeyHandler:         s.offeredKey,
		ConnectionFailedCallback: s.handshakeFailed,
		// Sessions only; no direct-tcpip (-L, -W), no global requests
		// (-R), no subsystems.
		ChannelHandlers:   map[string]ssh.ChannelHandler{"session": s.handleChannel},
		RequestHandlers:   map[string]ssh.RequestHandler{},
		SubsystemHandlers: map[string]ssh.SubsystemHandler{},
	}
	return s, nil
}

// HostKeyFingerprints returns the fingerprints of the host keys the server
// presents, as [Fingerprint] formats them.
func (s *Server) HostKeyFingerprints() []string { return Fingerprints(s.signers) }

// Addr returns the address of the listener Serve was last given, or nil
// before Serve has started.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// ListenAndServe listens on the configured address and serves; see Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("ssh server: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve accepts connections on ln until Shutdown or Close is called or ctx
// ends, and then returns nil. Ending ctx is a hard stop, like Close: running
// sessions are cancelled at once, and Serve returns when they have ended.
// For a graceful stop keep ctx alive and call Shutdown; as with net/http,
// Serve then returns at once, and the program should wait for Shutdown to
// return before it exits.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if s.shuttingDown {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	if s.cfg.TrustProxyHeader != nil {
		ln = ProxyProtocolListener(ln, s.cfg.TrustProxyHeader, s.cfg.ProxyHeaderTimeout)
	}
	s.addr = ln.Addr()
	// The server closes its listeners itself, so that a Shutdown that
	// races with the start of Serve still stops it.
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	s.log.Info("ssh server listening", "addr", ln.Addr().String())
	for _, fp := range s.HostKeyFingerprints() {
		s.log.Info("ssh host key", "fingerprint", fp)
	}

	stop := context.AfterFunc(ctx, func() { s.Close() })
	err := s.srv.Serve(ln)
	if !stop() {
		s.Close() // ctx ended: wait until Close has finished
	}
	s.mu.Lock()
	stopped := s.shuttingDown
	delete(s.listeners, ln)
	s.mu.Unlock()
	if stopped {
		return nil
	}
	return fmt.Errorf("ssh server: %w", err)
}

// stopAccepting marks the server as shutting down, so that it takes no new
// connection or session, and closes its listeners.
func (s *Server) stopAccepting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.shuttingDown {
		s.log.Info("ssh server shutting down")
	}
	s.shuttingDown = true
	for ln := range s.listeners {
		ln.Close()
	}
}

// closeConns closes the open connections, or only those without a session.
func (s *Server) closeConns(idleOnly bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if !idleOnly || c.sessions == 0 {
			c.close()
		}
	}
}

// Shutdown stops the server gracefully: it stops accepting connections,
// refuses new sessions, closes connections as they become idle, and waits for
// the running sessions to end. When ctx ends first, the remaining sessions
// are cancelled (their git processes get SIGTERM, then SIGKILL) and ctx's
// error is returned once they are gone. Either way, when Shutdown returns
// every session has ended and its git process has been reaped.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	s.closeConns(true)
	drained := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(drained)
	}()
	// Wait for the connections, then for what runs on their behalf.
	s.srv.Shutdown(ctx)
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
	}
	s.log.Warn("ssh grace period over: ending the sessions still running")
	s.Close()
	return ctx.Err()
}

// Close stops the server at once: listeners and connections are closed and
// running sessions are cancelled. It returns when every session has ended,
// and always returns nil (it is an io.Closer).
func (s *Server) Close() error {
	s.stopAccepting()
	s.cancel(errServerClosed)
	s.srv.Close() // its only errors are from closing the listeners again
	s.closeConns(false)
	s.wg.Wait()
	return nil
}
