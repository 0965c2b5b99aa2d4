// Package gittest runs the real git client in tests, isolated from the
// machine's and the user's configuration.
package gittest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Env returns an environment for git that ignores system and user config,
// never prompts, and has a fixed identity.
func Env(t testing.TB) []string {
	t.Helper()
	home := t.TempDir()
	cfg := "[init]\n\tdefaultBranch = main\n[user]\n\tname = Test Author\n\temail = author@example.com\n"
	if err := os.WriteFile(filepath.Join(home, ".gitconfig"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + home, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0", "LC_ALL=C"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "TMPDIR=") {
			env = append(env, kv)
		}
	}
	return env
}

// Result is a finished git command.
type Result struct {
	Stdout, Stderr string
	Err            error
}

// Timeout bounds every git command that [Git] and [MustGit] run: far
// longer than any test's git needs, far shorter than go test's own
// timeout, so that a hung git names itself.
const Timeout = 5 * time.Minute

// Git runs git with args in dir and returns what it printed; it does not
// fail the test when git fails. A git that runs longer than [Timeout] is
// killed with its process group (its helpers: ssh, remote-http,
// pack-objects) and fails the test with its command line, what it printed
// so far and "timed out"; its Result's Err says so too. Git may be called
// from other goroutines than the test's.
func Git(t testing.TB, env []string, dir string, args ...string) Result {
	t.Helper()
	return run(t, Timeout, env, dir, args...)
}

// run is [Git] with a deadline of timeout.
func run(t testing.TB, timeout time.Duration, env []string, dir string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir, cmd.Env = dir, env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// Its own session: its own process group, so that the helpers git
	// started go with it, and no terminal to prompt on.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A helper that escaped the group must not hold the output pipes open
	// (Run waits for the copies into out and errb, so they may be read).
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String(), Err: err}
	if err != nil && ctx.Err() != nil { // not a git that ended just in time
		r.Err = fmt.Errorf("timed out after %s: %w", timeout, err)
		t.Errorf("git %s (in %s): timed out after %s, killed\nstdout so far:\n%s\nstderr so far:\n%s",
			strings.Join(args, " "), dir, timeout, r.Stdout, r.Stderr)
	}
	return r
}

// MustGit runs git and fails the test if it fails. It returns stdout,
// trimmed.
func MustGit(t testing.TB, env []string, dir string, args ...string) string {
	t.Helper()
	r := Git(t, env, dir, args...)
	if r.Err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), r.Err, r.Stderr)
	}
	return strings.TrimSpace(r.Stdout)
}

// BareRepoWithCommit creates root/name.git holding one commit on main with
// a README, and returns its path and the commit id.
func BareRepoWithCommit(t testing.TB, env []string, root, name string) (path, commit string) {
	t.Helper()
	path = filepath.Join(root, name+".git")
	MustGit(t, env, root, "init", "-q", "--bare", path)
	work := t.TempDir()
	MustGit(t, env, work, "init", "-q")
	if err := os.WriteFile(filepath.Join(work, "README.md"), []byte("# "+name+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	MustGit(t, env, work, "add", "README.md")
	MustGit(t, env, work, "commit", "-q", "-m", "initial")
	MustGit(t, env, work, "push", "-q", path, "main")
	return path, MustGit(t, env, work, "rev-parse", "HEAD")
}

// LeftoverGit lists the git processes that a server in this test process
// may have left behind: children of this process named git (running or
// zombie, i.e. not reaped), and any process whose command line mentions path
// (git's own helpers, such as pack-objects, started for that repository).
func LeftoverGit(path string) []string {
	self := strconv.Itoa(os.Getpid())
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(stat)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		comm := s[open+1 : close]
		fields := strings.Fields(s[close+1:])
		if len(fields) >= 2 && fields[1] == self && strings.HasPrefix(comm, "git") {
			found = append(found, e.Name()+" "+comm+" state "+fields[0])
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if path != "" && strings.HasPrefix(comm, "git") && strings.Contains(string(cmdline), path) {
			found = append(found, e.Name()+" "+comm)
		}
	}
	return found
}
