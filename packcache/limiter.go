package packcache

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
)

// Default limits for the pack-objects generations.
const (
	DefaultQueue        = 64
	DefaultQueueTimeout = time.Minute
	DefaultPerUser      = 16
)

// DefaultPerRepo is the default number of generations that run at once for
// one repository: the number of CPUs.
func DefaultPerRepo() int { return runtime.NumCPU() }

// Limits bounds the pack-objects generations. Zero means the default, a
// negative value no limit (for Queue: no queue at all when negative).
type Limits struct {
	// PerRepo is the number of generations running at once per repository.
	PerRepo int
	// Queue is the number of generations waiting per repository.
	Queue int
	// QueueTimeout is how long a generation waits for a slot.
	QueueTimeout time.Duration
	// PerUser is the number of generations one user (or anonymous address
	// block) has running or waiting at once, over all repositories.
	PerUser int
}

func (l Limits) withDefaults() Limits {
	if l.PerRepo == 0 {
		l.PerRepo = DefaultPerRepo()
	}
	if l.Queue == 0 {
		l.Queue = DefaultQueue
	}
	if l.QueueTimeout <= 0 {
		l.QueueTimeout = DefaultQueueTimeout
	}
	if l.PerUser == 0 {
		l.PerUser = DefaultPerUser
	}
	return l
}

// BusyError is the refusal of a generation that could not get a slot. The
// client is shown gitgate.BusyMessage; Reason is for the log and metrics.
type BusyError struct {
	// Reason is "queue_full", "queue_timeout" or "user_limit".
	Reason string
	Detail string
}

func (e *BusyError) Error() string { return "pack-objects refused (" + e.Reason + "): " + e.Detail }

// Limiter hands out generation slots: per repository, with a bounded queue
// served fairly between users. It is safe for concurrent use.
type Limiter struct {
	limits Limits
	stats  *Stats

	mu      sync.Mutex
	repos   map[string]*repoQueue
	tickets map[string]int // running + waiting, per user
	running map[string]int // running, per user, all repositories
	granted map[string]uint64
	seq     uint64 // arrivals
	grants  uint64
}

type repoQueue struct {
	running int
	waiters []*waiter
}

type waiter struct {
	user    string
	seq     uint64
	ready   chan struct{}
	granted bool
}

// NewLimiter returns a limiter with limits (zero values: defaults); stats,
// when not nil, counts queue lengths, waits and refusals.
func NewLimiter(limits Limits, stats *Stats) *Limiter {
	if stats == nil {
		stats = &Stats{}
	}
	return &Limiter{limits: limits.withDefaults(), stats: stats,
		repos: map[string]*repoQueue{}, tickets: map[string]int{}, running: map[string]int{}, granted: map[string]uint64{}}
}

// Limits returns the limits in force, defaults filled in.
func (l *Limiter) Limits() Limits { return l.limits }

// Acquire takes a generation slot for repo and user, waiting in the queue
// for at most QueueTimeout (or until ctx ends). It returns a *BusyError
// when no slot could be had. release returns the slot; calling it more
// than once is harmless.
func (l *Limiter) Acquire(ctx context.Context, repo, user string) (release func(), err error) {
	l.mu.Lock()
	if l.limits.PerUser > 0 && l.tickets[user] >= l.limits.PerUser {
		l.mu.Unlock()
		return nil, l.refuse("user_limit", fmt.Sprintf("%s has %d generations running or queued", user, l.limits.PerUser))
	}
	q := l.repos[repo]
	if q == nil {
		q = &repoQueue{}
		l.repos[repo] = q
	}
	if l.limits.PerRepo < 0 || (q.running < l.limits.PerRepo && len(q.waiters) == 0) {
		q.running++
		l.tickets[user]++
		l.running[user]++
		l.grant(user)
		l.mu.Unlock()
		return l.releaser(repo, user), nil
	}
	if l.limits.Queue < 0 || len(q.waiters) >= l.limits.Queue {
		if len(q.waiters) == 0 && q.running == 0 {
			delete(l.repos, repo)
		}
		l.mu.Unlock()
		return nil, l.refuse("queue_full", fmt.Sprintf("%d generations already wait for %s", len(q.waiters), repo))
	}
	l.seq++
	w := &waiter{user: user, seq: l.seq, ready: make(chan struct{})}
	q.waiters = append(q.waiters, w)
	l.tickets[user]++
	l.stats.Queued.Add(1)
	l.mu.Unlock()

	start := time.Now()
	timer := time.NewTimer(l.limits.QueueTimeout)
	defer timer.Stop()
	var cause string
	select {
	case <-w.ready:
		l.stats.observeWait(time.Since(start))
		return l.releaser(repo, user), nil
	case <-timer.C:
		cause = "queue_timeout"
	case <-ctx.Done():
		cause = "queue_timeout"
	}
	l.mu.Lock()
	if w.granted { // granted as the timer fired: take it
		l.mu.Unlock()
		l.stats.observeWait(time.Since(start))
		return l.releaser(repo, user), nil
	}
	for i, x := range q.waiters {
		if x == w {
			q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			break
		}
	}
	l.dropTicket(user)
	if len(q.waiters) == 0 && q.running == 0 {
		delete(l.repos, repo)
	}
	l.stats.Queued.Add(-1)
	l.mu.Unlock()
	l.stats.observeWait(time.Since(start))
	return nil, l.refuse(cause, fmt.Sprintf("no slot for %s within %s", repo, l.limits.QueueTimeout))
}

func (l *Limiter) refuse(reason, detail string) error {
	l.stats.refused(reason)
	return &BusyError{Reason: reason, Detail: detail}
}

func (l *Limiter) dropTicket(user string) {
	if l.tickets[user]--; l.tickets[user] <= 0 {
		delete(l.tickets, user)
		delete(l.granted, user) // bounded: only users with tickets are kept
	}
}

func (l *Limiter) releaser(repo, user string) func() {
	var once sync.Once
	return func() { once.Do(func() { l.release(repo, user) }) }
}

// grant records when user last got a slot.
func (l *Limiter) grant(user string) {
	l.grants++
	l.granted[user] = l.grants
}

// before reports whether waiter a goes before b: its user runs fewer
// generations, or got a slot less recently, or it came first.
func (l *Limiter) before(a, b *waiter) bool {
	if ra, rb := l.running[a.user], l.running[b.user]; ra != rb {
		return ra < rb
	}
	if ga, gb := l.granted[a.user], l.granted[b.user]; ga != gb {
		return ga < gb
	}
	return a.seq < b.seq
}

// release returns a slot and hands it to the waiter whose user runs the
// fewest generations now; among equals, to the user served least recently,
// then to the earliest.
func (l *Limiter) release(repo, user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropTicket(user)
	if l.running[user]--; l.running[user] <= 0 {
		delete(l.running, user)
	}
	q := l.repos[repo]
	q.running--
	if len(q.waiters) > 0 {
		best := 0
		for i, w := range q.waiters {
			if l.before(w, q.waiters[best]) {
				best = i
			}
		}
		w := q.waiters[best]
		q.waiters = append(q.waiters[:best], q.waiters[best+1:]...)
		q.running++
		l.running[w.user]++
		l.grant(w.user)
		w.granted = true
		l.stats.Queued.Add(-1)
		close(w.ready)
	}
	if q.running == 0 && len(q.waiters) == 0 {
		delete(l.repos, repo)
	}
}

// InUse returns the generations running and waiting for repo.
func (l *Limiter) InUse(repo string) (running, waiting int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if q := l.repos[repo]; q != nil {
		return q.running, len(q.waiters)
	}
	return 0, 0
}

// IsBusy reports whether err is a refusal for want of a slot.
func IsBusy(err error) bool {
	var b *BusyError
	return errors.As(err, &b)
}
