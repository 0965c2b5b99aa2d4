package gitgate_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// A push outlives its client's context, but not PushFinishTimeout after it,
// nor the server's hard stop: git is ended and reaped either way.
func TestDetachedPushIsBounded(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	root := t.TempDir()
	res, err := gitgate.NewResolver(root)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := res.Create(context.Background(), "repo")
	if err != nil {
		t.Fatal(err)
	}
	runner, err := gitgate.NewRunner("git", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	runner.PushFinishTimeout = 50 * time.Millisecond

	run := func(stop context.Context, endClient, endStop func()) error {
		t.Helper()
		// git waits for the push on a pipe that never ends: only the
		// runner can end it.
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pr.Close()
		defer pw.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			done <- runner.Run(ctx, gitgate.Invocation{
				Op:   gitgate.Operation{Service: gitgate.ReceivePack, Repo: "repo"},
				Repo: repo, StatelessRPC: true,
				Stdin: pr, Stdout: io.Discard, Stderr: io.Discard, Stop: stop,
			})
		}()
		if endClient != nil {
			cancel()
		}
		if endStop != nil {
			endStop()
		}
		select {
		case err := <-done:
			return err
		case <-time.After(time.Minute): // a safety bound, not a timing check
			t.Fatal("git was never ended")
			return nil
		}
	}

	// The client is gone: git gets PushFinishTimeout, then is ended.
	err = run(context.Background(), func() {}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("client gone: %v, want the finish timeout", err)
	}

	// The server stops hard, client still there: git is ended at once.
	runner.PushFinishTimeout = time.Hour
	stop, hardStop := context.WithCancelCause(context.Background())
	errHard := errors.New("hard stop")
	err = run(stop, nil, func() { hardStop(errHard) })
	if !errors.Is(err, errHard) {
		t.Errorf("hard stop: %v", err)
	}
	if left := leftover(t, repo.Path); len(left) != 0 {
		t.Errorf("git processes left: %v", left)
	}
}

func leftover(t *testing.T, path string) []string {
	t.Helper()
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if cwd, _ := os.Readlink(filepath.Join(d, "cwd")); cwd == real {
			found = append(found, d)
		}
	}
	return found
}
