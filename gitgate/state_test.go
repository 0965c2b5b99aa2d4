package gitgate

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestValidateMessage(t *testing.T) {
	tests := []struct {
		msg  string
		want string
	}{
		{"", ""},
		{"Upgrading to 17.6", ""},
		{strings.Repeat("é", 255), ""},
		{strings.Repeat("x", 256), "invalid maintenance message: 256 characters, at most 255 allowed"},
		{"two\nlines", "invalid maintenance message: control character U+000A"},
		{"bell\a", "invalid maintenance message: control character U+0007"},
		{"\xff", "invalid maintenance message: not valid UTF-8"},
	}
	for _, tt := range tests {
		err := ValidateMessage(tt.msg)
		if got := errString(err); got != tt.want {
			t.Errorf("ValidateMessage(%.20q) = %q, want %q", tt.msg, got, tt.want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestFileStoreMissingFileIsNotInMaintenance(t *testing.T) {
	st, err := NewFileStore(t.TempDir()).Load(context.Background())
	if err != nil || st.Enabled || st.Version != 0 {
		t.Fatalf("Load = %+v, %v", st, err)
	}
}

func TestFileStoreApply(t *testing.T) {
	dir := t.TempDir()
	s := NewFileStore(dir)
	on, off, msg := true, false, "Upgrading"
	st, err := s.Apply(context.Background(), Change{Enabled: &on, Message: &msg, By: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Enabled || st.Message != msg || st.By != "alice" || st.Version != 1 || st.Since.IsZero() {
		t.Fatalf("after enable: %+v", st)
	}
	st, err = s.Apply(context.Background(), Change{Enabled: &off, By: "bob"})
	if err != nil || st.Enabled || st.Message != msg || st.Version != 2 {
		t.Fatalf("after disable: %+v, %v", st, err)
	}
	loaded, err := s.Load(context.Background())
	if err != nil || loaded.Version != 2 || loaded.By != "bob" {
		t.Fatalf("Load = %+v, %v", loaded, err)
	}
	if fi, err := os.Stat(s.Path()); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("state file: %v %v", fi, err)
	}
	long := strings.Repeat("x", 256)
	if _, err := s.Apply(context.Background(), Change{Message: &long}); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("long message: %v", err)
	}
	if st, _ := s.Load(context.Background()); st.Version != 2 {
		t.Fatalf("a refused change bumped the version: %+v", st)
	}
}

// Writers in parallel (as the CLI and a server would be) lose no change:
// every one gets its own version and the last version counts them all.
func TestFileStoreConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	const writers, each = 8, 10
	var wg sync.WaitGroup
	versions := make(chan uint64, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := NewFileStore(dir) // separate stores, as separate processes have
			for i := 0; i < each; i++ {
				on := i%2 == 0
				st, err := s.Apply(context.Background(), Change{Enabled: &on, By: "w"})
				if err != nil {
					t.Error(err)
					return
				}
				versions <- st.Version
			}
		}()
	}
	wg.Wait()
	close(versions)
	seen := map[uint64]bool{}
	for v := range versions {
		if seen[v] {
			t.Fatalf("version %d handed out twice", v)
		}
		seen[v] = true
	}
	st, err := NewFileStore(dir).Load(context.Background())
	if err != nil || st.Version != writers*each {
		t.Fatalf("final state %+v, %v; want version %d", st, err, writers*each)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestFileStoreRejectsCorruptFiles(t *testing.T) {
	for name, content := range map[string]string{
		"truncated":     `{"enabled": tru`,
		"unknown field": `{"enabled": true, "version": 1, "owner": "x"}`,
		"trailing data": `{"enabled": false, "version": 1} {}`,
		"wrong type":    `{"enabled": "yes", "version": 1}`,
		"bad message":   `{"enabled": true, "version": 1, "message": "a\nb"}`,
		"no version":    `{"enabled": true}`,
		"empty":         ``,
		"huge":          `{"message": "` + strings.Repeat("x", 70000) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, StateFileName), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			s := NewFileStore(dir)
			if _, err := s.Load(context.Background()); err == nil {
				t.Fatal("Load accepted a corrupt file")
			}
			on := true
			if _, err := s.Apply(context.Background(), Change{Enabled: &on}); err == nil {
				t.Fatal("Apply overwrote a corrupt file")
			}
		})
	}
}

func TestLiveStateFollowsTheFile(t *testing.T) {
	dir := t.TempDir()
	store := NewFileStore(dir)
	live := NewLiveState(store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live.Run(ctx, time.Hour) // only the file watch can deliver changes
	await := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second): // a safety bound, not a timing check
			t.Fatalf("the watcher never saw %s", what)
		}
	}

	changed := live.Changed()
	on := true
	if _, err := store.Apply(ctx, Change{Enabled: &on, By: "cli"}); err != nil {
		t.Fatal(err)
	}
	await(changed, "the enable")
	if s := live.Current(); !s.State.Enabled || s.Err != nil || s.State.Version != 1 {
		t.Fatalf("after enable: %+v", s)
	}

	changed = live.Changed()
	if err := os.WriteFile(store.Path(), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	await(changed, "the corrupt file")
	if s := live.Current(); s.Err == nil || !s.State.Enabled {
		t.Fatalf("corrupt file: %+v; want the error and the last good state", s)
	}

	changed = live.Changed()
	if err := os.Remove(store.Path()); err != nil {
		t.Fatal(err)
	}
	await(changed, "the removal")
	if s := live.Current(); !errors.Is(s.Err, ErrStateMissing) || !s.State.Enabled {
		t.Fatalf("after removal: %+v; want ErrStateMissing and the last good state", s)
	}

	changed = live.Changed()
	if _, err := store.Reset(ctx, Change{By: "cli"}); err != nil {
		t.Fatal(err)
	}
	await(changed, "the reset")
	if s := live.Current(); s.Err != nil || s.State.Enabled || s.State.Version != 2 {
		t.Fatalf("after reset: %+v", s)
	}
}

func TestFileStoreMirror(t *testing.T) {
	s := NewFileStore(t.TempDir())
	ctx := context.Background()
	primary := State{Enabled: true, Message: "from primary", Version: 7, By: "admin"}
	if wrote, err := s.Mirror(ctx, primary, false); err != nil || !wrote {
		t.Fatalf("Mirror = %v, %v", wrote, err)
	}
	if st, _ := s.Load(ctx); st != primary {
		t.Fatalf("Load = %+v", st)
	}
	older := State{Version: 6}
	if wrote, err := s.Mirror(ctx, older, false); err != nil || wrote {
		t.Fatalf("an older state was written: %v, %v", wrote, err)
	}
	if wrote, err := s.Mirror(ctx, older, true); err != nil || !wrote {
		t.Fatalf("forced Mirror = %v, %v", wrote, err)
	}
	if _, err := s.Mirror(ctx, State{Message: "a\nb", Version: 9}, false); err == nil {
		t.Fatal("an invalid state was mirrored")
	}
}
