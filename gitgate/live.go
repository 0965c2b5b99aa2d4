package gitgate

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gitgate/gitgate/internal/filewatch"
)

// LiveState holds the maintenance state in memory for the request path and
// keeps it current: for a [FileStore] it watches the file and re-reads it on
// change, with a periodic re-read as a fallback; any other Store (the
// shared database) is re-read by its owner calling Reload on change.
// Readers pay no I/O.
//
// When the file becomes unreadable or corrupt, the snapshot keeps the last
// good state and carries the error, so the policy refuses pushes (fail
// closed) while reads go on; it recovers by itself when the file is valid.
type LiveState struct {
	store Store
	log   *slog.Logger
	cur   atomic.Pointer[Snapshot]

	// reload serialises Reload from the read to the publication, so that a
	// read that started later is never published before an earlier one:
	// the published version goes down only when the file's did.
	reload sync.Mutex

	mu      sync.Mutex // guards changed
	changed chan struct{}
}

// NewLiveState returns a LiveState for store. Call Run to load and watch.
func NewLiveState(store Store, log *slog.Logger) *LiveState {
	l := &LiveState{store: store, log: log, changed: make(chan struct{})}
	l.cur.Store(&Snapshot{})
	return l
}

// Current returns the state as last read. It never blocks.
func (l *LiveState) Current() Snapshot { return *l.cur.Load() }

// Changed returns a channel that is closed at the next change of the
// snapshot (a new version, or the error appearing or clearing). Long-poll
// handlers wait on it, then call Current and Changed again.
func (l *LiveState) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// Run loads the state once, then keeps it current until ctx is done. It
// returns after the first load, with the watch running in the background.
func (l *LiveState) Run(ctx context.Context, fallback time.Duration) {
	fs, ok := l.store.(*FileStore)
	if !ok {
		l.Reload()
		return
	}
	if err := filewatch.Watch(ctx, fs.Path(), fallback, l.log, l.Reload); err != nil {
		l.log.Warn("cannot watch the maintenance state file; changes will be seen within the poll interval", "err", err)
	}
}

// Reload re-reads the store now. The server calls it after its own writes so
// that they take effect before the write is acknowledged: when it returns,
// the published state is the file's as read after the call began (or its
// error, such as a read that did not finish in time). Reloads run one at a
// time, each bounded by the store's read deadline.
func (l *LiveState) Reload() {
	l.reload.Lock()
	defer l.reload.Unlock()
	st, err := l.store.Load(context.Background())
	old := l.cur.Load()
	fs, isFile := l.store.(*FileStore)
	if err == nil && st.Version == 0 && old.State.Version > 0 && isFile {
		// "Never had a state", yet this process has seen one: the state
		// file went away together with the version record in its lock
		// file. That is lost, not "not in maintenance".
		if _, serr := os.Lstat(fs.Path()); errors.Is(serr, iofs.ErrNotExist) {
			err = fmt.Errorf("%w: %s was removed, with the version record in %s, after this gate had seen version %d; "+
				`pushes stay refused; if that is intended, run "gitgate maintenance reset"`,
				ErrStateMissing, fs.Path(), filepath.Base(fs.lockPath()), old.State.Version)
		}
	}
	next := &Snapshot{State: st, Err: err}
	if err != nil {
		next.State = old.State // keep the last good state for display
	}
	if sameSnapshot(old, next) {
		return
	}
	switch {
	case err != nil:
		l.log.Error("maintenance state unreadable: refusing pushes until it is fixed", "file", l.where(), "err", err)
	case old.Err != nil:
		l.log.Info("maintenance state readable again", "file", l.where(), "enabled", st.Enabled, "version", st.Version)
	case st.Version < old.State.Version:
		// Reads are published in order, so the file itself went back: it
		// was replaced by hand (a restored backup, say).
		l.log.Warn("maintenance state version went down: the state file was replaced", "file", l.where(),
			"enabled", st.Enabled, "version", st.Version, "previous_version", old.State.Version)
	default:
		l.log.Info("maintenance state changed", "enabled", st.Enabled, "version", st.Version, "by", st.By, "message", st.Message)
	}
	l.cur.Store(next)
	l.mu.Lock()
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func sameSnapshot(a, b *Snapshot) bool {
	if (a.Err == nil) != (b.Err == nil) {
		return false
	}
	if a.Err != nil {
		return a.Err.Error() == b.Err.Error()
	}
	return a.State.Version == b.State.Version && a.State.Enabled == b.State.Enabled && a.State.Message == b.State.Message
}

// where names the store in logs.
func (l *LiveState) where() string {
	if fs, ok := l.store.(*FileStore); ok {
		return fs.Path()
	}
	if s, ok := l.store.(fmt.Stringer); ok {
		return s.String()
	}
	return "store"
}
