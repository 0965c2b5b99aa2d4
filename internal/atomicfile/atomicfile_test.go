package atomicfile

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestWriteReplacesWholeAndLeavesNoTemporaryFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, content := range []string{"one\n", strings.Repeat("two\n", 1000), ""} {
		if err := Write(path, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read %d bytes, %v; want %d", len(got), err, len(content))
		}
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the file", len(entries))
	}
	if err := Write(filepath.Join(dir, "no", "such", "dir"), nil, 0o600); err == nil {
		t.Error("Write into a missing directory succeeded")
	}
}

// Lock serialises read-modify-write cycles: no increment is lost.
func TestLockSerialisesWriters(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "counter")
	Write(path, nil, 0o600)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := Acquire(path + ".lock")
			if err != nil {
				t.Error(err)
				return
			}
			defer l.Release()
			data, _ := os.ReadFile(path)
			Write(path, append(data, 'x'), 0o600)
		}()
	}
	wg.Wait()
	if data, _ := os.ReadFile(path); len(data) != 20 {
		t.Fatalf("%d increments survived, want 20", len(data))
	}
}

func TestReadBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, []byte("12345"), 0o600)
	if data, err := ReadBounded(path, 5); err != nil || string(data) != "12345" {
		t.Fatalf("at the limit: %q, %v", data, err)
	}
	if _, err := ReadBounded(path, 4); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := ReadBounded(path+".missing", 4); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
}

// A FIFO in place of a file is refused at once, for reads and for the lock,
// instead of blocking until someone writes to it.
func TestSpecialFilesAreRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadBounded(fifo, 10); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("ReadBounded(FIFO) = %v, want ErrNotRegular", err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink(fifo, link)
	if _, err := ReadBounded(link, 10); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("ReadBounded(link to FIFO) = %v, want ErrNotRegular", err)
	}
	if _, err := ReadBounded(dir, 10); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("ReadBounded(directory) = %v, want ErrNotRegular", err)
	}
	if l, err := Acquire(fifo); !errors.Is(err, ErrNotRegular) {
		if l != nil {
			l.Release()
		}
		t.Fatalf("Acquire(FIFO) = %v, want ErrNotRegular", err)
	}
}

// A lock held elsewhere is waited for until the context ends, with one
// call of busy, and then taken once it is free.
func TestAcquireContextGivesUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	held, err := Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	busy := 0
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if l, err := AcquireContext(ctx, path, func() { busy++ }); !errors.Is(err, ErrTimeout) {
		if l != nil {
			l.Release()
		}
		t.Fatalf("AcquireContext on a held lock = %v, want ErrTimeout", err)
	}
	if busy != 1 {
		t.Errorf("busy called %d times, want 1", busy)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, err := AcquireContext(cctx, path, nil); !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Fatalf("AcquireContext with a cancelled context = %v, want context.Canceled", err)
	}
	held.Release()
	l, err := AcquireContext(context.Background(), path, func() { t.Error("busy called on a free lock") })
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
}

func TestLockNote(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	l, err := Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := l.ReadNote(64); err != nil || len(n) != 0 {
		t.Fatalf("new lock note = %q, %v", n, err)
	}
	for _, note := range []string{"a long note\n", "short\n"} {
		if err := l.WriteNote([]byte(note)); err != nil {
			t.Fatal(err)
		}
	}
	l.Release()
	l, err = Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if n, err := l.ReadNote(64); err != nil || string(n) != "short\n" {
		t.Fatalf("note = %q, %v", n, err)
	}
}

// A read that hangs (a hung mount) gives up at its deadline; while it
// hangs, no second read of the same path starts; when it returns, reads
// work again and a late result is discarded.
func TestWithinBoundsStuckAccess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stuck")
	unblock := make(chan struct{})
	started := make(chan struct{}, 2)
	discarded := make(chan string, 1)
	stuck := func() (string, error) {
		started <- struct{}{}
		<-unblock
		return "late", nil
	}
	short := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 20*time.Millisecond)
	}
	ctx, cancel := short()
	defer cancel()
	if _, err := within(ctx, path, stuck, func(v string) { discarded <- v }); !errors.Is(err, ErrTimeout) {
		t.Fatalf("stuck access = %v, want ErrTimeout", err)
	}
	ctx2, cancel2 := short()
	defer cancel2()
	if _, err := within(ctx2, path, stuck, nil); !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "earlier access") {
		t.Fatalf("second access while the first hangs = %v", err)
	}
	if n := len(started); n != 1 {
		t.Fatalf("%d accesses started, want 1", n)
	}
	close(unblock)
	select {
	case v := <-discarded:
		if v != "late" {
			t.Fatalf("discarded %q", v)
		}
	case <-time.After(10 * time.Second): // a safety bound, not a timing check
		t.Fatal("the late result was never discarded")
	}
	v, err := within(context.Background(), path, func() (string, error) { return "ok", nil }, nil)
	if err != nil || v != "ok" {
		t.Fatalf("after the stuck access returned: %q, %v", v, err)
	}
	// The stuck access frees its slot just after it discarded its result:
	// wait for that (bounded), then none may be left.
	slots := func() int {
		running.mu.Lock()
		defer running.mu.Unlock()
		return len(running.m)
	}
	for i := 0; i < 1000 && slots() != 0; i++ {
		time.Sleep(time.Millisecond)
	}
	if n := slots(); n != 0 {
		t.Errorf("%d path slots left behind", n)
	}
}
