package pgstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// startHookGate serves a hook gate for db on a socket in a temp dir until
// the test ends; state answers pre-receive.
func startHookGate(t *testing.T, db *DB, state func() (gitgate.State, error)) *HookGate {
	t.Helper()
	dir, err := os.MkdirTemp("", "hg") // short: a socket path holds 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	hg := db.NewHookGate(filepath.Join(dir, "hooks.sock"), state, 50*time.Millisecond)
	ln, err := hg.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hg.Serve(ctx, ln, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return hg
}

// secretOf returns the secret of a session's environment.
func secretOf(t *testing.T, env []string) string {
	t.Helper()
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, EnvHookSecret+"="); ok {
			return v
		}
	}
	t.Fatalf("no secret in %q", env)
	return ""
}

// rowCount counts the ref transactions in the database.
func rowCount(t *testing.T, db *DB) int {
	t.Helper()
	var n int
	if err := db.pool.QueryRow(t.Context(), `SELECT count(*) FROM ref_transactions`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The hooks of a push ask its gate: pre-receive gets the gate's in-memory
// state, "prepared" a row registered with the database's state read under
// the fence's lock, which enable waits for, "committed" its removal; the
// rows a push still holds go when its git exits; an unknown or ended
// session is refused; no gate on the socket is ErrNoGate (the hook then
// reads the database).
func TestHookGate(t *testing.T) {
	db, _ := migrated(t)
	ctx := t.Context()
	var memErr atomic.Pointer[error]
	hg := startHookGate(t, db, func() (gitgate.State, error) {
		if e := memErr.Load(); e != nil {
			return gitgate.State{}, *e
		}
		return gitgate.State{Enabled: true, Message: "from memory", Version: 7}, nil
	})
	env, done := hg.Start(gitgate.Invocation{Repo: gitgate.Repo{Name: "proj", Path: "/srv/git/proj.git"}})
	socket, secret := strings.TrimPrefix(env[0], EnvHookSocket+"="), secretOf(t, env)

	if st, err := GateState(ctx, socket, secret); err != nil || !st.Enabled || st.Message != "from memory" || st.Version != 7 {
		t.Fatalf("state: %+v, %v", st, err)
	}
	stale := error(ErrStale)
	memErr.Store(&stale)
	if _, err := GateState(ctx, socket, secret); err == nil || errors.Is(err, ErrNoGate) {
		t.Fatalf("state while the gate's view is stale: %v, want a refusal", err)
	}

	// Registered in the database, with the database's state (not the
	// gate's memory): enable waits for it.
	pid := os.Getpid()
	if st, err := GateRegister(ctx, socket, secret, pid); err != nil || st.Enabled {
		t.Fatalf("register: %+v, %v", st, err)
	}
	err := db.WaitTxns(ctx, 50*time.Millisecond)
	var fe *gitgate.FenceTimeoutError
	if !errors.As(err, &fe) || len(fe.Pending) != 1 || !strings.Contains(fe.Error(), "/srv/git/proj.git on host") {
		t.Fatalf("wait with a registered update: %v", err)
	}
	if err := GateRelease(ctx, socket, secret); err != nil {
		t.Fatal(err)
	}
	if n := rowCount(t, db); n != 0 {
		t.Fatalf("%d rows after the release", n)
	}
	if err := GateRelease(ctx, socket, secret); err != nil {
		t.Fatalf("a release without a row: %v", err)
	}
	if _, err := db.Apply(ctx, gitgate.Change{Enabled: new(true), By: "test"}); err != nil {
		t.Fatal(err)
	}
	// Nested, and refused in maintenance (still registered: "aborted"
	// follows).
	for range 2 {
		if st, err := GateRegister(ctx, socket, secret, pid); err != nil || !st.Enabled {
			t.Fatalf("register in maintenance: %+v, %v", st, err)
		}
	}
	if n := rowCount(t, db); n != 2 {
		t.Fatalf("%d rows, want 2", n)
	}
	// git exits: its rows go.
	done()
	waitFor(t, "the rows of an exited git to go", func() bool { return rowCount(t, db) == 0 })
	if _, err := GateRegister(ctx, socket, secret, pid); err == nil || errors.Is(err, ErrNoGate) {
		t.Fatalf("register for an ended session: %v, want a refusal", err)
	}
	if _, err := GateState(ctx, socket, "forged"); err == nil || errors.Is(err, ErrNoGate) {
		t.Fatalf("state with a forged secret: %v, want a refusal", err)
	}
	if _, err := GateRegister(ctx, filepath.Join(t.TempDir(), "none.sock"), secret, pid); !errors.Is(err, ErrNoGate) {
		t.Fatalf("register with no gate: %v, want ErrNoGate", err)
	}
	if st, reg, rel := hg.Served(); st != 2 || reg != 3 || rel != 2 {
		t.Errorf("served %d/%d/%d, want 2/3/2", st, reg, rel)
	}
}

// The fence holds through the gate, as a property under concurrency:
// pushers register through their gate again and again while maintenance
// is toggled; once enable (with its wait) has returned, no update that was
// let through is still running, and none is let through until disable.
func TestHookGateFence(t *testing.T) {
	db, _ := migrated(t)
	ctx := t.Context()
	hg := startHookGate(t, db, func() (gitgate.State, error) { return gitgate.State{}, nil })
	var active, allowed atomic.Int64
	var enabled atomic.Bool
	var violations atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		env, done := hg.Start(gitgate.Invocation{Repo: gitgate.Repo{Name: "proj", Path: "/srv/git/proj.git"}})
		socket, secret := strings.TrimPrefix(env[0], EnvHookSocket+"="), secretOf(t, env)
		wg.Go(func() {
			defer done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				st, err := GateRegister(ctx, socket, secret, os.Getpid())
				if err != nil {
					t.Errorf("register: %v", err)
					return
				}
				if !st.Enabled {
					active.Add(1)
					allowed.Add(1)
					if enabled.Load() {
						violations.Add(1) // let through after enable returned
					}
					time.Sleep(time.Millisecond) // git writes its refs
					active.Add(-1)
				}
				if err := GateRelease(ctx, socket, secret); err != nil {
					t.Errorf("release: %v", err)
					return
				}
			}
		})
	}
	for range 20 {
		time.Sleep(5 * time.Millisecond)
		if _, err := db.Apply(ctx, gitgate.Change{Enabled: new(true), By: "test"}); err != nil {
			t.Fatal(err)
		}
		if err := db.WaitTxns(ctx, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		enabled.Store(true)
		if n := active.Load(); n != 0 {
			t.Errorf("%d updates let through still running after enable returned", n)
		}
		time.Sleep(2 * time.Millisecond)
		enabled.Store(false)
		if _, err := db.Apply(ctx, gitgate.Change{Enabled: new(false), By: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if v := violations.Load(); v != 0 {
		t.Errorf("%d updates let through while maintenance was on", v)
	}
	if allowed.Load() == 0 {
		t.Error("no update was ever let through: the test exercised nothing")
	}
}
