package gitgate

import (
	"fmt"
	"net/netip"
	"sync"
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
)

// Limits caps the git processes that run at once. Zero means the default, a
// negative value no limit.
type Limits struct {
	Global  int
	PerRepo int
	PerUser int
}

// withDefaults fills the zero limits in.
func (l Limits) withDefaults() Limits {
	for _, f := range []struct {
		v   *int
		def int
	}{{&l.Global, DefaultMaxGit}, {&l.PerRepo, DefaultMaxGitPerRepo}, {&l.PerUser, DefaultMaxGitPerUser}} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	return l
}

// Limiter hands out the slots that bound the git processes run for clients,
// whatever the transport: one for the server, one per repository and one
// per user (per remote address for anonymous clients). A transport acquires
// a slot after the policy allowed the operation and before git starts, and
// releases it once git has been reaped. It is safe for concurrent use.
type Limiter struct {
	limits Limits

	mu     sync.Mutex
	global int
	repos  map[string]int
	users  map[string]int
}

// NewLimiter returns a limiter with limits (zero values: defaults).
func NewLimiter(limits Limits) *Limiter {
	return &Limiter{limits: limits.withDefaults(), repos: map[string]int{}, users: map[string]int{}}
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
	var over error
	switch {
	case atLimit(l.global, l.limits.Global):
		over = fmt.Errorf("server limit of %d git processes reached", l.limits.Global)
	case atLimit(l.repos[op.Repo], l.limits.PerRepo):
		over = fmt.Errorf("limit of %d git processes for repository %s reached", l.limits.PerRepo, op.Repo)
	case atLimit(l.users[user], l.limits.PerUser):
		over = fmt.Errorf("limit of %d git processes for %s reached", l.limits.PerUser, user)
	}
	if over != nil {
		return nil, &Refusal{Kind: RefusedBusy, Message: BusyMessage, Cause: over}
	}
	l.global++
	l.repos[op.Repo]++
	l.users[user]++
	var once sync.Once
	return func() { once.Do(func() { l.release(op.Repo, user) }) }, nil
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
}

// InUse returns the slots taken: on the server, for repo, and for op's user.
func (l *Limiter) InUse(op Operation) (global, repo, user int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.global, l.repos[op.Repo], l.users[UserKey(op)]
}
