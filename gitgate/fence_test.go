package gitgate_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	return cmd.Process.Pid
}

func TestWaitTxns(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), gitgate.TxnDirName)

	// No dir, no markers: nothing to wait for.
	if err := gitgate.WaitTxns(ctx, dir, time.Millisecond); err != nil {
		t.Fatalf("empty: %v", err)
	}

	// A marker of a dead process is stale: removed, not waited for.
	if _, err := gitgate.RegisterTxn(dir, deadPID(t), "stale"); err != nil {
		t.Fatal(err)
	}
	if err := gitgate.WaitTxns(ctx, dir, time.Hour); err != nil {
		t.Fatalf("stale marker: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("stale marker not removed: %v", entries)
	}

	// A live process's marker is waited for, and reported at the deadline.
	me := os.Getpid()
	if _, err := gitgate.RegisterTxn(dir, me, "group/project.git"); err != nil {
		t.Fatal(err)
	}
	err := gitgate.WaitTxns(ctx, dir, 10*time.Millisecond)
	var timeout *gitgate.FenceTimeoutError
	if !errors.As(err, &timeout) || len(timeout.Pending) != 1 || timeout.Pending[0].PID != me ||
		!strings.Contains(err.Error(), "group/project.git") {
		t.Fatalf("live marker: %v, want a timeout naming it", err)
	}

	// Released while waiting: the wait ends.
	released := make(chan error, 1)
	go func() {
		// Give the waiter a chance to scan first; either order must work.
		time.Sleep(5 * time.Millisecond)
		released <- gitgate.ReleaseTxn(dir, me)
	}()
	if err := gitgate.WaitTxns(ctx, dir, time.Hour); err != nil {
		t.Fatalf("released marker: %v", err)
	}
	if err := <-released; err != nil {
		t.Fatal(err)
	}

	// A context that ends stops the wait.
	if _, err := gitgate.RegisterTxn(dir, me, "x"); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := gitgate.WaitTxns(cctx, dir, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// ReleaseTxn removes one marker of the process per call, never another
// process's.
func TestReleaseTxnCounts(t *testing.T) {
	dir := t.TempDir()
	me, other := os.Getpid(), os.Getppid()
	for _, pid := range []int{me, me, other} {
		if _, err := gitgate.RegisterTxn(dir, pid, ""); err != nil {
			t.Fatal(err)
		}
	}
	for want := 2; want >= 1; want-- {
		if err := gitgate.ReleaseTxn(dir, me); err != nil {
			t.Fatal(err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != want {
			t.Fatalf("%d markers, want %d", len(entries), want)
		}
	}
	if err := gitgate.ReleaseTxn(dir, me); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("other process's marker gone: %v", entries)
	}
}

// Enabling through the fenced store waits for transactions in flight;
// disabling and message changes do not.
func TestFencedStoreWaitsOnEnable(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	fs := gitgate.NewFencedStore(dataDir, 20*time.Millisecond)
	if _, err := gitgate.RegisterTxn(filepath.Join(dataDir, gitgate.TxnDirName), os.Getpid(), "push"); err != nil {
		t.Fatal(err)
	}
	on, off := true, false
	st, err := fs.Apply(ctx, gitgate.Change{Enabled: &on})
	var timeout *gitgate.FenceTimeoutError
	if !errors.As(err, &timeout) || !st.Enabled {
		t.Fatalf("enable: %+v, %v; want enabled with a timeout", st, err)
	}
	msg := "later"
	if _, err := fs.Apply(ctx, gitgate.Change{Message: &msg}); err != nil {
		t.Fatalf("message change waited: %v", err)
	}
	if st, err := fs.Apply(ctx, gitgate.Change{Enabled: &off}); err != nil || st.Enabled {
		t.Fatalf("disable: %+v, %v", st, err)
	}
	// A wait cut short by its context: the state changed all the same.
	fs.Timeout = time.Hour
	cctx, cancel := context.WithCancel(ctx)
	written := 0
	fs.Written = func() { written++; cancel() } // the caller gives up after the write
	if st, err := fs.Apply(cctx, gitgate.Change{Enabled: &on}); !errors.Is(err, gitgate.ErrFenceIncomplete) ||
		!errors.Is(err, context.Canceled) || !st.Enabled {
		t.Fatalf("enable cut short: %+v, %v", st, err)
	}
	if !errors.Is(timeout, gitgate.ErrFenceIncomplete) {
		t.Error("a fence timeout does not match ErrFenceIncomplete")
	}
	if err := gitgate.ReleaseTxn(filepath.Join(dataDir, gitgate.TxnDirName), os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if st, err := fs.Apply(ctx, gitgate.Change{Enabled: &on}); err != nil || !st.Enabled || written != 2 {
		t.Fatalf("enable with nothing in flight: %+v, %v, written %d times", st, err, written)
	}
}
