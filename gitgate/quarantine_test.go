package gitgate

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// killedPush pushes a commit into the bare repository at bare with a
// pre-receive hook that kills git receive-pack with SIGKILL, as an OOM
// killer or a crash would: git leaves the push's quarantine behind. It
// returns the quarantine's path.
func killedPush(t *testing.T, bare string) string {
	t.Helper()
	hook := filepath.Join(bare, "hooks", "pre-receive")
	os.MkdirAll(filepath.Dir(hook), 0o755)
	if err := os.WriteFile(hook, []byte("#!/bin/sh\nkill -9 $PPID\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(hook)
	before, _ := filepath.Glob(filepath.Join(bare, "objects", quarantinePrefix+"*"))
	work := t.TempDir()
	env := append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+work, "GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@example.com",
		"GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@example.com")
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"commit", "-q", "--allow-empty", "-m", "doomed"},
		{"push", "-q", bare, "main"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = work, env
		out, err := cmd.CombinedOutput()
		if err != nil && args[0] != "push" {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	after, _ := filepath.Glob(filepath.Join(bare, "objects", quarantinePrefix+"*"))
	if len(after) != len(before)+1 {
		t.Fatalf("the killed push left %d quarantines, want 1", len(after)-len(before))
	}
	for _, d := range after {
		if !slices.Contains(before, d) {
			return d
		}
	}
	return ""
}

// setModTimes sets the modification time of path and everything in it.
func setModTimes(t *testing.T, path string, when time.Time) {
	t.Helper()
	filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			err = os.Chtimes(p, when, when)
		}
		if err != nil {
			t.Fatal(err)
		}
		return nil
	})
}

func TestQuarantineCleanerRemovesOnlyStaleQuarantines(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	r, _ := NewResolver(t.TempDir())
	ctx := context.Background()
	repo, err := r.Create(ctx, "group/repo")
	if err != nil {
		t.Fatal(err)
	}
	stale := killedPush(t, repo.Path)
	running := killedPush(t, repo.Path)
	// A push still running: its quarantine was made long ago, but git
	// wrote into it a moment ago.
	old := time.Now().Add(-48 * time.Hour)
	setModTimes(t, stale, old)
	setModTimes(t, running, old)
	var object string // an object git received: a small push is unpacked
	filepath.Walk(running, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && object == "" {
			object = p
		}
		return nil
	})
	if object == "" {
		t.Fatalf("no object in the quarantine %s", running)
	}
	now := time.Now()
	os.Chtimes(object, now, now)
	// A symlink with a quarantine's name is not git's: neither it nor what
	// it points to is touched.
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "keep"), nil, 0o644)
	setModTimes(t, outside, old)
	link := filepath.Join(repo.Path, "objects", quarantinePrefix+"link")
	os.Symlink(outside, link)

	c := &QuarantineCleaner{Resolver: r, Log: slog.New(slog.DiscardHandler)}
	n, err := c.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 removed", n, err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale quarantine still there: %v", err)
	}
	for _, keep := range []string{running, link, filepath.Join(outside, "keep")} {
		if _, err := os.Lstat(keep); err != nil {
			t.Errorf("%s was removed: %v", keep, err)
		}
	}
	// The repository is intact.
	cmd := exec.Command("git", "fsck", "--no-progress")
	cmd.Dir = repo.Path
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("git fsck after the sweep: %v\n%s", err, out)
	}

	// A fresh quarantine stays for the whole MaxAge, then goes.
	fresh := killedPush(t, repo.Path)
	if n, err := c.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("Sweep of a fresh quarantine = %d, %v; want 0", n, err)
	}
	c.Now = func() time.Time { return time.Now().Add(DefaultQuarantineMaxAge + time.Minute) }
	if n, err := c.Sweep(ctx); err != nil || n != 2 {
		t.Fatalf("Sweep a day later = %d, %v; want 2 (the fresh and the once running)", n, err)
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("day-old quarantine still there: %v", err)
	}
}

// Run sweeps at once, and returns when its context ends.
func TestQuarantineCleanerRun(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	r, _ := NewResolver(t.TempDir())
	repo, err := r.Create(context.Background(), "repo")
	if err != nil {
		t.Fatal(err)
	}
	q := killedPush(t, repo.Path)
	setModTimes(t, q, time.Now().Add(-25*time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	c := &QuarantineCleaner{Resolver: r, Log: slog.New(slog.DiscardHandler)}
	go func() { done <- c.Run(ctx) }()
	gone := false
	for range 500 {
		if _, err := os.Stat(q); os.IsNotExist(err) {
			gone = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if !gone {
		t.Error("Run did not remove the stale quarantine")
	}
}
