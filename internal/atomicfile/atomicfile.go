// Package atomicfile handles the gate's small state and config files:
// writes that readers see whole or not at all, a lock that serialises
// writers across processes, and reads bounded in size and in time.
//
// Nothing here waits without a deadline: a state file replaced by a FIFO,
// or one on a hung network mount, makes a read or a lock wait fail with
// ErrNotRegular or ErrTimeout instead of blocking its caller forever.
package atomicfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Write replaces path with data atomically and durably: it writes a temporary
// file in the same directory, syncs it, renames it over path and syncs the
// directory, so a crash leaves either the old file or the new one.
func Write(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("chmod temporary file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write temporary file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync temporary file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close temporary file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	return SyncDir(dir)
}

// SyncDir flushes a directory's entries (after a rename or create) to disk.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}

// DefaultReadTimeout bounds every read: a small local file is read in
// microseconds, a file on a hung network mount never is.
const DefaultReadTimeout = 5 * time.Second

// DefaultLockTimeout bounds Acquire. A writer holds the lock for one small
// read and one small write, so a longer wait means a stuck writer.
const DefaultLockTimeout = 10 * time.Second

var (
	// ErrTooLarge is returned by ReadBounded for a file over its limit.
	ErrTooLarge = errors.New("file too large")
	// ErrNotRegular is returned for a path that is not a regular file (a
	// FIFO, a device, a directory): reading one could block or never end.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTimeout is returned when a read or a lock wait did not finish
	// before its deadline.
	ErrTimeout = errors.New("no answer in time")
)

// Lock is an exclusive advisory lock held on a lock file. It serialises
// read-modify-write cycles between processes (the CLI and a running server)
// and between goroutines that each take their own Lock.
//
// The lock file can also keep a small note (see ReadNote and WriteNote)
// that outlives the file it guards.
type Lock struct{ f *os.File }

// Acquire is AcquireContext bounded by DefaultLockTimeout, for callers
// without a context.
func Acquire(path string) (*Lock, error) {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultLockTimeout)
	defer cancel()
	return AcquireContext(ctx, path, nil)
}

// AcquireContext waits until it holds the exclusive lock on path, creating
// the lock file if needed, or until ctx is done (then the error wraps
// ErrTimeout for a deadline, or ctx's error). busy, if not nil, is called
// once when the lock is found held by someone else, so that a command can
// say what it waits for. The lock file is never removed: removing it would
// let two writers lock two different files. A lock file that is not a
// regular file is refused.
func AcquireContext(ctx context.Context, path string, busy func()) (*Lock, error) {
	f, err := within(ctx, path, func() (*os.File, error) { return openRegular(path, os.O_RDWR|os.O_CREATE, 0o600) },
		func(f *os.File) { f.Close() })
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	const minWait, maxWait = time.Millisecond, 50 * time.Millisecond
	wait := minWait
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return &Lock{f: f}, nil
		case errors.Is(err, syscall.EINTR):
			continue
		case !errors.Is(err, syscall.EWOULDBLOCK):
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", filepath.Base(path), err)
		}
		if busy != nil {
			busy()
			busy = nil
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("lock %s: held by another process: %w", filepath.Base(path), ctxError(ctx))
		}
		wait = min(2*wait, maxWait)
	}
}

// Release gives the lock up.
func (l *Lock) Release() error {
	return l.f.Close() // closing the descriptor drops the flock
}

// ReadNote returns the note kept in the lock file, at most max bytes
// (longer notes are cut); empty when none was written.
func (l *Lock) ReadNote(max int64) ([]byte, error) {
	buf := make([]byte, max)
	n, err := l.f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read lock note: %w", err)
	}
	return buf[:n], nil
}

// WriteNote replaces the note kept in the lock file and syncs it. Notes of
// one length replace each other in place, so the file is never seen empty
// in between.
func (l *Lock) WriteNote(data []byte) error {
	if _, err := l.f.WriteAt(data, 0); err != nil {
		return fmt.Errorf("write lock note: %w", err)
	}
	if err := l.f.Truncate(int64(len(data))); err != nil {
		return fmt.Errorf("write lock note: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("sync lock note: %w", err)
	}
	return nil
}

// ReadBounded is ReadBoundedContext without a caller's context: the read
// is still bounded by DefaultReadTimeout.
func ReadBounded(path string, max int64) ([]byte, error) {
	return ReadBoundedContext(context.Background(), path, max)
}

// ReadBoundedContext reads path whole, refusing files larger than max bytes
// (a state or config file far larger than the gate writes is not one of
// ours) and anything but a regular file. It gives up when ctx is done or
// after DefaultReadTimeout, whichever is first, with an error wrapping
// ErrTimeout (or ctx's error when ctx was cancelled). Errors from opening
// the file are returned as they are (so errors.Is(err, fs.ErrNotExist)
// works).
//
// A read that does not return (a hung mount) is left behind in its own
// goroutine, and it is the only one: while it hangs, later reads of the same
// path wait for it up to their deadline instead of starting another.
func ReadBoundedContext(ctx context.Context, path string, max int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultReadTimeout)
	defer cancel()
	return within(ctx, path, func() ([]byte, error) { return readRegular(path, max) }, nil)
}

func readRegular(path string, max int64) ([]byte, error) {
	f, err := openRegular(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", path, ErrTooLarge, max)
	}
	return data, nil
}

// openRegular opens path without blocking on a FIFO (O_NONBLOCK) and keeps
// it only if it is a regular file. Errors from open are returned as they are.
func openRegular(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NONBLOCK|syscall.O_NOCTTY, perm)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, fileKind(fi.Mode()))
	}
	return f, nil
}

func fileKind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	}
	return "mode " + m.String()
}

// ctxError turns a done context into the error to return: ErrTimeout for a
// deadline, else the context's own error.
func ctxError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	}
	return ctx.Err()
}

// within runs fn for path in its own goroutine and returns its result, or
// gives up when ctx is done. At most one fn per path runs at a time in the
// process: a call that finds another one running (perhaps stuck for good)
// waits for it, up to ctx. When the caller has given up, the late result is
// passed to discard (if not nil) once fn returns.
func within[T any](ctx context.Context, path string, fn func() (T, error), discard func(T)) (T, error) {
	var zero T
	release, err := running.enter(ctx, filepath.Clean(path))
	if err != nil {
		return zero, fmt.Errorf("%s: an earlier access to it has not returned: %w", path, err)
	}
	type result struct {
		v   T
		err error
	}
	// Unbuffered: a result is either taken by the caller or discarded,
	// never left in a buffer (a lock file would stay open and locked).
	done := make(chan result)
	abandoned := make(chan struct{})
	go func() {
		defer release()
		v, err := fn()
		select {
		case done <- result{v, err}:
		case <-abandoned:
			if err == nil && discard != nil {
				discard(v)
			}
		}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		close(abandoned)
		// fn may have finished at the same moment: do not lose its result.
		select {
		case r := <-done:
			return r.v, r.err
		default:
		}
		return zero, fmt.Errorf("%s: %w", path, ctxError(ctx))
	}
}

// running is the process-wide "one access per path at a time" rule of
// within. It is package state on purpose: its point is to bound goroutines
// stuck on one file across every caller in the process. Entries are
// removed when no one uses them, so it holds at most the paths in use.
var running = pathSlots{m: map[string]*pathSlot{}}

type pathSlots struct {
	mu sync.Mutex
	m  map[string]*pathSlot
}

type pathSlot struct {
	token chan struct{} // capacity 1: full while an access runs
	users int           // the one running and those waiting
}

// enter waits for path's slot, or until ctx is done, and returns the func
// that frees it.
func (p *pathSlots) enter(ctx context.Context, path string) (func(), error) {
	p.mu.Lock()
	s := p.m[path]
	if s == nil {
		s = &pathSlot{token: make(chan struct{}, 1)}
		p.m[path] = s
	}
	s.users++
	p.mu.Unlock()
	leave := func() {
		p.mu.Lock()
		if s.users--; s.users == 0 {
			delete(p.m, path)
		}
		p.mu.Unlock()
	}
	select {
	case s.token <- struct{}{}:
		return func() { <-s.token; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, ctxError(ctx)
	}
}
