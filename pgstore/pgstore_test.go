package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitgate/gitgate/access"
	"github.com/gitgate/gitgate/audit"
	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/pgtest"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }

// waitFor polls cond until it holds, for at most 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// migrated returns an open, migrated database for t.
func migrated(t *testing.T) (*DB, string) {
	t.Helper()
	url := pgtest.Database(t, cluster)
	db, err := Open(t.Context(), url, nil, Options{SkipSchemaCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, _, err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return db, url
}

func TestSchemaCheck(t *testing.T) {
	url := pgtest.Database(t, cluster)
	ctx := t.Context()
	_, err := Open(ctx, url, nil, Options{})
	if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), `run "gitgate db migrate"`) {
		t.Fatalf("open of an empty database: %v, want ErrSchema asking for db migrate", err)
	}
	db, err := Open(ctx, url, nil, Options{SkipSchemaCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Several gates migrating at once: one applies, the others find it done.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { _, _, errs[i] = db.Migrate(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if from, to, err := db.Migrate(ctx); err != nil || from != SchemaVersion() || to != SchemaVersion() {
		t.Fatalf("second migrate: %d -> %d, %v", from, to, err)
	}
	if err := db.CheckSchema(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.pool.Exec(ctx, `UPDATE schema_version SET version = 99`); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, url, nil, Options{})
	if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "newer than this gitgate's") {
		t.Fatalf("open of a newer schema: %v", err)
	}
	if _, _, err := db.Migrate(ctx); !errors.Is(err, ErrSchema) {
		t.Fatalf("migrate of a newer schema: %v, want refused", err)
	}
}

func TestStateLiveAcrossGates(t *testing.T) {
	a, url := migrated(t)
	b, err := Open(t.Context(), url, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if st, err := a.Load(t.Context()); err != nil || st.Version != 0 || st.Enabled {
		t.Fatalf("fresh database: %+v, %v", st, err)
	}
	view := NewStateView(b, 10*time.Second)
	live := gitgate.NewLiveState(view, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var connected atomic.Bool
	w := &Watcher{DB: b, OnState: live.Reload, OnAccess: func() {}, Refresh: time.Second, Connected: connected.Store}
	wg.Go(func() { w.Run(ctx) })
	waitFor(t, "the watcher to connect", connected.Load)

	on, off := true, false
	msg := "upgrade"
	for i := range 20 {
		changed := live.Changed()
		c := gitgate.Change{Enabled: &on, Message: &msg, By: "alice"}
		if i%2 == 1 {
			c.Enabled = &off
		}
		st, err := a.Apply(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		if st.Version != uint64(i+1) {
			t.Fatalf("version %d, want %d", st.Version, i+1)
		}
		select {
		case <-changed:
		case <-time.After(10 * time.Second):
			t.Fatal("gate B did not see the change")
		}
		got := live.Current()
		if got.Err != nil || got.State.Version != st.Version || got.State.Enabled != st.Enabled || got.State.By != "alice" {
			t.Fatalf("gate B sees %+v, want %+v", got, st)
		}
	}
	bad := strings.Repeat("x", 300)
	if _, err := a.Apply(t.Context(), gitgate.Change{Message: &bad}); !errors.Is(err, gitgate.ErrInvalidMessage) {
		t.Fatalf("long message: %v", err)
	}
	// Mirror and Reset keep the versions growing.
	if wrote, err := a.Mirror(t.Context(), gitgate.State{Version: 5}, false); err != nil || wrote {
		t.Fatalf("mirror of an older state: wrote %v, %v", wrote, err)
	}
	st, err := a.Reset(t.Context(), gitgate.Change{Enabled: &on, By: "root"})
	if err != nil || st.Version != 21 || !st.Enabled {
		t.Fatalf("reset: %+v, %v", st, err)
	}
}

// Concurrent changes and resets from many writers never give one version
// twice and never lose one.
func TestApplyConcurrentVersions(t *testing.T) {
	db, _ := migrated(t)
	on := true
	var wg sync.WaitGroup
	seen := make([]uint64, 40)
	errs := make([]error, len(seen))
	for i := range seen {
		wg.Go(func() {
			c := gitgate.Change{Enabled: &on, By: fmt.Sprint(i)}
			var st gitgate.State
			var err error
			if i%4 == 0 { // resets and changes share the one version sequence
				st, err = db.Reset(t.Context(), c)
			} else {
				st, err = db.Apply(t.Context(), c)
			}
			seen[i], errs[i] = st.Version, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	got := map[uint64]bool{}
	for _, v := range seen {
		if got[v] {
			t.Fatalf("version %d given twice", v)
		}
		got[v] = true
	}
	if st, _ := db.Load(t.Context()); st.Version != uint64(len(seen)) {
		t.Fatalf("final version %d, want %d", st.Version, len(seen))
	}
}

func TestAccessDocumentLive(t *testing.T) {
	a, url := migrated(t)
	b, err := Open(t.Context(), url, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := a.AccessDocument().Read(t.Context()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("empty database: %v, want not exist", err)
	}
	users := access.NewLiveOn(b.AccessDocument(), slog.New(slog.DiscardHandler))
	if err := users.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	w := &Watcher{DB: b, OnState: func() {}, OnAccess: func() { _ = users.Reload() }, Refresh: time.Second}
	wg.Go(func() { w.Run(ctx) })

	store := access.NewStoreOn(a.AccessDocument())
	if err := store.Update(func(f *access.File) error { return f.AddUser("alice", false) }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice on gate B", func() bool { _, ok := users.User("alice"); return ok })
	// Concurrent edits from several writers are serialised, none lost.
	var ewg sync.WaitGroup
	for i := range 8 {
		ewg.Go(func() {
			if err := store.Update(func(f *access.File) error { return f.AddUser(fmt.Sprintf("u%d", i), false) }); err != nil {
				t.Error(err)
			}
		})
	}
	ewg.Wait()
	f, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.Users); n != 9 {
		t.Fatalf("%d users after concurrent edits, want 9", n)
	}
	waitFor(t, "u7 on gate B", func() bool { _, ok := users.User("u7"); return ok })
	if err := store.Update(func(f *access.File) error { return f.RemoveUser("alice") }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice gone on gate B", func() bool { _, ok := users.User("alice"); return !ok })
}

func TestAuditSink(t *testing.T) {
	db, _ := migrated(t)
	log := audit.OpenSink(db.AuditSink())
	if err := log.Record(audit.Event{Action: "maintenance.update", Actor: "alice", Transport: "cli"}); err != nil {
		t.Fatal(err)
	}
	evs, err := db.AuditEvents(t.Context(), 10)
	if err != nil || len(evs) != 1 || !strings.Contains(string(evs[0]), `"alice"`) {
		t.Fatalf("events %q, %v", evs, err)
	}
}

func TestInflightExpires(t *testing.T) {
	db, _ := migrated(t)
	r := db.NewInflight("gate-c", 50*time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	op := gitgate.Running{Operation: gitgate.Operation{Service: gitgate.ReceivePack, Repo: "g/p", Transport: gitgate.TransportSSH}, Started: time.Now()}
	r.Started(7, op)
	waitFor(t, "the push registered", func() bool { ops, _ := db.InFlight(t.Context()); return len(ops) == 1 })
	r.Finished(7)
	waitFor(t, "the push gone", func() bool { ops, _ := db.InFlight(t.Context()); return len(ops) == 0 })
	r.Started(8, op)
	waitFor(t, "the second push registered", func() bool { ops, _ := db.InFlight(t.Context()); return len(ops) == 1 })
	cancel()
	<-done
	if ops, _ := db.InFlight(t.Context()); len(ops) != 0 {
		t.Fatalf("a gate that stops cleanly leaves %v", ops)
	}
	// A gate that dies: its rows are not removed, they expire.
	dead := db.NewInflight("gate-dead", 50*time.Millisecond)
	dead.Started(1, op)
	if err := dead.sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ops, _ := db.InFlight(t.Context()); len(ops) != 1 || ops[0].Gate != "gate-dead" || ops[0].Service != "git-receive-pack" {
		t.Fatalf("in flight %+v", ops)
	}
	waitFor(t, "the dead gate's push to expire", func() bool { ops, _ := db.InFlight(t.Context()); return len(ops) == 0 })
}

func TestPasswordNeverInErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	for _, url := range []string{
		"postgres://gitgate:s3cr%21tpw@" + addr + "/site?sslmode=disable",
		"host=127.0.0.1 port=" + addr[strings.LastIndex(addr, ":")+1:] + " user=gitgate password=s3cr!tpw dbname=site sslmode=disable",
		"postgres://gitgate:s3cr!tpw@" + addr + "/site?sslmode=bogus",
	} {
		_, err := Open(t.Context(), url, nil, Options{})
		if err == nil {
			t.Fatalf("%s: no error", Redact(url))
		}
		if strings.Contains(err.Error(), "s3cr") {
			t.Errorf("error shows the password: %v", err)
		}
		if r := Redact(url); strings.Contains(r, "s3cr") {
			t.Errorf("Redact(%q) = %q", url, r)
		}
	}
}

func TestPGEnvironment(t *testing.T) {
	url := pgtest.Database(t, cluster)
	// The libpq variables fill what the URL leaves out.
	dbname := url[strings.LastIndex(url, "/")+1 : strings.Index(url, "?")]
	t.Setenv("PGHOST", "127.0.0.1")
	t.Setenv("PGPORT", fmt.Sprint(cluster.Port()))
	t.Setenv("PGUSER", "postgres")
	t.Setenv("PGDATABASE", dbname)
	t.Setenv("PGSSLMODE", "disable")
	db, err := Open(t.Context(), "postgres://", nil, Options{SkipSchemaCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, _, err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestDatabaseDown stops PostgreSQL under a watching gate: the state stays
// in force within the bound, then reads as stale (pushes refused), and
// everything comes back when the server does. It runs last-ish and alone:
// it stops the package's cluster.
func TestDatabaseDown(t *testing.T) {
	db, _ := migrated(t)
	on := true
	if _, err := db.Apply(t.Context(), gitgate.Change{Enabled: &on}); err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	view := NewStateView(db, 10*time.Second)
	view.now = func() time.Time { return time.Unix(0, clock.Load()) }
	live := gitgate.NewLiveState(view, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var connected atomic.Bool
	w := &Watcher{DB: db, OnState: live.Reload, OnAccess: func() {}, Refresh: 50 * time.Millisecond, Connected: connected.Store}
	wg.Go(func() { w.Run(ctx) })
	waitFor(t, "connected", connected.Load)
	if s := live.Current(); s.Err != nil || !s.State.Enabled {
		t.Fatalf("before: %+v", s)
	}

	if err := cluster.Kill(t.Context()); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			_ = cluster.Restart(context.Background())
		}
	}()
	waitFor(t, "the watcher to see the database gone", func() bool { return !connected.Load() })
	live.Reload()
	if s := live.Current(); s.Err != nil || !s.State.Enabled {
		t.Fatalf("within the bound: %+v, want the last state and no error", s)
	}
	clock.Add(int64(11 * time.Second))
	waitFor(t, "the state to go stale", func() bool { return live.Current().Err != nil })
	if err := live.Current().Err; !errors.Is(err, ErrStale) {
		t.Fatalf("stale error %v", err)
	}
	d := (&gitgate.Policy{State: live, Access: allowAll{}}).Decide(gitgate.Operation{Service: gitgate.ReceivePack, Repo: "p", User: &gitgate.User{Name: "u"}})
	if r := d.Refusal(); r == nil || r.Kind != gitgate.RefusedStateUnavailable {
		t.Fatalf("push decision while stale: %+v", d)
	}

	if err := cluster.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	restarted = true
	waitFor(t, "the state to be fresh again", func() bool { return live.Current().Err == nil })
	if s := live.Current(); !s.State.Enabled {
		t.Fatalf("after: %+v", s)
	}
}

type allowAll struct{}

func (allowAll) Permission(*gitgate.User, string) gitgate.Permission { return gitgate.PermissionWrite }

// A database URL that does not parse (a password with a space, a stray %,
// or a /, ? or # that was not percent-encoded) still never shows its
// password, in Redact or in Open's error.
func TestPasswordNeverInErrorsOfMalformedURLs(t *testing.T) {
	for _, url := range []string{
		"postgres://gitgate:s3cr tpw@127.0.0.1:1/site",
		"postgres://gitgate:s3cr%zztpw@127.0.0.1:1/site",
		"postgres://gitgate:s3cr/tpw@127.0.0.1:1/site",
		"postgres://gitgate:s3cr?tpw@127.0.0.1:1/site",
		"postgres://gitgate:s3cr#tpw@127.0.0.1:1/site",
		"postgresql://gitgate:s3cr tpw@127.0.0.1:1/site",
	} {
		if r := Redact(url); strings.Contains(r, "s3cr") {
			t.Errorf("Redact shows the password: %q", r)
		}
		if _, err := Open(t.Context(), url, nil, Options{}); err == nil {
			t.Errorf("a malformed URL opened")
		} else if strings.Contains(err.Error(), "s3cr") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}
