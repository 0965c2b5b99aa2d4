package gittest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingTB is a testing.TB that keeps the failures reported to it
// instead of failing the test.
type recordingTB struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recordingTB) Helper() {}

// A git command that never ends is killed at its deadline, with the helpers
// it started, and fails the test with its command line, what it printed and
// "timed out", instead of holding the test until go test's own timeout.
func TestGitDeadline(t *testing.T) {
	env := Env(t)
	// A unique duration names the helper, so that it can be found in /proc.
	nap := fmt.Sprintf("%d.%03d", 500+os.Getpid()%400, time.Now().Nanosecond()/1e6)
	rec := &recordingTB{TB: t}
	args := []string{"-c", "alias.hang=!echo about to hang; echo on stderr >&2; exec sleep " + nap, "hang"}
	r := run(rec, 2*time.Second, env, t.TempDir(), args...)
	if r.Err == nil || !strings.Contains(r.Err.Error(), "timed out") {
		t.Fatalf("Err = %v, want a time-out", r.Err)
	}
	if len(rec.errors) != 1 {
		t.Fatalf("failures reported: %q, want one", rec.errors)
	}
	msg := rec.errors[0]
	for _, want := range []string{"git -c alias.hang=", "timed out after 2s", "about to hang", "on stderr"} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure lacks %q:\n%s", want, msg)
		}
	}
	if r.Stdout != "about to hang\n" || r.Stderr != "on stderr\n" {
		t.Errorf("printed: stdout %q, stderr %q", r.Stdout, r.Stderr)
	}
	// sleep was git's grandchild (git → sh → sleep): the process group went.
	if left := processesWith("sleep " + nap); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// A command that ends in time reports nothing.
func TestGitInTime(t *testing.T) {
	rec := &recordingTB{TB: t}
	r := run(rec, time.Minute, Env(t), t.TempDir(), "version")
	if r.Err != nil || !strings.HasPrefix(r.Stdout, "git version ") || len(rec.errors) != 0 {
		t.Fatalf("git version: %+v, failures %q", r, rec.errors)
	}
}

// processesWith lists the live processes whose command line contains s.
func processesWith(s string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		line := strings.ReplaceAll(string(cmdline), "\x00", " ")
		if strings.Contains(line, s) {
			found = append(found, e.Name()+": "+line)
		}
	}
	return found
}
