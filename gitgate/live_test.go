package gitgate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
)

// TestLiveStateNeverStepsBack is the property behind "enabled means
// enabled": with many writers changing the state and reloading, and more
// goroutines reloading on their own, a watcher never sees the published
// version go down, and once every reload has returned the published state
// is the last one written.
func TestLiveStateNeverStepsBack(t *testing.T) {
	store := NewFileStore(t.TempDir())
	live := NewLiveState(store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	const writers, changesEach, reloaders, reloadsEach = 6, 60, 6, 300

	stop := make(chan struct{})
	watched := make(chan error, 1)
	go func() { // the watcher: every published snapshot, in order
		var last uint64
		for {
			changed := live.Changed()
			v := live.Current().State.Version
			if v < last {
				watched <- fmt.Errorf("the published state stepped back from version %d to %d", last, v)
				return
			}
			last = v
			select {
			case <-changed:
			case <-stop:
				watched <- nil
				return
			}
		}
	}()

	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < changesEach; j++ {
				on := j%2 == 0
				if _, err := store.Apply(ctx, Change{Enabled: &on, By: "stress"}); err != nil {
					t.Error(err)
					return
				}
				live.Reload()
			}
		}()
	}
	for i := 0; i < reloaders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < reloadsEach; j++ {
				live.Reload()
			}
		}()
	}
	wg.Wait()
	close(stop)
	if err := <-watched; err != nil {
		t.Fatal(err)
	}
	want, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want.Version != writers*changesEach {
		t.Fatalf("store at version %d, want %d", want.Version, writers*changesEach)
	}
	if got := live.Current(); got.Err != nil || got.State.Version != want.Version {
		t.Fatalf("after every reload returned: published %+v, last written version %d", got, want.Version)
	}
}

// TestLiveStateMissingFileAfterAStateFailsClosed: once the gate has seen a
// state, the state file vanishing is never "not in maintenance", even when
// the version record in the lock file went with it (an admin who removed
// "the stale lock file", then the state file, or both with one glob).
func TestLiveStateMissingFileAfterAStateFailsClosed(t *testing.T) {
	dir := t.TempDir()
	store := NewFileStore(dir)
	live := NewLiveState(store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	on := true
	if _, err := store.Apply(context.Background(), Change{Enabled: &on, By: "admin"}); err != nil {
		t.Fatal(err)
	}
	live.Reload()
	if s := live.Current(); s.Err != nil || !s.State.Enabled {
		t.Fatalf("after enable: %+v", s)
	}
	for _, p := range []string{store.Path(), store.lockPath()} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	live.Reload()
	s := live.Current()
	if !errors.Is(s.Err, ErrStateMissing) {
		t.Fatalf("state file and lock file removed while enabled: snapshot %+v; want ErrStateMissing", s)
	}
	// A reset writes a new state and the gate follows it.
	if _, err := store.Reset(context.Background(), Change{Enabled: new(bool), By: "admin"}); err != nil {
		t.Fatal(err)
	}
	live.Reload()
	if s := live.Current(); s.Err != nil || s.State.Enabled {
		t.Fatalf("after reset: %+v", s)
	}
}
