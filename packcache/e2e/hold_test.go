package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Releasing a hold that no generation took must return: a test that fails
// before its generation starts releases its hold in its cleanup, and a
// release that raced the wrapper's look at the hold came before it. (It
// used to open the FIFO for writing, which waits for a reader for ever:
// go test's 10-minute panic instead of the test's own failure.)
func TestHoldReleaseWithoutGeneration(t *testing.T) {
	t.Parallel()
	g := &gate{data: filepath.Join(t.TempDir(), "data")}
	release := hold(t, g)
	done := make(chan struct{})
	go func() {
		defer close(done)
		release()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("release of a hold no generation took did not return within 10 s")
		// Let the old release go (it waits for a reader of its FIFO).
		for _, name := range []string{"hold", "hold.released"} {
			if f, err := os.OpenFile(filepath.Join(filepath.Dir(g.data), name), os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
				defer f.Close()
			}
		}
		<-done
	}
}

// The holding --git keeps a pack-objects from starting while the hold is
// on, says so, and lets it go once released.
func TestHoldingGitWaitsForRelease(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	g := &gate{data: filepath.Join(dir, "data")}
	release := hold(t, g)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Not a pack-objects, but an argument that names it, as the wrapper
	// looks only at its arguments.
	cmd := exec.CommandContext(ctx, holdingGit(t, dir), "-c", "gitgate.test=pack-objects", "version")
	cmd.Env = append(os.Environ(), "PACK_HOLD="+g.holdFile())
	var out strings.Builder
	cmd.Stdout = &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var err error
	go func() { err = cmd.Wait(); close(exited) }()
	defer func() { cancel(); <-exited }() // the process is reaped whatever happens
	waitHeld(t, g)
	select {
	case <-exited:
		t.Fatalf("the held git exited before the release: %v", err)
	default:
	}
	release()
	<-exited
	if err != nil || !strings.HasPrefix(out.String(), "git version ") {
		t.Fatalf("released git: %v, printed %q", err, out.String())
	}
}
