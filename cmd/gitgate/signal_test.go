package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/atomicfile"
)

// safetyBound ends a test that would otherwise hang on the old code; it is
// not a timing check.
const safetyBound = 30 * time.Second

// selfAsGitgate returns a path that runs this test binary as the gitgate
// command (TestMain dispatches on the program name), so that a test can
// start a real gitgate process and signal it.
func selfAsGitgate(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "gitgate")
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	return link
}

// startGitgate starts a gitgate process whose stderr the caller reads, and
// makes sure it is gone when the test ends.
func startGitgate(t *testing.T, args ...string) (*exec.Cmd, *bufio.Reader, <-chan error) {
	t.Helper()
	cmd := exec.Command(selfAsGitgate(t), args...)
	cmd.Env = append(os.Environ(), "GITGATE_DATA_DIR=") // only the flags count
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	exited := make(chan struct{})
	r := bufio.NewReader(stderr)
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	go func() {
		done <- cmd.Wait()
		close(exited)
	}()
	return cmd, r, done
}

// awaitLine reads r until a line contains want, or fails the test at the
// safety bound; it returns what it read.
func awaitLine(t *testing.T, r *bufio.Reader, want string) string {
	t.Helper()
	found := make(chan string, 1)
	go func() {
		var seen bytes.Buffer
		for {
			line, err := r.ReadString('\n')
			seen.WriteString(line)
			if strings.Contains(line, want) || err != nil {
				found <- seen.String()
				return
			}
		}
	}()
	select {
	case s := <-found:
		if !strings.Contains(s, want) {
			t.Fatalf("stderr ended without %q:\n%s", want, s)
		}
		return s
	case <-time.After(safetyBound):
		t.Fatalf("no %q on stderr", want)
	}
	return ""
}

// awaitExit waits for the process to end and returns its exit code.
func awaitExit(t *testing.T, done <-chan error) int {
	t.Helper()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if err == nil {
			return 0
		}
		if !errors.As(err, &exit) {
			t.Fatal(err)
		}
		return exit.ExitCode()
	case <-time.After(safetyBound):
		t.Fatal("the process ignored SIGTERM")
	}
	return 0
}

// A CLI waiting for the state lock held by another process says so, and
// SIGTERM ends it with a clear error.
func TestCLIEndsOnSIGTERMWhileWaitingForTheLock(t *testing.T) {
	dir := t.TempDir()
	held, err := atomicfile.Acquire(filepath.Join(dir, gitgate.StateFileName+".lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()

	cmd, stderr, done := startGitgate(t, "--data-dir", dir, "maintenance", "enable")
	awaitLine(t, stderr, "another process holds the maintenance state lock")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(stderr)
	if code := awaitExit(t, done); code != 1 {
		t.Fatalf("exit status %d, want 1; stderr: %s", code, rest)
	}
	if !strings.Contains(string(rest), "gitgate: interrupted by a signal: lock maintenance state:") {
		t.Fatalf("stderr: %s", rest)
	}
	if _, err := os.Lstat(filepath.Join(dir, gitgate.StateFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the state was written after all: %v", err)
	}
}

// SIGTERM ends the pre-receive hook while the repository's own hook runs:
// the push is refused with a reason, and the own hook does not outlive it.
func TestHookEndsOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "own-hook.pid")
	own := filepath.Join(dir, "own-hook")
	script := "#!/bin/sh\necho $$ > '" + pidFile + ".tmp'\nmv '" + pidFile + ".tmp' '" + pidFile + "'\nexec sleep 600\n"
	if err := os.WriteFile(own, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd, stderr, done := startGitgate(t, "hook", "pre-receive", "--data-dir", dir, "--chained", own)
	var pid int
	for i := 0; pid == 0; i++ { // bounded: 600 tries of 50ms
		if i == 600 {
			t.Fatal("the own hook never started")
		}
		if data, err := os.ReadFile(pidFile); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	out := awaitLine(t, stderr, "did not finish")
	if code := awaitExit(t, done); code != 1 {
		t.Fatalf("exit status %d, want 1; stderr: %s", code, out)
	}
	if !strings.Contains(out, "Git push is not allowed because the pre-receive check did not finish: the check was interrupted.") {
		t.Fatalf("stderr: %s", out)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("the own hook outlived the hook: kill(%d, 0) = %v", pid, err)
	}
}

// processGone reports whether pid has exited (gone, or a zombie no one has
// reaped yet).
func processGone(pid int) bool {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses: "pid (comm) S ...".
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// readPID waits for a PID file written by a test script, bounded.
func readPID(t *testing.T, path string) int {
	t.Helper()
	for i := 0; i < 600; i++ { // bounded: 600 tries of 50ms
		if data, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
				return pid
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never appeared", filepath.Base(path))
	return 0
}

// The hook does not outlive the git process that runs it: when its parent
// dies, the hook ends, and so does the repository's own hook it runs.
func TestHookDiesWithItsParent(t *testing.T) {
	dir := t.TempDir()
	ownPID, hookPID := filepath.Join(dir, "own.pid"), filepath.Join(dir, "hook.pid")
	own := filepath.Join(dir, "own-hook")
	script := "#!/bin/sh\necho $$ > '" + ownPID + ".tmp'\nmv '" + ownPID + ".tmp' '" + ownPID + "'\nexec sleep 600\n"
	if err := os.WriteFile(own, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// sh stands in for git: it starts the hook, then waits in sleep.
	parent := exec.Command("sh", "-c",
		`"$0" hook pre-receive --data-dir "$1" --chained "$2" </dev/null 2>/dev/null & echo $! > "$3"; exec sleep 600`,
		selfAsGitgate(t), dir, own, hookPID)
	parent.Env = append(os.Environ(), "GITGATE_DATA_DIR=")
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	hook, ownHook := readPID(t, hookPID), readPID(t, ownPID)
	t.Cleanup(func() {
		syscall.Kill(ownHook, syscall.SIGKILL)
		syscall.Kill(hook, syscall.SIGKILL)
	})
	parent.Process.Kill()
	parent.Wait()
	for i := 0; !processGone(hook) || !processGone(ownHook); i++ { // bounded: 600 tries of 50ms
		if i == 600 {
			t.Fatalf("the hook (gone: %v) or its own hook (gone: %v) outlived the parent", processGone(hook), processGone(ownHook))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
