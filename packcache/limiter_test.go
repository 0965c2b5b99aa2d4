package packcache

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestLimiterQueueFullIsRefusedAtOnce(t *testing.T) {
	l := NewLimiter(Limits{PerRepo: 1, Queue: 1, QueueTimeout: time.Hour, PerUser: -1}, nil)
	release, err := l.Acquire(t.Context(), "r", "a")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		rel, err := l.Acquire(t.Context(), "r", "b")
		if err == nil {
			rel()
		}
		got <- err
	}()
	waitFor(t, "the waiter", func() bool { _, w := l.InUse("r"); return w == 1 })
	_, err = l.Acquire(t.Context(), "r", "c")
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Reason != "queue_full" {
		t.Fatalf("third acquire: %v, want queue_full", err)
	}
	release()
	if err := <-got; err != nil {
		t.Fatalf("the waiter got %v", err)
	}
	if r, w := l.InUse("r"); r != 0 || w != 0 {
		t.Fatalf("in use after all released: %d %d", r, w)
	}
}

func TestLimiterQueueTimeoutRefuses(t *testing.T) {
	stats := &Stats{}
	l := NewLimiter(Limits{PerRepo: 1, Queue: 4, QueueTimeout: time.Millisecond, PerUser: -1}, stats)
	release, _ := l.Acquire(t.Context(), "r", "a")
	defer release()
	_, err := l.Acquire(t.Context(), "r", "b")
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Reason != "queue_timeout" {
		t.Fatalf("got %v, want queue_timeout", err)
	}
	if stats.RefusedTime.Load() != 1 || stats.Queued.Load() != 0 || stats.Waits() != 1 {
		t.Fatalf("refused=%d queued=%d waits=%d", stats.RefusedTime.Load(), stats.Queued.Load(), stats.Waits())
	}
	// A cancelled waiter leaves too.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	l2 := NewLimiter(Limits{PerRepo: 1, QueueTimeout: time.Hour, PerUser: -1}, nil)
	rel2, _ := l2.Acquire(t.Context(), "r", "a")
	defer rel2()
	if _, err := l2.Acquire(ctx, "r", "b"); !IsBusy(err) {
		t.Fatalf("cancelled waiter: %v", err)
	}
}

func TestLimiterPerUserCap(t *testing.T) {
	l := NewLimiter(Limits{PerRepo: -1, PerUser: 2}, nil)
	var rels []func()
	for _, repo := range []string{"r1", "r2"} {
		rel, err := l.Acquire(t.Context(), repo, "ci")
		if err != nil {
			t.Fatal(err)
		}
		rels = append(rels, rel)
	}
	_, err := l.Acquire(t.Context(), "r3", "ci")
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Reason != "user_limit" {
		t.Fatalf("third for ci: %v, want user_limit", err)
	}
	if rel, err := l.Acquire(t.Context(), "r3", "other"); err != nil {
		t.Fatalf("another user is refused: %v", err)
	} else {
		rel()
	}
	rels[0]()
	rels[0]() // twice is harmless
	if rel, err := l.Acquire(t.Context(), "r3", "ci"); err != nil {
		t.Fatalf("after a release: %v", err)
	} else {
		rel()
	}
	rels[1]()
}

// One CI account queues many generations; another user's single request,
// queued after them, gets the next free slot.
func TestLimiterFairBetweenUsers(t *testing.T) {
	l := NewLimiter(Limits{PerRepo: 1, Queue: 100, QueueTimeout: time.Hour, PerUser: -1}, nil)
	release, _ := l.Acquire(t.Context(), "r", "ci")
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	acquire := func(user string) {
		defer wg.Done()
		rel, err := l.Acquire(t.Context(), "r", user)
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		order = append(order, user)
		mu.Unlock()
		rel()
	}
	for i := range 5 {
		wg.Add(1)
		go acquire("ci")
		waitFor(t, "ci waiters", func() bool { _, w := l.InUse("r"); return w == i+1 })
	}
	wg.Add(1)
	go acquire("dev")
	waitFor(t, "the dev waiter", func() bool { _, w := l.InUse("r"); return w == 6 })
	release()
	wg.Wait()
	// Neither user runs a generation when the slot frees; dev was never
	// served, ci just was: dev goes first, before ci's earlier waiters.
	if len(order) != 6 || order[0] != "dev" {
		t.Fatalf("order %v: dev must come first", order)
	}
}
