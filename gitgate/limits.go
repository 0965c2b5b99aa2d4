package gitgate

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// BusyMessage is shown, on both transports, when an operation would go over
// one of the [Limits]. It is the whole text the client sees.
const BusyMessage = "The server is busy: too many Git operations are running for you, this repository or the server. Try again in a moment."

// RefusedBusy is the kind of the refusal of an operation that would go over
// a limit: nothing is wrong with the request, it may be tried again later.
// (Its value is apart from the policy's kinds, which count up from 1.)
const RefusedBusy RefusalKind = 100

// ErrBusy is the sentinel refusal for an operation over a limit; the
// refusal [Limiter.Acquire] returns matches it with errors.Is.
var ErrBusy = &Refusal{Kind: RefusedBusy, Message: BusyMessage}

// Default limits, for a small team's server.
const (
	DefaultMaxGit        = 64 // git processes on the whole server
	DefaultMaxGitPerRepo = 16 // on one repository
	DefaultMaxGitPerUser = 8  // for one user, or one address for anonymous clients
	// DefaultMaxGitQueue is how many operations of one user may wait for a
	// slot at once: 32 identical CI clones from one account wait their turn
	// instead of being refused.
	DefaultMaxGitQueue = 64
	// DefaultMaxGitQueueTimeout is how long an operation waits for a slot:
	// long enough for a burst of CI clones to pass through the per-user cap
	// a few at a time (git's clients have no timeout of their own, and a
	// job would rather wait than fail), still a deadline.
	DefaultMaxGitQueueTimeout = 5 * time.Minute
	// MaxGitWaiting bounds the operations waiting on the whole server,
	// whatever the per-user queue: a waiter holds a connection and memory.
	MaxGitWaiting = 1024
)

// Limits caps the git processes that run at once, and the operations that
// wait for one. Zero means the default, a negative value no limit (for
// Queue: none wait, an operation over a limit is refused at once).
type Limits struct {
	Global  int
	PerRepo int
	PerUser int
	// Queue is the number of operations of one user (or anonymous address
	// block) that may wait for a slot at once; more are refused.
	Queue int
	// QueueTimeout is how long an operation waits before it is refused.
	QueueTimeout time.Duration
}

// withDefaults fills the zero limits in.
func (l Limits) withDefaults() Limits {
	for _, f := range []struct {
		v   *int
		def int
	}{{&l.Global, DefaultMaxGit}, {&l.PerRepo, DefaultMaxGitPerRepo}, {&l.PerUser, DefaultMaxGitPerUser}, {&l.Queue, DefaultMaxGitQueue}} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if l.QueueTimeout <= 0 {
		l.QueueTimeout = DefaultMaxGitQueueTimeout
	}
	return l
}

// Limiter hands out the slots that bound the git processes run for clients,
// whatever the transport: one for the server, one per repository and one
// per user (per remote address for anonymous clients). A transport acquires
// a slot after the policy allowed the operation and before git starts, and
// releases it once git has been reaped. It is safe for concurrent use.
//
// An operation over a limit waits in a queue (at most Queue per user, for at
// most QueueTimeout) with [Limiter.Wait]. A freed slot goes to the waiter
// whose user holds the fewest slots at that moment (first come among
// equals), so a burst of one account waits behind itself while everyone
// else's operations go first; its own cap still holds.
type Limiter struct {
	limits Limits

	mu      sync.Mutex
	global  int
	repos   map[string]int
	users   map[string]int
	waiters []*gitWaiter
	queued  map[string]int // waiting, per user
	seq     uint64
}

// gitWaiter is one operation waiting for a slot.
type gitWaiter struct {
	repo, user string
	seq        uint64
	ready      chan struct{} // closed when granted
	granted    bool
}

// NewLimiter returns a limiter with limits (zero values: defaults).
func NewLimiter(limits Limits) *Limiter {
	return &Limiter{limits: limits.withDefaults(), repos: map[string]int{}, users: map[string]int{}, queued: map[string]int{}}
}

// Limits returns the limits in force, defaults filled in.
func (l *Limiter) Limits() Limits { return l.limits }

// UserKey is the key an operation's user is counted under: the user name,
// or for an anonymous client its address block (see [ClientBlock]).
func UserKey(op Operation) string {
	if op.User != nil {
		return "user:" + op.User.Name
	}
	if block, ok := ClientBlock(op.RemoteAddr); ok {
		return "addr:" + block
	}
	return "addr:" + op.RemoteAddr
}

// ClientBlock is the block of addresses one client is counted under, for
// the address addr (an IP address, with or without a port): an IPv4
// address itself, an IPv6 address reduced to its /64, the block a single
// host usually holds (so that a client cannot escape a per-client limit by
// taking another address of its own). ok is false for an unparsable addr.
func ClientBlock(addr string) (block string, ok bool) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return "", false
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String(), true
	}
	return ip.String(), true
}

// Acquire takes a slot for op. It never waits: when a limit is reached it
// returns a *Refusal matching [ErrBusy] whose cause names the limit. The
// release function returns the slot; calling it more than once is harmless.
// A nil Limiter allows everything.
func (l *Limiter) Acquire(op Operation) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	user := UserKey(op)
	l.mu.Lock()
	defer l.mu.Unlock()
	if over := l.overLocked(op.Repo, user); over != nil {
		return nil, &Refusal{Kind: RefusedBusy, Message: BusyMessage, Cause: over}
	}
	l.takeLocked(op.Repo, user)
	return l.releaser(op.Repo, user), nil
}

// Wait takes a slot for op like [Limiter.Acquire], but over a limit it
// waits in the queue, for at most QueueTimeout or until ctx ends. It is
// refused at once (a *Refusal matching [ErrBusy]) when the user's queue or
// the server's is full, and after the wait when no slot came.
func (l *Limiter) Wait(ctx context.Context, op Operation) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	user := UserKey(op)
	l.mu.Lock()
	over := l.overLocked(op.Repo, user)
	// Those waiting go first: a newcomer that fits takes a slot only when
	// no waiter is left (they are granted on every release).
	if over == nil {
		l.takeLocked(op.Repo, user)
		l.mu.Unlock()
		return l.releaser(op.Repo, user), nil
	}
	if l.limits.Queue < 0 || l.queued[user] >= l.limits.Queue || len(l.waiters) >= MaxGitWaiting {
		l.mu.Unlock()
		return nil, &Refusal{Kind: RefusedBusy, Message: BusyMessage, Cause: fmt.Errorf("%w; no room to wait", over)}
	}
	l.seq++
	w := &gitWaiter{repo: op.Repo, user: user, seq: l.seq, ready: make(chan struct{})}
	l.waiters = append(l.waiters, w)
	l.queued[user]++
	l.mu.Unlock()

	timer := time.NewTimer(l.limits.QueueTimeout)
	defer timer.Stop()
	select {
	case <-w.ready:
		return l.releaser(op.Repo, user), nil
	case <-timer.C:
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w.granted { // granted as the wait ended: take it
		return l.releaser(op.Repo, user), nil
	}
	l.removeWaiterLocked(w)
	return nil, &Refusal{Kind: RefusedBusy, Message: BusyMessage, Cause: fmt.Errorf("%w; no slot within %s", over, l.limits.QueueTimeout)}
}

// overLocked names the limit that a slot for repo and user would pass, or
// returns nil.
func (l *Limiter) overLocked(repo, user string) error {
	switch {
	case atLimit(l.global, l.limits.Global):
		return fmt.Errorf("server limit of %d git processes reached", l.limits.Global)
	case atLimit(l.repos[repo], l.limits.PerRepo):
		return fmt.Errorf("limit of %d git processes for repository %s reached", l.limits.PerRepo, repo)
	case atLimit(l.users[user], l.limits.PerUser):
		return fmt.Errorf("limit of %d git processes for %s reached", l.limits.PerUser, user)
	}
	return nil
}

func (l *Limiter) takeLocked(repo, user string) {
	l.global++
	l.repos[repo]++
	l.users[user]++
}

func (l *Limiter) releaser(repo, user string) func() {
	var once sync.Once
	return func() { once.Do(func() { l.release(repo, user) }) }
}

func (l *Limiter) removeWaiterLocked(w *gitWaiter) {
	for i, x := range l.waiters {
		if x == w {
			l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
			break
		}
	}
	if l.queued[w.user]--; l.queued[w.user] <= 0 {
		delete(l.queued, w.user)
	}
}

// grantLocked hands free slots to the waiters that fit, the waiter whose
// user holds the fewest slots first, then the earliest.
func (l *Limiter) grantLocked() {
	for {
		var best *gitWaiter
		for _, w := range l.waiters {
			if l.overLocked(w.repo, w.user) != nil {
				continue
			}
			if best == nil || l.users[w.user] < l.users[best.user] ||
				(l.users[w.user] == l.users[best.user] && w.seq < best.seq) {
				best = w
			}
		}
		if best == nil {
			return
		}
		l.removeWaiterLocked(best)
		l.takeLocked(best.repo, best.user)
		best.granted = true
		close(best.ready)
	}
}

// atLimit reports whether n in use reaches limit (negative: unlimited).
func atLimit(n, limit int) bool { return limit >= 0 && n >= limit }

func (l *Limiter) release(repo, user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.global--
	if l.repos[repo]--; l.repos[repo] <= 0 {
		delete(l.repos, repo)
	}
	if l.users[user]--; l.users[user] <= 0 {
		delete(l.users, user)
	}
	l.grantLocked()
}

// Waiting returns the operations waiting for a slot on the whole server.
func (l *Limiter) Waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.waiters)
}

// InUse returns the slots taken: on the server, for repo, and for op's user.
func (l *Limiter) InUse(op Operation) (global, repo, user int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.global, l.repos[op.Repo], l.users[UserKey(op)]
}
