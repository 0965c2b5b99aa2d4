package pgstore

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/unixsock"
)

// The hook's way through the gate. A hook that opens its own database
// connection pays a PostgreSQL backend start (~10 ms) on every run; the
// gate already holds a pool. So for every push it runs, the gate hands the
// git process a socket and a per-push secret in the environment
// ([HookGate.Start]), and the push's hooks ask the gate instead:
//
//   - "state" (pre-receive): the gate answers from its in-memory state,
//     current through LISTEN/NOTIFY, with its stale bound (an error then).
//   - "register" (reference-transaction prepared): the gate runs the same
//     registration as the hook would ([registerTxn]: the lock, the read and
//     the row in one database transaction, which an enable's lock orders),
//     on a pooled connection, and keeps the row's id in the push's session.
//   - "release" (committed or aborted): the gate deletes the session's
//     newest row.
//
// The rows a gate holds live as long as the push's git process: when git
// exits (killed or not), the gate deletes whatever rows its session still
// holds. They carry an expiry that the gate pushes forward every
// heartbeat, so the rows of a gate that died expire by themselves (and its
// host's other gates drop them at once, their git being gone).
//
// A hook without the environment (a push through another server, or git
// run by hand) or whose gate does not answer on the socket ([ErrNoGate])
// reads the database itself, as before. Every other failure refuses the
// push (fail closed).

// Environment of a push's hooks, set by [HookGate.Start].
const (
	EnvHookSocket = "GITGATE_TXN_SOCKET"
	EnvHookSecret = "GITGATE_TXN_SECRET"
)

// Operations of the hook protocol.
const (
	hookOpState    = "state"
	hookOpRegister = "register"
	hookOpRelease  = "release"
)

// Bounds of the hook protocol.
const (
	maxHookRequest = 4 << 10          // one JSON line
	hookConnTime   = 2 * QueryTimeout // a whole request, answer included
	maxHookConns   = 1024
)

// MinHookTxnTTL is the shortest expiry of a row the gate holds: the
// gate refreshes it every heartbeat (three heartbeats ahead), but never
// less than this ahead, so that a gate that misses a few heartbeats (a
// database hiccup) does not let a row lapse while its update may still be
// committed.
const MinHookTxnTTL = 30 * time.Second

// ErrNoGate is returned by the hook side when no gate answers on the
// socket: the hook then reads the database itself.
var ErrNoGate = errors.New("no gate answers on the hook socket")

// hookRequest is what a hook sends, one JSON line.
type hookRequest struct {
	Secret string `json:"secret"`
	Op     string `json:"op"`
	PID    int    `json:"pid,omitempty"`
}

// hookReply is the gate's answer, one JSON line.
type hookReply struct {
	Enabled bool   `json:"enabled"`
	Message string `json:"message,omitempty"`
	Version uint64 `json:"version"`
	Error   string `json:"error,omitempty"`
}

// hookSession is one push's git process.
type hookSession struct {
	repo string
	rows []int64 // registered, newest last
}

// HookGate answers the hooks of the pushes a gate runs (see above). It
// implements gitgate.SessionHook.
type HookGate struct {
	db        *DB
	socket    string
	state     func() (gitgate.State, error)
	host      string
	heartbeat time.Duration
	ttl       time.Duration
	log       *slog.Logger

	mu       sync.Mutex
	sessions map[string]*hookSession
	idle     chan struct{} // closed and replaced when a session ends
	work     sync.WaitGroup

	served [3]atomic.Uint64 // state, register, release
}

// NewHookGate returns the hook gate of a gate on db, listening on socket;
// state answers pre-receive (the gate's in-memory state and its error);
// heartbeat is how often held rows are refreshed (0: 2 s).
func (db *DB) NewHookGate(socket string, state func() (gitgate.State, error), heartbeat time.Duration) *HookGate {
	if heartbeat <= 0 {
		heartbeat = 2 * time.Second
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	return &HookGate{db: db, socket: socket, state: state, host: host, heartbeat: heartbeat,
		ttl: max(3*heartbeat, MinHookTxnTTL), log: db.log, sessions: map[string]*hookSession{}, idle: make(chan struct{})}
}

// Listen listens on the gate's socket, for its owner only, replacing a
// socket left by a gate that died.
func (h *HookGate) Listen() (net.Listener, error) {
	ln, err := unixsock.ListenPrivate(h.socket)
	if err != nil {
		return nil, fmt.Errorf("hook socket: %w", err)
	}
	return ln, nil
}

// Start implements gitgate.SessionHook for a push: the environment that
// lets its hooks reach the gate, and the function, called once git has
// exited, that ends the session and deletes the rows it still holds.
func (h *HookGate) Start(inv gitgate.Invocation) (env []string, done func()) {
	var b [24]byte
	rand.Read(b[:])
	secret := hex.EncodeToString(b[:])
	h.mu.Lock()
	h.sessions[secret] = &hookSession{repo: inv.Repo.Path}
	h.mu.Unlock()
	env = []string{EnvHookSocket + "=" + h.socket, EnvHookSecret + "=" + secret}
	return env, func() {
		h.mu.Lock()
		rows := h.sessions[secret].rows
		h.sessions[secret].rows = nil
		delete(h.sessions, secret)
		close(h.idle)
		h.idle = make(chan struct{})
		h.mu.Unlock()
		if len(rows) > 0 {
			h.drop(rows, "git exited")
		}
	}
}

// drop deletes rows in the background (git has exited; the runner need
// not wait for the database).
func (h *HookGate) drop(ids []int64, why string) {
	h.work.Add(1)
	go func() {
		defer h.work.Done()
		ctx, cancel := timeout(context.Background())
		defer cancel()
		if _, err := h.db.pool.Exec(ctx, `DELETE FROM ref_transactions WHERE id = ANY($1)`, ids); err != nil {
			h.log.Warn("cannot remove ref transactions from the database; they expire", "reason", why, "err", h.db.scrub(err))
		}
	}()
}

// Served returns how many requests the gate answered, by operation:
// pre-receive's state, registrations and releases.
func (h *HookGate) Served() (state, register, release uint64) {
	return h.served[0].Load(), h.served[1].Load(), h.served[2].Load()
}

// Serve answers hooks on ln and refreshes the held rows until ctx ends and
// then, for at most grace, until no push runs; then it closes ln, waits for
// its connections and deletes the rows still held.
func (h *HookGate) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	var conns sync.WaitGroup
	sem := make(chan struct{}, maxHookConns)
	accepted := make(chan error, 1)
	go func() {
		delay := 5 * time.Millisecond
		for {
			conn, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				accepted <- err
				return
			}
			if err != nil {
				// Out of descriptors, say: go on after a pause, as
				// net/http does; meanwhile hooks fail closed.
				h.log.Warn("hook socket: accept failed", "err", err)
				time.Sleep(delay)
				delay = min(2*delay, time.Second)
				continue
			}
			delay = 5 * time.Millisecond
			select {
			case sem <- struct{}{}:
			default:
				conn.Close() // the hook fails closed
				continue
			}
			conns.Add(1)
			go func() {
				defer func() { <-sem; conns.Done() }()
				h.serveConn(conn)
			}()
		}
	}()
	tick := time.NewTicker(h.heartbeat)
	defer tick.Stop()
	var err error
	stopping := ctx.Done()
	var graceOver <-chan time.Time
loop:
	for {
		h.mu.Lock()
		n, idle := len(h.sessions), h.idle
		h.mu.Unlock()
		if stopping == nil && n == 0 {
			break
		}
		select {
		case <-stopping:
			stopping = nil
			t := time.NewTimer(grace)
			defer t.Stop()
			graceOver = t.C
		case <-graceOver:
			break loop
		case <-idle:
		case err = <-accepted:
			// The listener was closed under the gate (it is closed
			// only below): the pushes' rows go when their git exits.
			err = fmt.Errorf("hook socket: %w", err)
			break loop
		case <-tick.C:
			h.refresh(ctx)
		}
	}
	ln.Close()
	if err == nil {
		<-accepted
	}
	conns.Wait()
	if err != nil {
		h.work.Wait()
		return err
	}
	h.mu.Lock()
	var left []int64
	for _, s := range h.sessions {
		left = append(left, s.rows...)
		s.rows = nil
	}
	h.mu.Unlock()
	if len(left) > 0 {
		h.drop(left, "gate stopping")
	}
	h.work.Wait()
	return err
}

// refresh pushes the expiry of every held row forward.
func (h *HookGate) refresh(ctx context.Context) {
	h.mu.Lock()
	var ids []int64
	for _, s := range h.sessions {
		ids = append(ids, s.rows...)
	}
	h.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	ctx, cancel := timeout(context.WithoutCancel(ctx))
	defer cancel()
	if _, err := h.db.pool.Exec(ctx, `UPDATE ref_transactions SET expires_at = now() + $2::interval WHERE id = ANY($1)`, ids, h.ttl); err != nil {
		h.log.Warn("cannot refresh the ref transactions in flight in the database", "err", h.db.scrub(err))
	}
}

// serveConn answers one request.
func (h *HookGate) serveConn(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(hookConnTime))
	line, err := bufio.NewReader(io.LimitReader(conn, maxHookRequest)).ReadSlice('\n')
	if err != nil {
		return
	}
	var req hookRequest
	if err := json.Unmarshal(line, &req); err != nil {
		return
	}
	reply := h.answer(req)
	data, _ := json.Marshal(reply)
	conn.Write(append(data, '\n'))
}

// answer does what req asks. Errors are for the gate's log and a short
// reason for the hook; the hook shows its own refusal.
func (h *HookGate) answer(req hookRequest) hookReply {
	h.mu.Lock()
	sess := h.sessions[req.Secret]
	h.mu.Unlock()
	if sess == nil || req.Secret == "" {
		h.log.Warn("hook request with an unknown secret", "op", req.Op)
		return hookReply{Error: "unknown session"}
	}
	fail := func(err error) hookReply {
		h.log.Error("hook request failed: refusing the push", "op", req.Op, "repo", sess.repo, "err", err)
		return hookReply{Error: "the gate cannot read the state"}
	}
	switch req.Op {
	case hookOpState:
		h.served[0].Add(1)
		st, err := h.state()
		if err != nil {
			return fail(err)
		}
		return hookReply{Enabled: st.Enabled, Message: st.Message, Version: st.Version}
	case hookOpRegister:
		h.served[1].Add(1)
		if req.PID <= 1 {
			return hookReply{Error: "bad git process"}
		}
		ctx, cancel := timeout(context.Background())
		defer cancel()
		st, id, err := registerTxn(ctx, h.db.pool, TxnOwner{Host: h.host, PID: req.PID, Repo: sess.repo}, h.ttl)
		if id != 0 {
			h.mu.Lock()
			if _, live := h.sessions[req.Secret]; live {
				sess.rows = append(sess.rows, id)
				id = 0
			}
			h.mu.Unlock()
			if id != 0 { // git exited meanwhile
				h.drop([]int64{id}, "git exited")
			}
		}
		if err != nil {
			return fail(h.db.scrub(err))
		}
		return hookReply{Enabled: st.Enabled, Message: st.Message, Version: st.Version}
	case hookOpRelease:
		h.served[2].Add(1)
		h.mu.Lock()
		var id int64
		if n := len(sess.rows); n > 0 {
			id, sess.rows = sess.rows[n-1], sess.rows[:n-1]
		}
		h.mu.Unlock()
		if id == 0 {
			return hookReply{}
		}
		ctx, cancel := timeout(context.Background())
		defer cancel()
		if _, err := h.db.pool.Exec(ctx, `DELETE FROM ref_transactions WHERE id = $1`, id); err != nil {
			// It expires: the gate no longer refreshes it.
			h.log.Warn("cannot remove a ref transaction from the database; it expires", "repo", sess.repo, "err", h.db.scrub(err))
			return hookReply{Error: "not removed"}
		}
		return hookReply{}
	}
	return hookReply{Error: "unknown operation"}
}

// HookEnv returns the socket and secret the gate gave this hook, empty
// when it runs for no gate.
func HookEnv() (socket, secret string) { return os.Getenv(EnvHookSocket), os.Getenv(EnvHookSecret) }

// askGate sends one request to the gate and reads its answer. It fails
// with ErrNoGate when nothing listens on socket.
func askGate(ctx context.Context, socket string, req hookRequest) (hookReply, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return hookReply{}, fmt.Errorf("%w: %w", ErrNoGate, err)
		}
		return hookReply{}, fmt.Errorf("hook socket: %w", err)
	}
	defer conn.Close()
	deadline := time.Now().Add(hookConnTime)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	data, _ := json.Marshal(req)
	if _, err := conn.Write(append(data, '\n')); err != nil {
		return hookReply{}, fmt.Errorf("hook socket: %w", err)
	}
	line, err := bufio.NewReader(io.LimitReader(conn, maxHookRequest)).ReadSlice('\n')
	if err != nil {
		return hookReply{}, fmt.Errorf("hook socket: no answer from the gate: %w", err)
	}
	var reply hookReply
	if err := json.Unmarshal(line, &reply); err != nil {
		return hookReply{}, fmt.Errorf("hook socket: %w", err)
	}
	if reply.Error != "" {
		return reply, fmt.Errorf("the gate: %s", reply.Error)
	}
	return reply, nil
}

func (r hookReply) state() gitgate.State {
	return gitgate.State{Enabled: r.Enabled, Message: r.Message, Version: r.Version}
}

// GateState asks the gate of the push for the maintenance state
// (pre-receive). ErrNoGate: read the database instead.
func GateState(ctx context.Context, socket, secret string) (gitgate.State, error) {
	r, err := askGate(ctx, socket, hookRequest{Secret: secret, Op: hookOpState})
	if err != nil {
		return gitgate.State{}, err
	}
	return r.state(), nil
}

// GateRegister asks the gate of the push to register a ref transaction of
// git process pid and returns the state read with it (see [RegisterTxn]).
// ErrNoGate: register in the database instead.
func GateRegister(ctx context.Context, socket, secret string, pid int) (gitgate.State, error) {
	r, err := askGate(ctx, socket, hookRequest{Secret: secret, Op: hookOpRegister, PID: pid})
	if err != nil {
		return gitgate.State{}, err
	}
	return r.state(), nil
}

// GateRelease asks the gate of the push to remove its newest registered
// ref transaction. ErrNoGate: remove it from the database instead.
func GateRelease(ctx context.Context, socket, secret string) error {
	_, err := askGate(ctx, socket, hookRequest{Secret: secret, Op: hookOpRelease})
	return err
}

var _ gitgate.SessionHook = (*HookGate)(nil)
