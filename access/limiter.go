package access

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/gitgate/gitgate/gitgate"
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

// Limiter counts failed sign-ins per key and blocks a key that keeps
// failing. Keys are made by [AddrKey] (a client address) and [UserKey] (a
// user name); the caller decides which keys a failure counts against. After
// MaxFailures failures it blocks the key for Block, doubling with every
// further failure, until the key stays quiet for Forget or is forgotten by
// [Limiter.Success].
//
// Memory is bounded by MaxClients keys; an attacker with very many
// addresses or names can push older entries out, which is the price of the
// bound. It is safe for concurrent use, keeps everything in memory, and runs
// no goroutine: stale entries are dropped lazily.
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

// Allow reports whether key is not blocked now; if it is, it also returns
// how long it stays blocked.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entry(key, now)
	if e == nil || !now.Before(e.until) {
		return true, 0
	}
	return false, e.until.Sub(now)
}

// Failure records a failed sign-in against key.
func (l *Limiter) Failure(key string) {
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

// Success forgets the failures counted against key. Callers pass only the
// key of the user who signed in: a success must never clear an address,
// which other clients share.
func (l *Limiter) Success(key string) {
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

// maxUserKeyName is the longest user name kept as it is in a key; longer
// ones are hashed, so that a key's size is bounded.
const maxUserKeyName = 64

// AddrKey is the [Limiter] key of a client address (an IP address, with or
// without a port): IPv6 is reduced to its /64, the block a single host
// usually holds. Anything unparsable is used as it is, bounded.
func AddrKey(addr string) string {
	if block, ok := gitgate.ClientBlock(addr); ok {
		return "addr:" + block
	}
	return "addr:" + boundedKey(addr)
}

// UserKey is the [Limiter] key of a user name, as given with HTTP Basic or
// as the owner of a refused token. Case is ignored, so that "Alice" and
// "alice" count together.
func UserKey(name string) string {
	return "user:" + boundedKey(strings.ToLower(name))
}

// boundedKey returns s, or a hash of it when it is long.
func boundedKey(s string) string {
	if len(s) <= maxUserKeyName {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "#" + hex.EncodeToString(sum[:16])
}
