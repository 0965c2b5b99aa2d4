package gitgate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitgate/gitgate/internal/atomicfile"
)

// Once a data dir has had a state, a missing state file, or a link to one
// whose target is gone, fails closed instead of reading as "never in
// maintenance"; a data dir that never had one still reads as disabled.
func TestFileStoreMissingStateFailsClosed(t *testing.T) {
	ctx := context.Background()
	on := true
	enabled := func(t *testing.T) *FileStore {
		t.Helper()
		s := NewFileStore(t.TempDir())
		if _, err := s.Apply(ctx, Change{Enabled: &on}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("removed", func(t *testing.T) {
		s := enabled(t)
		os.Remove(s.Path())
		_, err := s.Load(ctx)
		if !errors.Is(err, ErrStateMissing) || !strings.Contains(err.Error(), "gitgate maintenance reset") {
			t.Fatalf("Load = %v, want ErrStateMissing naming the reset", err)
		}
		if _, err := s.Apply(ctx, Change{Enabled: &on}); !errors.Is(err, ErrStateMissing) {
			t.Fatalf("Apply = %v, want ErrStateMissing", err)
		}
	})
	t.Run("dangling link", func(t *testing.T) {
		s := enabled(t)
		target := s.Path() + ".real"
		os.Rename(s.Path(), target)
		os.Symlink(target, s.Path())
		if st, err := s.Load(ctx); err != nil || !st.Enabled {
			t.Fatalf("through the link: %+v, %v", st, err)
		}
		os.Remove(target)
		if _, err := s.Load(ctx); !errors.Is(err, ErrStateMissing) || !strings.Contains(err.Error(), "symbolic link") {
			t.Fatalf("Load = %v, want ErrStateMissing for the link", err)
		}
	})
	t.Run("dangling link in a new data dir", func(t *testing.T) {
		s := NewFileStore(t.TempDir())
		os.Symlink(filepath.Join(t.TempDir(), "gone"), s.Path())
		if _, err := s.Load(ctx); !errors.Is(err, ErrStateMissing) {
			t.Fatalf("Load = %v, want ErrStateMissing", err)
		}
	})
	t.Run("new data dir", func(t *testing.T) {
		s := NewFileStore(t.TempDir())
		if st, err := s.Load(ctx); err != nil || st != (State{}) {
			t.Fatalf("Load = %+v, %v", st, err)
		}
		// A lock taken without a write (a change that failed) does not
		// mark the data dir.
		l, err := atomicfile.Acquire(s.lockPath())
		if err != nil {
			t.Fatal(err)
		}
		l.Release()
		if st, err := s.Load(ctx); err != nil || st != (State{}) {
			t.Fatalf("Load after a bare lock = %+v, %v", st, err)
		}
	})
}

// Reset writes a fresh state whatever the file holds, one version above
// the highest the data dir has held, even when the file is gone.
func TestFileStoreReset(t *testing.T) {
	ctx := context.Background()
	s := NewFileStore(t.TempDir())
	on := true
	for range 5 {
		if _, err := s.Apply(ctx, Change{Enabled: &on}); err != nil {
			t.Fatal(err)
		}
	}
	// A mirrored lower version (a Geo reset) does not lower the record.
	if _, err := s.Mirror(ctx, State{Version: 3}, true); err != nil {
		t.Fatal(err)
	}
	os.Remove(s.Path())
	st, err := s.Reset(ctx, Change{By: "cli:admin"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Enabled || st.Version != 6 || st.By != "cli:admin" || st.Since.IsZero() {
		t.Fatalf("after reset of a removed file: %+v, want disabled version 6", st)
	}
	if got, err := s.Load(ctx); err != nil || got != st {
		t.Fatalf("Load = %+v, %v; want %+v", got, err, st)
	}

	os.WriteFile(s.Path(), []byte("{"), 0o644) // corrupt
	msg := "still down"
	if st, err = s.Reset(ctx, Change{Enabled: &on, Message: &msg}); err != nil || !st.Enabled || st.Version != 7 || st.Message != msg {
		t.Fatalf("reset of a corrupt file to enabled: %+v, %v", st, err)
	}

	// Without the record (it was lost), the old file's version still
	// counts when it can be read.
	os.Remove(s.lockPath())
	if st, err = s.Reset(ctx, Change{}); err != nil || st.Version != 8 {
		t.Fatalf("reset without a record: %+v, %v", st, err)
	}
}

// A data dir written before the version record existed gets it from Init,
// and from then on a missing file is seen.
func TestFileStoreInitRecordsOldDataDirs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := NewFileStore(dir)
	if err := s.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx); err != nil {
		t.Fatalf("new data dir after Init: %v", err)
	}
	os.WriteFile(s.Path(), []byte(`{"enabled":true,"version":4}`), 0o644)
	os.WriteFile(s.lockPath(), nil, 0o600) // an old gate's empty lock file
	if err := s.Init(ctx); err != nil {
		t.Fatal(err)
	}
	os.Remove(s.Path())
	if _, err := s.Load(ctx); !errors.Is(err, ErrStateMissing) {
		t.Fatalf("Load = %v, want ErrStateMissing", err)
	}
	if st, err := s.Reset(ctx, Change{}); err != nil || st.Version != 5 {
		t.Fatalf("Reset = %+v, %v; want version 5", st, err)
	}
}

// A state file that would block on read (a FIFO) is an error at once, for
// readers and writers, and a held lock makes a change fail at its deadline.
func TestFileStoreNeverHangs(t *testing.T) {
	ctx := context.Background()
	s := NewFileStore(t.TempDir())
	if err := syscall.Mkfifo(s.Path(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx); !errors.Is(err, atomicfile.ErrNotRegular) {
		t.Fatalf("Load(FIFO) = %v, want ErrNotRegular", err)
	}
	on := true
	if _, err := s.Apply(ctx, Change{Enabled: &on}); !errors.Is(err, atomicfile.ErrNotRegular) {
		t.Fatalf("Apply(FIFO) = %v, want ErrNotRegular", err)
	}
	if st, err := s.Reset(ctx, Change{}); err != nil || st.Version != 1 {
		t.Fatalf("Reset over a FIFO = %+v, %v", st, err)
	}

	held, err := atomicfile.Acquire(s.lockPath())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	busy := 0
	s.LockBusy = func() { busy++ }
	tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := s.Apply(tctx, Change{Enabled: &on}); !errors.Is(err, atomicfile.ErrTimeout) || busy != 1 {
		t.Fatalf("Apply on a held lock = %v (busy %d), want ErrTimeout", err, busy)
	}
}
