package pgstore

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gitgate/gitgate/gitgate"
)

// Anyone who may connect to the database may NOTIFY on any channel: no
// privilege is needed, not even one on the state table. So a notification
// is only a wake-up; what a gate publishes is what it reads from the table.
// A forged "maintenance off" with a huge version neither lets pushes
// through nor stops the gate from following the real changes after it.
func TestForgedNotifyIsOnlyAWakeUp(t *testing.T) {
	a, url := migrated(t)
	b, err := Open(t.Context(), url, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	on, off := true, false
	if _, err := a.Apply(t.Context(), gitgate.Change{Enabled: &on, By: "alice"}); err != nil {
		t.Fatal(err)
	}
	view := NewStateView(b, 10*time.Second)
	live := gitgate.NewLiveState(view, slog.New(slog.DiscardHandler))
	live.Reload()
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var connected atomic.Bool
	var woken atomic.Int64
	w := &Watcher{DB: b, OnState: func() { live.Reload(); woken.Add(1) }, OnAccess: func() {},
		Refresh: time.Minute, Connected: connected.Store}
	wg.Go(func() { w.Run(ctx) })
	waitFor(t, "the watcher to connect", connected.Load)

	attacker, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close(context.Background())
	for _, payload := range []string{
		`{"v":999999,"e":false,"m":"","s":null,"b":"mallory"}`,
		`{"v":2,"e":false,"m":"","s":null,"b":"mallory"}`,
		"999999",
	} {
		before := woken.Load()
		if _, err := attacker.Exec(t.Context(), "SELECT pg_notify($1, $2)", ChannelState, payload); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the gate to wake up", func() bool { return woken.Load() > before })
		if got := live.Current(); got.Err != nil || !got.State.Enabled || got.State.Version != 1 {
			t.Fatalf("after a forged notification %q the gate holds %+v, want the table's: enabled, version 1", payload, got)
		}
	}
	// The real next change is followed.
	changed := live.Changed()
	st, err := a.Apply(t.Context(), gitgate.Change{Enabled: &off, By: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("the gate did not follow the real change")
	}
	if got := live.Current(); got.Err != nil || got.State.Enabled || got.State.Version != st.Version {
		t.Fatalf("gate holds %+v, want %+v", got, st)
	}
}
