package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gitgate/gitgate/gitgate"
)

// leaseHolders lists the application names of the sessions that hold the
// Geo lock of job, from the database.
func leaseHolders(t *testing.T, admin *pgx.Conn, job string) []string {
	t.Helper()
	e := &Elector{Job: job}
	rows, err := admin.Query(t.Context(), `SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2 AND l.granted`,
		int64(geoLockSpace), int64(uint32(e.lockKey())))
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// The elected gate's writes run on the lock's connection: once the lock is
// gone (its session terminated, as in a database restart) the old holder
// can write nothing more, even before it notices, so it can never step
// back what the next holder mirrored. (Before, the follower mirrored
// through the pool, whatever the election said.)
func TestLeaseFencesWrites(t *testing.T) {
	db, url := migrated(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	leases := make(chan *Lease, 2)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	elect := func(gate string, retry time.Duration) {
		e := &Elector{DB: db, Job: "follower", Retry: retry, Gate: gate}
		wg.Go(func() {
			e.RunLeased(ctx, func(wctx context.Context, l *Lease) {
				leases <- l
				<-wctx.Done()
			})
		})
	}
	// A checks its connection only every hour: the fence must not rely on
	// the holder noticing.
	elect("A", time.Hour)
	var first *Lease
	select {
	case first = <-leases:
	case <-time.After(10 * time.Second):
		t.Fatal("no gate elected")
	}
	elect("B", 20*time.Millisecond)
	st := func(v uint64, enabled bool) gitgate.State {
		return gitgate.State{Enabled: enabled, Message: "m", Version: v, By: "primary"}
	}
	if wrote, err := first.Mirror(ctx, st(5, true), false); !wrote || err != nil {
		t.Fatalf("mirror of version 5 by the holder: %v %v", wrote, err)
	}
	// Never back without force; back with it (the primary said it reset).
	if wrote, err := first.Mirror(ctx, st(4, false), false); wrote || err != nil {
		t.Fatalf("mirror of the older version 4: wrote %v, %v", wrote, err)
	}
	if cur, _ := db.Load(ctx); cur.Version != 5 || !cur.Enabled {
		t.Fatalf("state after an older mirror: %+v", cur)
	}
	doc := first.AccessDocument()
	if err := doc.Update(ctx, func([]byte) ([]byte, error) { return []byte("users: {}\n"), nil }); err != nil {
		t.Fatalf("access update by the holder: %v", err)
	}
	if err := first.RecordSecondaryStatus(ctx, SecondaryStatus{Node: "eu", Primary: "http://p", Gate: "?", Connected: true, Version: 5}); err != nil {
		t.Fatal(err)
	}

	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	holders := leaseHolders(t, admin, "follower")
	if len(holders) != 1 {
		t.Fatalf("lock holders %v, want one", holders)
	}
	// Cut the holder's session and wait until it is gone.
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1, 5000)`, int32(first.conn.PgConn().PID())); err != nil {
		t.Fatal(err)
	}
	var next *Lease
	select {
	case next = <-leases:
	case <-time.After(10 * time.Second):
		t.Fatal("no takeover")
	}
	if wrote, err := next.Mirror(ctx, st(6, false), false); !wrote || err != nil {
		t.Fatalf("mirror by the new holder: %v %v", wrote, err)
	}
	// The old holder has not noticed (it checks hourly), and cannot write.
	if wrote, err := first.Mirror(ctx, st(7, true), true); wrote || !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("mirror by the old holder after the lock was lost: wrote %v, err %v; want ErrLeaseLost", wrote, err)
	}
	if err := first.AccessDocument().Update(ctx, func([]byte) ([]byte, error) { return []byte("users: {}\n"), nil }); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("access update by the old holder: %v", err)
	}
	if err := first.RecordSecondaryStatus(ctx, SecondaryStatus{Node: "eu", Gate: "old"}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("status by the old holder: %v", err)
	}
	if cur, _ := db.Load(ctx); cur.Version != 6 || cur.Enabled {
		t.Fatalf("state after the old holder's attempt: %+v, want version 6 off", cur)
	}
	s, ok, err := db.SecondaryStatus(ctx)
	if err != nil || !ok || s.Gate != "?" || !s.Connected || s.Version != 5 || s.ContactAge != -1 {
		t.Fatalf("status row: %+v %v %v", s, ok, err)
	}
}

// Property, under concurrency and repeated loss of the holder's session:
// at most one gate holds the lead at any moment (sampled from pg_locks),
// the status row always names a gate that held it, and every gate's
// writes after its session was cut fail.
func TestLeaseOneLeaderProperty(t *testing.T) {
	db, url := migrated(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())

	type turn struct {
		gate  string
		lease *Lease
	}
	var mu sync.Mutex
	var current *turn
	leadersSeen := map[string]bool{}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range 3 {
		gate := fmt.Sprintf("g%d", i)
		e := &Elector{DB: db, Job: "follower", Retry: 15 * time.Millisecond, Gate: gate}
		wg.Go(func() {
			e.RunLeased(ctx, func(wctx context.Context, l *Lease) {
				mu.Lock()
				current = &turn{gate, l}
				leadersSeen[gate] = true
				mu.Unlock()
				for n := 0; wctx.Err() == nil; n++ {
					_ = l.RecordSecondaryStatus(wctx, SecondaryStatus{Node: "eu", Gate: gate, Version: uint64(n)})
					select {
					case <-wctx.Done():
					case <-time.After(5 * time.Millisecond):
					}
				}
			})
		})
	}
	var violations atomic.Int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for range 300 {
			if ctx.Err() != nil {
				return
			}
			var n int
			if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objsubid = 2 AND granted`,
				int64(geoLockSpace)).Scan(&n); err != nil {
				return
			}
			if n > 1 {
				violations.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	lockConn, err := pgx.Connect(ctx, url) // the sampler owns admin
	if err != nil {
		t.Fatal(err)
	}
	defer lockConn.Close(context.Background())
	for k := range 4 {
		var cur *turn
		waitFor(t, fmt.Sprintf("a leader (round %d)", k), func() bool {
			mu.Lock()
			defer mu.Unlock()
			cur = current
			return cur != nil
		})
		waitFor(t, "the leader's status row", func() bool {
			s, ok, err := db.SecondaryStatus(ctx)
			return err == nil && ok && s.Gate == cur.gate
		})
		mu.Lock()
		current = nil
		mu.Unlock()
		if _, err := lockConn.Exec(ctx, `SELECT pg_terminate_backend($1, 5000)`, int32(cur.lease.conn.PgConn().PID())); err != nil {
			t.Fatal(err)
		}
		if err := cur.lease.RecordSecondaryStatus(ctx, SecondaryStatus{Node: "eu", Gate: "stale-" + cur.gate}); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("round %d: a write by %s after its session was cut: %v", k, cur.gate, err)
		}
	}
	<-sampled
	if n := violations.Load(); n > 0 {
		t.Errorf("%d samples saw more than one holder of the lock", n)
	}
	s, _, _ := db.SecondaryStatus(ctx)
	if strings.HasPrefix(s.Gate, "stale-") {
		t.Errorf("the status row holds a write made after the lock was lost: %+v", s)
	}
}
