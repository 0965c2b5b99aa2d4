package filewatch

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Saves in place (truncate, then write in pieces) and atomic renames are
// both seen, and each save is read once it is complete.
func TestWatchSeesEverySaveWhole(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	reloads := make(chan string, 100)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := Watch(ctx, path, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)), func() {
		data, _ := os.ReadFile(path)
		reloads <- string(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := <-reloads; got != "" {
		t.Fatalf("first reload read %q", got)
	}
	waitFor := func(want string) {
		t.Helper()
		giveUp := time.After(10 * time.Second) // a safety bound, not a timing check
		for {
			select {
			case got := <-reloads:
				if got == want {
					return
				}
			case <-giveUp:
				t.Fatalf("never reloaded %q", want)
			}
		}
	}

	// In place, in two writes: the reader must end with the whole text and
	// never act on the truncated file alone after the write settles.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("first ")
	f.WriteString("half\n")
	f.Close()
	waitFor("first half\n")

	// Atomic rename into place.
	tmp := filepath.Join(dir, ".state.tmp")
	os.WriteFile(tmp, []byte("renamed\n"), 0o644)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	waitFor("renamed\n")

	// Removal is a change too.
	os.Remove(path)
	waitFor("")

	// Other files in the directory do not count.
	os.WriteFile(filepath.Join(dir, "other"), []byte("x"), 0o644)
	os.WriteFile(path, []byte("back\n"), 0o644)
	waitFor("back\n")
}

func TestWatchFallsBackToPolling(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing-dir", "state")
	n := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := Watch(ctx, path, time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)), func() { n <- struct{}{} })
	if err == nil {
		t.Fatal("Watch of a missing directory reported no error")
	}
	<-n // first reload
	<-n // from the poll
}
