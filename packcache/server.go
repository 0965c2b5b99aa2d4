package packcache

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/unixsock"
)

// Bounds of the socket server.
const (
	requestTimeout = 30 * time.Second // to read a hook's request
	writeIdle      = 10 * time.Minute // a hook that reads nothing for this long is dropped
	maxConns       = 4096
	socketBuffer   = 4 << 20 // so that a frame or several are in flight

	// stdinBudget bounds the stdin held by all requests at once: a fetch
	// whose haves name most objects of a large repository sends MaxStdin,
	// and --max-git of them would otherwise hold 64 × 32 MiB.
	stdinBudget = 4 * MaxStdin
)

// Server answers the pack-objects hook on a Unix socket and hands out the
// per-process secrets that let a hook in. It implements
// gitgate.PackObjectsHook.
type Server struct {
	cache   *Cache
	socket  string
	hookCmd string
	log     *slog.Logger

	stdin       *semaphore.Weighted // bytes of stdin held by requests (stdinBudget)
	readTimeout time.Duration       // to read a request (requestTimeout)

	mu       sync.Mutex
	sessions map[string]session
	idle     chan struct{} // closed and replaced when a session ends
	wg       sync.WaitGroup
}

// session is what a secret stands for: one upload-pack run.
type session struct {
	repoPath, repo, user string
}

// NewServer returns a server for cache on the Unix socket path; hookCmd
// is the shell command git runs as uploadpack.packObjectsHook (git appends
// "git pack-objects ..." to it).
func NewServer(cache *Cache, socket, hookCmd string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cache: cache, socket: socket, hookCmd: hookCmd, log: log,
		stdin: semaphore.NewWeighted(stdinBudget), readTimeout: requestTimeout, sessions: map[string]session{}, idle: make(chan struct{})}
}

// Listen listens on the server's socket, readable by its owner only,
// replacing a socket left by a gate that died.
func (s *Server) Listen() (net.Listener, error) {
	ln, err := unixsock.ListenPrivate(s.socket)
	if err != nil {
		return nil, fmt.Errorf("pack-objects socket: %w", err)
	}
	return ln, nil
}

// Start implements gitgate.PackObjectsHook: it returns the environment that
// makes upload-pack run the hook for inv, and the function that ends the
// secret once git has exited.
func (s *Server) Start(inv gitgate.Invocation) (env []string, done func()) {
	var b [24]byte
	rand.Read(b[:])
	secret := hex.EncodeToString(b[:])
	s.mu.Lock()
	s.sessions[secret] = session{repoPath: inv.Repo.Path, repo: inv.Repo.Name, user: gitgate.UserKey(inv.Op)}
	s.mu.Unlock()
	env = []string{
		"GIT_CONFIG_COUNT=1",
		"GIT_CONFIG_KEY_0=uploadpack.packObjectsHook",
		"GIT_CONFIG_VALUE_0=" + s.hookCmd,
		EnvSocket + "=" + s.socket,
		EnvSecret + "=" + secret,
	}
	return env, func() {
		s.mu.Lock()
		delete(s.sessions, secret)
		close(s.idle)
		s.idle = make(chan struct{})
		s.mu.Unlock()
	}
}

// WaitIdle waits until no upload-pack started with the hook is running, or
// ctx ends.
func (s *Server) WaitIdle(ctx context.Context) error {
	for {
		s.mu.Lock()
		n, idle := len(s.sessions), s.idle
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Serve answers hooks on ln until ctx ends, then waits for the
// connections in progress.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	sem := make(chan struct{}, maxConns)
	defer s.wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("pack-objects socket: %w", err)
		}
		select {
		case sem <- struct{}{}:
		default:
			conn.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-sem }()
			defer conn.Close()
			stopConn := context.AfterFunc(ctx, func() { conn.Close() })
			defer stopConn()
			s.handle(ctx, conn)
		}()
	}
}

// deadlineWriter sets a write deadline before each write.
type deadlineWriter struct{ c net.Conn }

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.c.SetWriteDeadline(time.Now().Add(writeIdle))
	return d.c.Write(p)
}

func (s *Server) handle(ctx context.Context, conn net.Conn) {
	if uc, ok := conn.(*net.UnixConn); ok {
		uc.SetWriteBuffer(socketBuffer)
	}
	deadline := time.Now().Add(s.readTimeout)
	conn.SetReadDeadline(deadline)
	greeting, pipe, err := recvGreeting(conn)
	var r *bufio.Reader
	var secret string
	var args []string
	if err == nil {
		r = bufio.NewReader(io.MultiReader(bytes.NewReader(greeting), conn))
		secret, args, err = readRequestHead(r)
	}
	mu := &sync.Mutex{}
	w := deadlineWriter{conn}
	var stdout io.Writer = frameWriter{mu: mu, w: w, whole: true, t: frameStdout}
	if pipe != nil {
		// The pack goes into upload-pack's pipe; it must be closed before
		// the exit frame lets the hook exit, so that upload-pack reads the
		// end of the pack when the hook has gone.
		stdout = pipe
		defer pipe.Close()
	}
	stderr := frameWriter{mu: mu, w: w, t: frameStderr}
	exit := func(code int) {
		if pipe != nil {
			pipe.Close()
		}
		frameWriter{mu: mu, w: w, t: frameExit}.Write([]byte{byte(code)})
	}
	if err != nil {
		s.log.Warn("pack-objects hook: bad request", "err", err)
		return
	}
	// Who is asking is known before the stdin is read: nothing but a
	// request of a running upload-pack makes the gate hold its stdin.
	s.mu.Lock()
	sess, ok := s.sessions[secret]
	s.mu.Unlock()
	if !ok {
		s.log.Warn("pack-objects hook: unknown secret")
		fmt.Fprintln(stderr, "fatal: pack-objects hook: not started by this gate")
		exit(128)
		return
	}
	if err := CheckArgs(args); err != nil {
		s.log.Warn("pack-objects hook: arguments refused", "repo", sess.repo, "user", sess.user, "args", strings.Join(args, " "), "err", err)
		fmt.Fprintln(stderr, "fatal: pack-objects hook: unexpected arguments")
		exit(128)
		return
	}
	readCtx, cancelRead := context.WithDeadline(ctx, deadline)
	stdin, release, err := readStdin(readCtx, r, s.stdin)
	cancelRead()
	conn.SetReadDeadline(time.Time{})
	if errors.Is(err, errStdinBudget) {
		s.log.Warn("pack-objects refused", "repo", sess.repo, "user", sess.user, "err", err)
		fmt.Fprintln(stderr, gitgate.BusyMessage)
		exit(128)
		return
	}
	if err != nil {
		s.log.Warn("pack-objects hook: bad request", "repo", sess.repo, "user", sess.user, "err", err)
		return
	}
	// A generation that goes on after this request (for the others) keeps
	// its stdin until it ends; the limiter bounds those.
	defer release()
	// The hook sends nothing after its request: a read that returns means
	// it has gone (its upload-pack died with the client), and so has the
	// reader of what this request would write. Its wait for a slot and a
	// pack-objects run for it alone end then; a cache generation goes on
	// for the others.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if pipe != nil {
		stop := context.AfterFunc(ctx, pipe.cancel)
		defer stop()
		s.cache.stats.Spliced.Add(1)
	}
	go func() {
		var b [1]byte
		conn.Read(b[:])
		cancel()
	}()
	req := Request{RepoPath: sess.repoPath, Repo: sess.repo, User: sess.user, Args: args, Stdin: stdin}
	code, err := s.cache.Serve(ctx, req, stdout, stderr)
	if IsBusy(err) {
		s.log.Warn("pack-objects refused", "repo", sess.repo, "user", sess.user, "err", err)
		fmt.Fprintln(stderr, gitgate.BusyMessage)
	} else if err != nil && ctx.Err() == nil {
		s.log.Warn("pack-objects", "repo", sess.repo, "user", sess.user, "err", err)
	}
	exit(code)
}
