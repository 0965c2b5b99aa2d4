package access

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// LimiterConfig tunes a [Limiter]. Zero fields take the defaults shown.
type LimiterConfig struct {
	// MaxFailures failed sign-ins in a row block a client (10).
	MaxFailures int
	// Block is how long the first block lasts (1 minute). Each further
	// failure after a block doubles it, up to MaxBlock.
	Block time.Duration
	// MaxBlock caps a block (1 hour).
	MaxBlock time.Duration
	// Forget is how long a client must stay quiet, after its last failure
	// or the end of its block, for its failures to be forgotten (10 minutes).
	Forget time.Duration
	// MaxClients bounds memory: beyond it, the client that failed least
	// recently is forgotten (10000).
	MaxClients int
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Limiter slows down clients that keep failing to sign in over HTTP, keyed
// by remote address. After MaxFailures failures it blocks the client for
// Block, doubling with every further failure, until the client stays quiet
// for Forget or signs in successfully.
//
// IPv6 addresses are grouped by /64, the block a single host usually holds.
// Memory is bounded by MaxClients; an attacker with very many addresses can
// push older entries out, which is the price of the bound. It is safe for
// concurrent use, keeps everything in memory, and runs no goroutine: stale
// entries are dropped lazily.
type Limiter struct {
	cfg LimiterConfig

	mu      sync.Mutex
	clients map[string]*list.Element // values are *limiterEntry
	lru     list.List                // front: most recently failed
}

type limiterEntry struct {
	key      string
	failures int
	last     time.Time // last failure
	until    time.Time // blocked until
}

// NewLimiter returns a Limiter with cfg, defaults filled in.
func NewLimiter(cfg LimiterConfig) *Limiter {
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = 10
	}
	if cfg.Block <= 0 {
		cfg.Block = time.Minute
	}
	if cfg.MaxBlock <= 0 {
		cfg.MaxBlock = time.Hour
	}
	cfg.MaxBlock = max(cfg.MaxBlock, cfg.Block)
	if cfg.Forget <= 0 {
		cfg.Forget = 10 * time.Minute
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 10000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Limiter{cfg: cfg, clients: map[string]*list.Element{}}
}

// Allow reports whether a sign-in attempt from addr (an IP address, with or
// without a port) may be checked now; if not, it also returns how long the
// client must wait.
func (l *Limiter) Allow(addr string) (bool, time.Duration) {
	key := limiterKey(addr)
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entry(key, now)
	if e == nil || !now.Before(e.until) {
		return true, 0
	}
	return false, e.until.Sub(now)
}

// Failure records a failed sign-in from addr.
func (l *Limiter) Failure(addr string) {
	key := limiterKey(addr)
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entry(key, now)
	if e == nil {
		if l.lru.Len() >= l.cfg.MaxClients {
			oldest := l.lru.Back()
			delete(l.clients, oldest.Value.(*limiterEntry).key)
			l.lru.Remove(oldest)
		}
		e = &limiterEntry{key: key}
		l.clients[key] = l.lru.PushFront(e)
	} else {
		l.lru.MoveToFront(l.clients[key])
	}
	e.failures++
	e.last = now
	if n := e.failures - l.cfg.MaxFailures; n >= 0 {
		block := l.cfg.Block
		for ; n > 0 && block < l.cfg.MaxBlock; n-- {
			block *= 2
		}
		e.until = now.Add(min(block, l.cfg.MaxBlock))
	}
}

// Success forgets the failures of addr.
func (l *Limiter) Success(addr string) {
	key := limiterKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.clients[key]; ok {
		delete(l.clients, key)
		l.lru.Remove(el)
	}
}

// entry returns the live entry for key, dropping it (and returning nil) if
// it has been quiet for Forget since its last failure or block.
func (l *Limiter) entry(key string, now time.Time) *limiterEntry {
	el, ok := l.clients[key]
	if !ok {
		return nil
	}
	e := el.Value.(*limiterEntry)
	if now.Sub(latest(e.last, e.until)) >= l.cfg.Forget {
		delete(l.clients, key)
		l.lru.Remove(el)
		return nil
	}
	return e
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// limiterKey is the IP address in addr, IPv6 reduced to its /64; anything
// unparsable is used as it is.
func limiterKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return addr
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
