package gitgate

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

func TestLimiterCaps(t *testing.T) {
	l := NewLimiter(Limits{Global: 4, PerRepo: 3, PerUser: 2})
	alice := Operation{Repo: "a", User: &User{Name: "alice"}}
	anon1 := Operation{Repo: "a", RemoteAddr: "192.0.2.1:5000"}
	anon1b := Operation{Repo: "b", RemoteAddr: "192.0.2.1:6000"} // same host, other port
	anon2 := Operation{Repo: "b", RemoteAddr: "192.0.2.2:5000"}

	var releases []func()
	take := func(op Operation) error {
		rel, err := l.Acquire(op)
		if err == nil {
			releases = append(releases, rel)
		}
		return err
	}
	for i := 0; i < 2; i++ {
		if err := take(alice); err != nil {
			t.Fatalf("alice #%d: %v", i, err)
		}
	}
	if err := take(alice); !errors.Is(err, ErrBusy) {
		t.Fatalf("alice over her cap: %v, want ErrBusy", err)
	}
	if err := take(anon1); err != nil { // repo a: 3rd slot
		t.Fatalf("anonymous on a: %v", err)
	}
	if err := take(anon1b); err != nil {
		t.Fatalf("anonymous on b: %v", err)
	}
	// The same host on another port is the same anonymous client.
	if err := take(Operation{Repo: "c", RemoteAddr: "192.0.2.1:7000"}); !errors.Is(err, ErrBusy) {
		t.Fatalf("third process for one address: %v, want ErrBusy", err)
	}
	// Global cap (4) reached.
	err := take(anon2)
	var r *Refusal
	if !errors.As(err, &r) || r.Error() != BusyMessage || r.Kind != RefusedBusy {
		t.Fatalf("over the global cap: %v", err)
	}
	releases[0]()
	releases[0]() // twice is harmless
	if err := take(anon2); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if err := take(Operation{Repo: "a", User: &User{Name: "bob"}}); !errors.Is(err, ErrBusy) {
		t.Fatalf("global cap again: %v", err)
	}
	for _, rel := range releases {
		rel()
	}
	if g, rp, u := l.InUse(alice); g != 0 || rp != 0 || u != 0 {
		t.Fatalf("after releasing everything: %d %d %d in use", g, rp, u)
	}
}

func TestLimiterNegativeIsUnlimitedAndNilAllows(t *testing.T) {
	l := NewLimiter(Limits{Global: -1, PerRepo: -1, PerUser: 1})
	if _, err := l.Acquire(Operation{Repo: "a", User: &User{Name: "x"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(Operation{Repo: "a", User: &User{Name: "y"}}); err != nil {
		t.Fatal(err)
	}
	var none *Limiter
	rel, err := none.Acquire(Operation{})
	if err != nil {
		t.Fatal(err)
	}
	rel()
	if got := NewLimiter(Limits{}).Limits(); got != (Limits{DefaultMaxGit, DefaultMaxGitPerRepo, DefaultMaxGitPerUser, DefaultMaxGitQueue, DefaultMaxGitQueueTimeout}) {
		t.Fatalf("defaults: %+v", got)
	}
}

// Property: under any interleaving of acquires and releases, no count goes
// over its limit, a refusal happens only when some limit is reached, and
// every slot comes back.
func TestLimiterPropertyUnderConcurrency(t *testing.T) {
	limits := Limits{Global: 6, PerRepo: 4, PerUser: 2}
	l := NewLimiter(limits)
	users := []string{"u0", "u1", "u2", "u3", ""}
	repos := []string{"r0", "r1", "r2"}

	var mu sync.Mutex // the model, updated inside the critical sections
	held := struct {
		global int
		repo   map[string]int
		user   map[string]int
	}{repo: map[string]int{}, user: map[string]int{}}
	check := func() error {
		if held.global > limits.Global {
			return fmt.Errorf("global %d > %d", held.global, limits.Global)
		}
		for k, n := range held.repo {
			if n > limits.PerRepo {
				return fmt.Errorf("repo %s: %d > %d", k, n, limits.PerRepo)
			}
		}
		for k, n := range held.user {
			if n > limits.PerUser {
				return fmt.Errorf("user %s: %d > %d", k, n, limits.PerUser)
			}
		}
		return nil
	}

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; i < 500; i++ {
				op := Operation{Repo: repos[rng.IntN(len(repos))], RemoteAddr: fmt.Sprintf("198.51.100.%d:1", w%3)}
				if u := users[rng.IntN(len(users))]; u != "" {
					op.User = &User{Name: u}
				}
				key := UserKey(op)
				rel, err := l.Acquire(op)
				if err != nil {
					if !errors.Is(err, ErrBusy) {
						errs <- err
						return
					}
					continue
				}
				mu.Lock()
				held.global++
				held.repo[op.Repo]++
				held.user[key]++
				err = check()
				mu.Unlock()
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				held.global--
				held.repo[op.Repo]--
				held.user[key]--
				mu.Unlock()
				rel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if g, _, _ := l.InUse(Operation{}); g != 0 {
		t.Fatalf("%d slots never came back", g)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.repos) != 0 || len(l.users) != 0 {
		t.Fatalf("counts left: %v %v", l.repos, l.users)
	}
}

// An anonymous client is counted per address block: the addresses of one
// IPv6 /64 (one host, usually) share a cap, as do an IPv4 address and its
// IPv4-mapped IPv6 form; other blocks do not.
func TestLimiterCountsAnonymousPerAddressBlock(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"[2001:db8:1:2::1]:5000", "[2001:db8:1:2:ffff::7]:6000"},
		{"192.0.2.1:5000", "[::ffff:192.0.2.1]:6000"},
	} {
		l := NewLimiter(Limits{Global: 10, PerRepo: 10, PerUser: 1})
		if _, err := l.Acquire(Operation{Repo: "r", RemoteAddr: tc.a}); err != nil {
			t.Fatalf("%s: %v", tc.a, err)
		}
		if _, err := l.Acquire(Operation{Repo: "r", RemoteAddr: tc.b}); !errors.Is(err, ErrBusy) {
			t.Errorf("%s after %s: %v, want ErrBusy (same client)", tc.b, tc.a, err)
		}
		if _, err := l.Acquire(Operation{Repo: "r", RemoteAddr: "[2001:db8:1:3::1]:5000"}); err != nil {
			t.Errorf("another /64: %v", err)
		}
	}
}
