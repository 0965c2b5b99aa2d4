package sshd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gliderlabs/ssh"
	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	gossh "golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/gitgate"
)

// Exit statuses of a session, besides git's own.
const (
	exitRefused = 1   // the policy refused, as gitlab-shell does
	exitUsage   = 128 // not a git command, as git itself does for usage errors
)

// What clients see. Refusals go to the session's stderr, each line starting
// with "remote: " like gitlab-shell's so that git shows them as the server's
// words; the greeting goes to stdout. Nothing the client sent is echoed back.
const (
	greetingFormat         = "Welcome to gitgate, @%s!\n"
	disallowedMessage      = "Disallowed command. This server only runs git-upload-pack, git-receive-pack and git-upload-archive."
	malformedMessage       = "Malformed command. Expected a git command and a single-quoted repository path, like git-upload-pack 'group/project.git'."
	invalidPathMessage     = "Invalid repository path. Paths look like group/project.git."
	invalidProtocolMessage = "Invalid GIT_PROTOCOL. Expected version=0, version=1 or version=2."
	keyRevokedMessage      = "Your SSH key is no longer authorized on this server."
	shuttingDownMessage    = "The server is shutting down. Try again in a moment."
	internalErrorMessage   = "Internal server error. It has been logged; try again in a moment."

	// boxRule is gitlab-shell's 72-character rule.
	boxRule = "========================================================================"
)

// errShuttingDown is the reason given for a session channel opened during
// shutdown; OpenSSH shows "channel N: open failed: resource shortage:
// <reason>". The session limits give theirs the same way (see admit).
var errShuttingDown = errors.New("the server is shutting down; try again in a moment")

// Causes of a session's end, for the log.
var (
	errChannelGone = errors.New("session channel closed by the client")
	errConnGone    = errors.New("connection closed")
	errKeyRevoked  = errors.New("the verified key has no owner any more")
	errRunGit      = errors.New("run git")
	errPanic       = errors.New("panic")
)

// session is one SSH "session" channel and the request it runs.
type session struct {
	ch       gossh.Channel
	conn     *conn
	key      gossh.PublicKey // the verified key of the connection
	command  string          // the exec request; "" for a shell request
	protocol string          // the GIT_PROTOCOL environment request, unchecked
	version  string          // the client's SSH version string, for the refusal channel
	// errPacket is set once the command is known to be a push from a
	// client that is told a refusal in the Git protocol too (see refuse).
	errPacket bool
	errSent   bool // an ERR packet was sent

	inputDone chan struct{} // closed when the stdin copy has ended
}

// handleChannel serves a "session" channel: it enforces the session limits,
// accepts only the requests a git client makes (GIT_PROTOCOL, then one exec
// or shell request) and refuses everything else, including pty, X11, agent
// forwarding, subsystems and other environment variables. The session's
// context ends when the client closes the channel or the connection drops.
func (s *Server) handleChannel(_ *ssh.Server, _ *gossh.ServerConn, nc gossh.NewChannel, ctx ssh.Context) {
	c := connFrom(ctx)
	owner := s.sessionOwner(ctx)
	if err := s.admit(c, owner); err != nil {
		s.log.Warn("ssh session refused", "remote_addr", c.remoteAddr, "owner", owner, "err", err)
		nc.Reject(gossh.ResourceShortage, err.Error())
		return
	}
	defer s.release(c, owner)
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	c.touch()
	sctx, cancel := context.WithCancelCause(s.base)
	defer cancel(nil)
	stop := context.AfterFunc(ctx, func() { cancel(errConnGone) })
	defer stop()

	sess := &session{ch: ch, conn: c, key: verifiedKey(ctx), version: ctx.ClientVersion()}
	var done chan struct{}
	for req := range reqs {
		switch {
		case req.Type == "env" && done == nil:
			var kv struct{ Name, Value string }
			ok := gossh.Unmarshal(req.Payload, &kv) == nil && kv.Name == "GIT_PROTOCOL"
			if ok {
				sess.protocol = kv.Value
			}
			req.Reply(ok, nil)
		case (req.Type == "exec" || req.Type == "shell") && done == nil:
			var cmd struct{ Command string }
			if req.Type == "exec" && gossh.Unmarshal(req.Payload, &cmd) != nil {
				req.Reply(false, nil)
				continue
			}
			sess.command = cmd.Command
			req.Reply(true, nil)
			done = make(chan struct{})
			go func() {
				defer close(done)
				s.serve(sctx, sess)
			}()
		default:
			s.log.Debug("ssh request refused", "remote_addr", c.remoteAddr, "request", req.Type)
			req.Reply(false, nil)
		}
	}
	cancel(errChannelGone)
	if done != nil {
		<-done
	}
}

// sessionOwner is the key the sessions of a connection are counted under
// for MaxSessionsPerUser: the user who owns the verified key, or the key
// itself once it has no owner.
func (s *Server) sessionOwner(ctx ssh.Context) string {
	key := verifiedKey(ctx)
	if key == nil {
		return ""
	}
	if u, ok := s.cfg.Keys.UserByKey(key); ok {
		return "user:" + u.Name
	}
	return "key:" + gossh.FingerprintSHA256(key)
}

// admit counts a new session of owner, or says why it may not open.
func (s *Server) admit(c *conn, owner string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.shuttingDown:
		return errShuttingDown
	case c.sessions >= s.cfg.MaxSessionsPerConn:
		return fmt.Errorf("too many sessions on this connection (limit %d)", s.cfg.MaxSessionsPerConn)
	case s.userSessions[owner] >= s.cfg.MaxSessionsPerUser:
		return fmt.Errorf("too many sessions for this user (limit %d); try again later", s.cfg.MaxSessionsPerUser)
	case s.sessions >= s.cfg.MaxSessions:
		return fmt.Errorf("the server is busy: too many sessions (limit %d); try again later", s.cfg.MaxSessions)
	}
	c.sessions++
	s.sessions++
	s.userSessions[owner]++
	s.wg.Add(1)
	return nil
}

// release uncounts a session of owner that has ended. While shutting down,
// a connection is closed once its last session is over.
func (s *Server) release(c *conn, owner string) {
	s.mu.Lock()
	c.sessions--
	s.sessions--
	if s.userSessions[owner]--; s.userSessions[owner] <= 0 {
		delete(s.userSessions, owner)
	}
	idle := s.shuttingDown && c.sessions == 0
	s.mu.Unlock()
	if idle {
		c.close()
	}
	s.wg.Done()
}

// serve runs a session's request, logs it, and ends the session with its
// exit status.
//
// A panic while serving ends only this session, as in gitlab-shell: it is
// logged with its stack, the client gets a one-line error and exit status
// 1, and the server goes on serving.
func (s *Server) serve(ctx context.Context, sess *session) {
	start := time.Now()
	op := gitgate.Operation{Transport: gitgate.TransportSSH, RemoteAddr: sess.conn.remoteAddr}
	status, err := s.gateSessionRecovered(ctx, sess, &op)
	level := slog.LevelInfo // refusals are the client's business
	if errors.Is(err, errRunGit) || errors.Is(err, errPanic) {
		level = slog.LevelWarn
	}
	s.log.LogAttrs(ctx, level, "ssh session",
		slog.String("user", op.User.String()),
		slog.String("repo", op.Repo),
		slog.String("service", string(op.Service)),
		slog.String("remote_addr", op.RemoteAddr),
		slog.String("client_version", sess.version),
		slog.String("git_protocol", sess.protocol),
		slog.Duration("duration", time.Since(start)),
		slog.Int("exit_status", status),
		slog.Any("err", err),
	)
	sess.exit(ctx, status)
}

// gateSessionRecovered runs gateSession and turns a panic into an error
// shown to the client.
func (s *Server) gateSessionRecovered(ctx context.Context, sess *session, op *gitgate.Operation) (status int, err error) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("panic in ssh session", "panic", v, "stack", string(debug.Stack()),
				"user", op.User.String(), "repo", op.Repo, "remote_addr", op.RemoteAddr)
			status, err = sess.fail(exitRefused, internalErrorMessage), fmt.Errorf("%w: %v", errPanic, v)
		}
	}()
	if s.cfg.testHookServe != nil {
		s.cfg.testHookServe(sess.command)
	}
	return s.gateSession(ctx, sess, op)
}

// gateSession is the gate over SSH, top to bottom: authenticate, parse the
// command, resolve the repository, ask the policy, then run git and stream,
// or show the refusal. It fills op in as it learns, for the log, and returns
// the exit status and, for the log, why the session did not simply succeed.
func (s *Server) gateSession(ctx context.Context, sess *session, op *gitgate.Operation) (int, error) {
	// The owner of the key whose signature was verified, looked up again
	// so that a key removed since the login is refused.
	var ok bool
	if sess.key != nil {
		op.User, ok = s.cfg.Keys.UserByKey(sess.key)
	}
	if !ok {
		return sess.fail(exitRefused, keyRevokedMessage), errKeyRevoked
	}
	if sess.command == "" {
		fmt.Fprintf(sess.ch, greetingFormat, op.User.Name)
		return 0, nil
	}

	if lc, isLFS, err := ParseLFSCommand(sess.command); isLFS {
		if err != nil {
			return sess.fail(exitUsage, commandMessage(err)), err
		}
		op.Repo = lc.Path
		return s.lfsAuthenticate(ctx, sess, op, lc.Operation)
	}
	if lc, isLFS, err := ParseLFSTransferCommand(sess.command); isLFS {
		if err != nil {
			return sess.fail(exitUsage, commandMessage(err)), err
		}
		op.Repo = lc.Path
		return s.lfsTransfer(ctx, sess, op, lc.Operation)
	}
	cmd, err := ParseCommand(sess.command)
	if err != nil {
		return sess.fail(exitUsage, commandMessage(err)), err
	}
	op.Service, op.Repo = cmd.Service, cmd.Path
	sess.errPacket = cmd.Service == gitgate.ReceivePack &&
		gitgate.RefusalChannelFor(gitgate.TransportSSH, sess.version) == gitgate.ChannelProtocol
	protocol, err := gitgate.ParseProtocol(sess.protocol)
	if err != nil {
		return sess.fail(exitUsage, invalidProtocolMessage), err
	}

	repo, d := s.cfg.Policy.Open(ctx, s.cfg.Resolver, op)
	if r := d.Refusal(); r != nil {
		s.cfg.Tracker.Refused(*op, r)
		if r.Cause != nil {
			return sess.refuse(r), fmt.Errorf("%w: %w", r, r.Cause)
		}
		return sess.refuse(r), r
	}

	end := s.cfg.Tracker.Begin(*op)
	out := &countingWriter{w: activityWriter{sess.ch, sess.conn}}
	if op.Service == gitgate.ReceivePack && s.cfg.PushProxy != nil {
		err = s.proxyPush(ctx, sess, op, protocol, out)
		var r *gitgate.Refusal
		if errors.As(err, &r) {
			end(gitgate.OutcomeOf(r), out.n)
			return sess.refuse(r), r
		}
		end(outcomeFor(err), out.n)
		if err != nil {
			return sess.fail(exitRefused, proxyFailedMessage), fmt.Errorf("push via the primary: %w", err)
		}
		return 0, nil
	}
	err = s.runGit(ctx, sess, gitgate.Invocation{Op: *op, Repo: repo, Protocol: protocol, Stdout: out})
	var exit *gitgate.ExitError
	var busy *gitgate.Refusal
	if errors.As(err, &busy) {
		end(gitgate.OutcomeOf(busy), 0)
		return sess.refuse(busy), busy
	}
	end(outcomeFor(err), out.n)
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exit):
		return exit.Code, fmt.Errorf("%w: %w", errRunGit, err)
	case errors.Is(context.Cause(ctx), errServerClosed):
		sess.fail(exitRefused, shuttingDownMessage)
	}
	return exitRefused, fmt.Errorf("%w: %w", errRunGit, err)
}

// lfsAuthenticate answers git-lfs-authenticate: the LFS API's URL and a
// short-lived header, as JSON on stdout. Resolving and deciding are the LFS
// server's, with the same policy.
func (s *Server) lfsAuthenticate(ctx context.Context, sess *session, op *gitgate.Operation, operation string) (int, error) {
	if s.cfg.LFS == nil {
		return sess.fail(exitUsage, disallowedMessage), ErrDisallowedCommand
	}
	answer, err := s.cfg.LFS.SSHAuthenticate(ctx, op, operation)
	var r *gitgate.Refusal
	switch {
	case errors.As(err, &r):
		return sess.refuse(r), r
	case err != nil:
		return sess.fail(exitRefused, internalErrorMessage), err
	}
	sess.ch.Write(append(answer, '\n'))
	return 0, nil
}

// lfsTransfer runs a git-lfs-transfer session on the channel. Without an
// LFS server that serves it the command is refused as unknown, and git-lfs
// falls back to git-lfs-authenticate.
func (s *Server) lfsTransfer(ctx context.Context, sess *session, op *gitgate.Operation, operation string) (int, error) {
	t, ok := s.cfg.LFS.(LFSTransferer)
	if !ok || !t.TransferAvailable() {
		return sess.fail(exitUsage, disallowedMessage), ErrDisallowedCommand
	}
	err := t.SSHTransfer(ctx, op, operation, activityReader{sess.ch, sess.conn}, activityWriter{sess.ch, sess.conn})
	var r *gitgate.Refusal
	switch {
	case errors.As(err, &r):
		return sess.refuse(r), r
	case err != nil:
		return exitRefused, fmt.Errorf("git-lfs-transfer: %w", err)
	}
	return 0, nil
}

// runGit runs git for inv with the session's streams. git's stdin is a pipe
// fed from the channel: when the client half-closes (sends EOF, as git does
// after the last pack byte of a push) git sees EOF, and when git exits first
// nothing waits for the client's input.
//
// It first takes a share of the git processes from the limiter (waiting in
// its bounded queue), held until git is reaped; when none comes it returns
// the limiter's *gitgate.Refusal and starts nothing. The connection's idle timeout covers a running git too:
// neither the client's input nor git's output moving closes it.
func (s *Server) runGit(ctx context.Context, sess *session, inv gitgate.Invocation) error {
	release, err := s.cfg.Limiter.Wait(ctx, inv.Op)
	if err != nil {
		return err
	}
	defer release()
	stdin, err := sess.startInput()
	if err != nil {
		return err
	}
	defer stdin.Close()
	inv.Stdin = stdin
	inv.Stderr = activityWriter{sess.ch.Stderr(), sess.conn}
	// A push goes on if the client hangs up once its data is in (its
	// outcome is git's); closing the server still ends it.
	inv.Stop = s.base
	return s.cfg.Runner.Run(ctx, inv)
}

// proxyFailedMessage is shown when a push handed to the primary failed for
// a reason the primary did not explain.
const proxyFailedMessage = "The push could not be completed on the primary site. Try again in a moment."

// proxyPush hands a push to the primary, streaming the client's input.
func (s *Server) proxyPush(ctx context.Context, sess *session, op *gitgate.Operation, protocol string, out io.Writer) error {
	stdin, err := sess.startInput()
	if err != nil {
		return err
	}
	defer stdin.Close()
	return s.cfg.PushProxy.ProxySSHPush(ctx, op.User, op.Repo, protocol, stdin, out)
}

func outcomeFor(err error) gitgate.Outcome {
	if err != nil {
		return gitgate.OutcomeError
	}
	return gitgate.OutcomeOK
}

// countingWriter counts the bytes sent to the client, for metrics.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// startInput starts copying the channel's data to a pipe and returns the
// pipe's reading end.
func (sess *session) startInput() (*os.File, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stdin pipe: %w", err)
	}
	sess.inputDone = make(chan struct{})
	go func() {
		defer close(sess.inputDone)
		io.Copy(pw, activityReader{sess.ch, sess.conn})
		pw.Close()
	}()
	return pr, nil
}

// refuse shows a policy refusal and returns its exit status. Maintenance
// refusals get GitLab's box (REFERENCE.md), the others a single line, on
// stderr. A push from a client that may not show stderr (any SSH client
// but the ones git runs, see gitgate.RefusalChannelFor) is also told in the
// Git protocol: "ERR <message>" on stdout where the ref advertisement would
// start, which the client reports before it sends any pack data.
func (sess *session) refuse(r *gitgate.Refusal) int {
	if sess.errPacket {
		pktline.NewEncoder(sess.ch).Encodef("ERR %s", r.Message)
		sess.errSent = true
	}
	switch r.Kind {
	case gitgate.RefusedMaintenance, gitgate.RefusedStateUnavailable:
		io.WriteString(sess.ch.Stderr(), box(r.Message))
		return exitRefused
	}
	return sess.fail(exitRefused, r.Message)
}

// fail shows a one-line error and returns status.
func (sess *session) fail(status int, msg string) int {
	io.WriteString(sess.ch.Stderr(), "remote: ERROR: "+msg+"\n")
	return status
}

// refusalLinger bounds how long a JSch client's session refused with an ERR
// packet waits for the client to close the channel (see exit).
const refusalLinger = 5 * time.Second

// jschVersion starts the SSH version string of JSch, JGit's SSH client
// before 5.2 ("SSH-2.0-JSCH-0.1.54"; its fork's "SSH-2.0-JSCH_0.2.x").
const jschVersion = "SSH-2.0-JSCH"

// exit ends the session as sshd does: EOF, exit status, close. It then waits
// for the stdin copy, which ends when the client closes the channel.
//
// A push from JSch refused with an ERR packet leaves the close to the
// client, for at most refusalLinger (or until ctx, the session's, ends: the
// client closed the channel or the server is stopping): JSch checks that the
// channel is still open once its exec request is granted, and JGit reports
// one the server closed already as "connection failed", not the ERR packet
// it was sent. JGit closes the channel once it has read the packet. Other
// clients wait for the server's close (Go's x/crypto/ssh Session.Run), so
// they get it at once.
func (sess *session) exit(ctx context.Context, status int) {
	sess.ch.CloseWrite()
	sess.ch.SendRequest("exit-status", false, gossh.Marshal(struct{ Status uint32 }{uint32(status)}))
	if sess.errSent && strings.HasPrefix(sess.version, jschVersion) {
		linger := time.NewTimer(refusalLinger)
		select {
		case <-ctx.Done():
		case <-linger.C:
		}
		linger.Stop()
	}
	sess.ch.Close()
	if sess.inputDone != nil {
		<-sess.inputDone
	}
}

// box frames msg as gitlab-shell does for its errors.
func box(msg string) string {
	var b strings.Builder
	for _, line := range [...]string{"", boxRule, "", msg, "", boxRule, ""} {
		b.WriteString("remote: " + line + "\n")
	}
	return b.String()
}

// commandMessage is the line shown for a ParseCommand error.
func commandMessage(err error) string {
	switch {
	case errors.Is(err, ErrInvalidPath):
		return invalidPathMessage
	case errors.Is(err, ErrMalformedCommand):
		return malformedMessage
	}
	return disallowedMessage
}

// activityReader and activityWriter record session data for the idle timeout.
type activityReader struct {
	r io.Reader
	c *conn
}

func (a activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.c.touch()
	}
	return n, err
}

type activityWriter struct {
	w io.Writer
	c *conn
}

func (a activityWriter) Write(p []byte) (int, error) {
	a.c.touch()
	n, err := a.w.Write(p)
	a.c.touch()
	return n, err
}
