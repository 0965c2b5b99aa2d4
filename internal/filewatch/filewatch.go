// Package filewatch calls a function whenever a file may have changed. It
// watches the file's directory with fsnotify (so atomic renames, deletions
// and re-creations are seen) and re-reads on a slow timer as a fallback for
// file systems that deliver no events.
package filewatch

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultFallback is how often the file is re-read when no event arrives.
const DefaultFallback = 2 * time.Second

// settle is how long the file must be quiet after an event before it is
// re-read. An editor that saves in place truncates, then writes, raising
// several events; reading at the first one would see a half-written file.
// Files written atomically (rename into place) raise one event and pay
// this delay once.
const settle = 15 * time.Millisecond

// Watch calls reload once, then again after every change to path (once the
// file has been quiet for a few milliseconds), until ctx is done. reload must
// be cheap and idempotent. The directory holding path must exist. Watch returns after the first reload
// and the watch is set up; it reports an error only when the directory
// cannot be watched at all, in which case it still polls every fallback.
func Watch(ctx context.Context, path string, fallback time.Duration, log *slog.Logger, reload func()) error {
	if fallback <= 0 {
		fallback = DefaultFallback
	}
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(filepath.Dir(path)); err != nil {
			w.Close()
			w = nil
		}
	} else {
		w = nil
	}
	reload()
	go loop(ctx, w, path, fallback, log, reload)
	if err != nil {
		return fmt.Errorf("watch %s: %w (polling every %s instead)", filepath.Dir(path), err, fallback)
	}
	return nil
}

func loop(ctx context.Context, w *fsnotify.Watcher, path string, fallback time.Duration, log *slog.Logger, reload func()) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	name := filepath.Clean(path)
	tick := time.NewTicker(fallback)
	defer tick.Stop()
	quiet := time.NewTimer(settle)
	quiet.Stop()
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if filepath.Clean(ev.Name) == name {
				quiet.Reset(settle)
			}
		case <-quiet.C:
			reload()
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			log.Warn("file watch error; relying on periodic re-read", "file", path, "err", err)
			reload()
		case <-tick.C:
			reload()
		}
	}
}
