package sshd

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
	"github.com/pires/go-proxyproto"
	gossh "golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/gitgate"
)

// keepAliveRequest is the global request OpenSSH's sshd sends as
// ClientAliveInterval; every client answers it (with a failure, which is
// enough to show it is there).
const keepAliveRequest = "keepalive@openssh.com"

// Keys for the values the server keeps in a connection's ssh.Context.
type (
	connKey          struct{}
	verifiedKeyKey   struct{}
	clientVersionKey struct{} // the client's SSH identification, read by accept
	clientCiphersKey struct{} // the ciphers of the client's KEXINIT, read by accept
)

// errUnknownKey fails authentication with a key that has no owner.
var errUnknownKey = errors.New("unknown public key")

// conn is the server's view of one client connection.
type conn struct {
	raw        net.Conn
	remoteAddr string
	authed     atomic.Bool
	lastActive atomic.Int64 // unix nanoseconds of the last session data
	sessions   int          // open sessions; guarded by Server.mu
}

// touch records session activity for the idle timeout.
func (c *conn) touch() { c.lastActive.Store(time.Now().UnixNano()) }

// idleFor is how long no session data has moved.
func (c *conn) idleFor() time.Duration {
	return time.Since(time.Unix(0, c.lastActive.Load()))
}

// close drops the connection. The SSH layer then fails, which cancels the
// connection's context and so every git process of its sessions.
func (c *conn) close() { c.raw.Close() }

// connFrom returns the conn that accept stored in the connection's context.
func connFrom(ctx ssh.Context) *conn {
	c, _ := ctx.Value(connKey{}).(*conn)
	return c
}

// accept registers a new TCP connection and starts its watcher.
func (s *Server) accept(ctx ssh.Context, nc net.Conn) net.Conn {
	c := &conn{raw: nc, remoteAddr: nc.RemoteAddr().String()}
	c.touch()
	s.mu.Lock()
	if s.shuttingDown {
		s.mu.Unlock()
		return nil // gliderlabs/ssh closes it
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	ctx.SetValue(connKey{}, c)
	go s.watch(ctx, c) // its login grace time bounds the exchange below
	vc := exchangeVersions(withQuickAck(nc))
	ctx.SetValue(clientVersionKey{}, vc.version)
	ctx.SetValue(clientCiphersKey{}, vc.ciphers)
	return vc
}

// watch enforces the per-connection timers until the connection ends: the
// login grace time, the idle timeout and keepalives.
func (s *Server) watch(ctx ssh.Context, c *conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	log := s.log.With("remote_addr", c.remoteAddr)

	var grace, idle <-chan time.Time
	if d := s.cfg.LoginGraceTime; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		grace = t.C
	}
	var idleTimer *time.Timer
	if d := s.cfg.IdleTimeout; d > 0 {
		idleTimer = time.NewTimer(d)
		defer idleTimer.Stop()
		idle = idleTimer.C
	}
	var tick <-chan time.Time
	if d := s.cfg.KeepAliveInterval; d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		tick = t.C
	}
	// At most one keepalive is in flight; replies has room for its answer so
	// that its goroutine never blocks after watch has returned.
	replies := make(chan error, 1)
	inFlight, missed := false, 0

	for {
		select {
		case <-ctx.Done():
			return
		case <-grace:
			if !c.authed.Load() {
				log.Info("ssh connection closed: not authenticated within the login grace time", "grace", s.cfg.LoginGraceTime)
				c.close()
				return
			}
		case <-idle:
			if left := s.cfg.IdleTimeout - c.idleFor(); left > 0 {
				idleTimer.Reset(left)
				continue
			}
			log.Info("ssh connection closed: idle timeout", "idle", s.cfg.IdleTimeout)
			c.close()
			return
		case err := <-replies:
			inFlight, missed = false, 0
			if err != nil {
				return // the connection is gone
			}
		case <-tick:
			sc, _ := ctx.Value(ssh.ContextKeyConn).(*gossh.ServerConn)
			if sc == nil {
				continue // still in the handshake
			}
			if inFlight {
				if missed++; missed >= s.cfg.KeepAliveCountMax {
					log.Info("ssh connection closed: client stopped answering keepalives", "missed", missed)
					c.close()
					return
				}
				continue
			}
			inFlight = true
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				_, _, err := sc.SendRequest(keepAliveRequest, true, nil)
				replies <- err
			}()
		}
	}
}

// offeredKey answers whether a key offered by the client may be used. It is
// called before the client has proven it holds the key, so it records
// nothing: the user is taken from the verified key (see serverConfig).
func (s *Server) offeredKey(_ ssh.Context, key ssh.PublicKey) bool {
	_, ok := s.cfg.Keys.UserByKey(key)
	return ok
}

// serverConfig adds to gliderlabs/ssh's configuration the callback that runs
// once the client has proven, by its signature, that it holds a key, and
// records that key: the one the sessions act for. (gliderlabs/ssh's own
// record is the key its PublicKeyHandler last approved, which is the signed
// one only as long as golang.org/x/crypto/ssh keeps calling back for the key
// it verifies; this does not depend on that.)
func (s *Server) serverConfig(ctx ssh.Context) *gossh.ServerConfig {
	cfg := &gossh.ServerConfig{
		VerifiedPublicKeyCallback: func(_ gossh.ConnMetadata, key gossh.PublicKey, perms *gossh.Permissions, _ string) (*gossh.Permissions, error) {
			user, ok := s.cfg.Keys.UserByKey(key)
			if !ok {
				return nil, errUnknownKey // removed since it was offered
			}
			ctx.SetValue(verifiedKeyKey{}, key)
			if c := connFrom(ctx); c != nil {
				c.authed.Store(true)
				c.touch()
			}
			s.log.Info("ssh authenticated", "user", user.Name, "remote_addr", remoteAddr(ctx), "key", gossh.FingerprintSHA256(key), "key_type", key.Type())
			return perms, nil
		},
	}
	version, _ := ctx.Value(clientVersionKey{}).(string)
	offered, _ := ctx.Value(clientCiphersKey{}).(*clientCiphers)
	cfg.Ciphers = ciphersFor(s.cfg.Ciphers, version, offered)
	return cfg
}

// handshakeFailed logs a connection that never got through the SSH
// handshake and authentication.
func (s *Server) handshakeFailed(nc net.Conn, err error) {
	s.log.Info("ssh connection failed", "remote_addr", nc.RemoteAddr().String(), "err", err)
	var noAuth *gossh.ServerAuthError
	if errors.As(err, &noAuth) {
		s.cfg.Tracker.AuthFailed(gitgate.TransportSSH, "unknown_key")
	}
}

// verifiedKey is the key the client authenticated with, nil if none.
func verifiedKey(ctx ssh.Context) gossh.PublicKey {
	k, _ := ctx.Value(verifiedKeyKey{}).(gossh.PublicKey)
	return k
}

func remoteAddr(ctx ssh.Context) string {
	if a := ctx.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// ProxyProtocolListener wraps ln for the PROXY protocol (v1 and v2), as
// gitlab-sshd does behind a TCP load balancer: a connection from a peer that
// trusted accepts may start with a PROXY header, and then its RemoteAddr is
// the client's, for logs, metrics and limits. The header is optional, and
// must arrive within timeout; a bad or late one fails that connection only.
// Connections from other peers are passed through untouched, so a PROXY
// header from them is just bytes that break their SSH handshake: no one else
// can claim an address. The header is read in the connection's own
// goroutine, never in the accept loop.
func ProxyProtocolListener(ln net.Listener, trusted func(peer net.Addr) bool, timeout time.Duration) net.Listener {
	return &proxyproto.Listener{
		Listener: ln,
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			if trusted(o.Upstream) {
				return proxyproto.USE, nil
			}
			return proxyproto.SKIP, nil
		},
		ReadHeaderTimeout: timeout,
	}
}
