package gitgate

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// waitUntil polls cond, bounded: the tests never sleep for a fixed time.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 2000 {
		if cond() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("never: %s", what)
}

// Over a limit, Wait queues and takes the slot the next release frees;
// Acquire still refuses at once.
func TestLimiterWaitGetsTheNextSlot(t *testing.T) {
	l := NewLimiter(Limits{Global: 10, PerRepo: 10, PerUser: 1})
	alice := Operation{Repo: "r", User: &User{Name: "alice"}}
	rel, err := l.Wait(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(alice); !errors.Is(err, ErrBusy) {
		t.Fatalf("Acquire over the cap: %v, want ErrBusy", err)
	}
	got := make(chan error, 1)
	go func() {
		rel2, err := l.Wait(context.Background(), alice)
		if err == nil {
			rel2()
		}
		got <- err
	}()
	waitUntil(t, "the second operation waits", func() bool { return l.Waiting() == 1 })
	rel()
	if err := <-got; err != nil {
		t.Fatalf("the waiter: %v", err)
	}
	if g, _, _ := l.InUse(alice); g != 0 || l.Waiting() != 0 {
		t.Fatalf("left: %d in use, %d waiting", g, l.Waiting())
	}
}

// A wait ends with the busy refusal: after QueueTimeout, when the context
// ends, or at once when the user's queue is full or there is none.
func TestLimiterWaitIsBounded(t *testing.T) {
	alice := Operation{Repo: "r", User: &User{Name: "alice"}}
	l := NewLimiter(Limits{PerUser: 1, Queue: 1, QueueTimeout: 20 * time.Millisecond})
	rel, err := l.Wait(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	var r *Refusal
	if _, err := l.Wait(context.Background(), alice); !errors.As(err, &r) || r.Error() != BusyMessage || !errors.Is(err, ErrBusy) {
		t.Fatalf("after the queue timeout: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l2 := NewLimiter(Limits{PerUser: 1, Queue: 1, QueueTimeout: time.Hour})
	rel2, _ := l2.Wait(ctx, alice)
	defer rel2()
	ended := make(chan error, 1)
	go func() { _, err := l2.Wait(ctx, alice); ended <- err }()
	waitUntil(t, "a waiter", func() bool { return l2.Waiting() == 1 })
	// The queue (1) is full: refused at once.
	if _, err := l2.Wait(context.Background(), alice); !errors.Is(err, ErrBusy) {
		t.Fatalf("queue full: %v", err)
	}
	cancel()
	if err := <-ended; !errors.Is(err, ErrBusy) {
		t.Fatalf("context ended: %v", err)
	}
	if l2.Waiting() != 0 {
		t.Fatalf("%d still waiting", l2.Waiting())
	}
	l3 := NewLimiter(Limits{PerUser: 1, Queue: -1, QueueTimeout: time.Hour})
	rel3, _ := l3.Wait(context.Background(), alice)
	defer rel3()
	if _, err := l3.Wait(context.Background(), alice); !errors.Is(err, ErrBusy) {
		t.Fatalf("no queue: %v", err)
	}
}

// One account queueing many operations does not starve another: when the
// server is full, a freed slot goes to the waiter whose user holds fewest.
func TestLimiterWaitIsFairBetweenUsers(t *testing.T) {
	l := NewLimiter(Limits{Global: 2, PerRepo: -1, PerUser: 2, QueueTimeout: time.Hour})
	ci := Operation{Repo: "r", User: &User{Name: "ci"}}
	dev := Operation{Repo: "r", User: &User{Name: "dev"}}
	var rels []func()
	for range 2 {
		rel, err := l.Wait(context.Background(), ci)
		if err != nil {
			t.Fatal(err)
		}
		rels = append(rels, rel)
	}
	type grant struct {
		who string
		rel func()
	}
	granted := make(chan grant, 11)
	for i := range 10 {
		go func() {
			rel, err := l.Wait(context.Background(), ci)
			if err != nil {
				t.Errorf("ci #%d: %v", i, err)
				return
			}
			granted <- grant{"ci", rel}
		}()
	}
	waitUntil(t, "10 ci waiters", func() bool { return l.Waiting() == 10 })
	go func() {
		rel, err := l.Wait(context.Background(), dev)
		if err != nil {
			t.Errorf("dev: %v", err)
			return
		}
		granted <- grant{"dev", rel}
	}()
	waitUntil(t, "dev waits too", func() bool { return l.Waiting() == 11 })
	rels[0]() // ci holds 1, dev 0: dev goes first, whoever came first
	if g := <-granted; g.who != "dev" {
		t.Fatalf("the freed slot went to %s, want dev", g.who)
	} else {
		rels = append(rels, g.rel)
	}
	rels[1]()
	for i := range 10 {
		g := <-granted
		if g.who != "ci" {
			t.Fatalf("grant %d to %s", i, g.who)
		}
		g.rel()
	}
	rels[2]()
	if g, _, _ := l.InUse(ci); g != 0 || l.Waiting() != 0 {
		t.Fatalf("left: %d in use, %d waiting", g, l.Waiting())
	}
}

// Property: with waiting, under any interleaving, no count goes over its
// limit, every wait ends (a slot or the busy refusal), queues stay within
// their bound, and every slot and ticket comes back.
func TestLimiterWaitPropertyUnderConcurrency(t *testing.T) {
	limits := Limits{Global: 5, PerRepo: 3, PerUser: 2, Queue: 3, QueueTimeout: 5 * time.Millisecond}
	l := NewLimiter(limits)
	users := []string{"u0", "u1", "u2", "u3"}
	repos := []string{"r0", "r1"}
	var mu sync.Mutex
	global, repo, user := 0, map[string]int{}, map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for range 200 {
				op := Operation{Repo: repos[rng.IntN(len(repos))], User: &User{Name: users[rng.IntN(len(users))]}}
				ctx, cancel := context.WithCancel(context.Background())
				if rng.IntN(8) == 0 {
					cancel()
				}
				rel, err := l.Wait(ctx, op)
				cancel()
				if err != nil {
					if !errors.Is(err, ErrBusy) {
						errs <- err
						return
					}
					continue
				}
				mu.Lock()
				global++
				repo[op.Repo]++
				user[op.User.Name]++
				var bad error
				switch {
				case global > limits.Global:
					bad = fmt.Errorf("global %d", global)
				case repo[op.Repo] > limits.PerRepo:
					bad = fmt.Errorf("repo %d", repo[op.Repo])
				case user[op.User.Name] > limits.PerUser:
					bad = fmt.Errorf("user %d", user[op.User.Name])
				}
				mu.Unlock()
				l.mu.Lock()
				for u, n := range l.queued {
					if n > limits.Queue {
						bad = fmt.Errorf("%s has %d waiting", u, n)
					}
				}
				l.mu.Unlock()
				if bad != nil {
					errs <- bad
					return
				}
				if rng.IntN(2) == 0 {
					time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
				}
				mu.Lock()
				global--
				repo[op.Repo]--
				user[op.User.Name]--
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
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.global != 0 || len(l.repos) != 0 || len(l.users) != 0 || len(l.waiters) != 0 || len(l.queued) != 0 {
		t.Fatalf("left: global %d repos %v users %v waiters %d queued %v", l.global, l.repos, l.users, len(l.waiters), l.queued)
	}
}
