package sshd_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/sshd"
)

// openUploadPack starts git-upload-pack on repo in a new session of client
// and reads its ref advertisement, so that git is known to be running,
// waiting for the client's wants. The caller owns the session.
func openUploadPack(t *testing.T, client *gossh.Client, repo string) *gossh.Session {
	t.Helper()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	stdout, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.StdinPipe(); err != nil { // kept open: git waits for it
		t.Fatal(err)
	}
	if err := sess.Start("git-upload-pack '" + repo + "'"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stdout)
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			t.Fatalf("reading the advertisement: %v", err)
		}
		if string(hdr[:]) == "0000" {
			return sess
		}
		var n int
		fmt.Sscanf(string(hdr[:]), "%04x", &n)
		if _, err := io.CopyN(io.Discard, r, int64(n-4)); err != nil {
			t.Fatalf("reading the advertisement: %v", err)
		}
	}
}

// runSession runs command in a new session of client, with no input, and
// returns its stderr and exit status.
func runSession(t *testing.T, client *gossh.Client, command string) (string, int) {
	t.Helper()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var stderr bytes.Buffer
	sess.Stderr = &stderr
	sess.Stdin = strings.NewReader("0000")
	err = sess.Run(command)
	status := 0
	if exit, ok := err.(*gossh.ExitError); ok {
		status = exit.ExitStatus()
	} else if err != nil {
		t.Fatalf("%s: %v", command, err)
	}
	return stderr.String(), status
}

// One user at their cap of git processes is refused with the busy message
// at once, while another user is still served.
func TestPerUserGitCapDoesNotStarveOthers(t *testing.T) {
	l := gitgate.NewLimiter(gitgate.Limits{Global: 10, PerRepo: 10, PerUser: 2, QueueTimeout: 50 * time.Millisecond})
	g := startGate(t, func(c *sshd.Config) { c.Limiter = l })
	g.createRepo("repo", map[string][]byte{"a": []byte("a")})
	alice := g.dial(g.addUser("alice", gitgate.PermissionRead))
	bob := g.addUser("bob", gitgate.PermissionRead)

	openUploadPack(t, alice, "repo.git")
	openUploadPack(t, alice, "repo.git")
	stderr, status := runSession(t, alice, "git-upload-pack 'repo.git'")
	if want := "remote: ERROR: " + gitgate.BusyMessage + "\n"; stderr != want || status != 1 {
		t.Fatalf("alice over her cap: status %d, stderr %q; want 1, %q", status, stderr, want)
	}
	res := ok(t, g.git(&bob, t.TempDir(), "ls-remote", g.url("repo.git")))
	if !strings.Contains(res.stdout, "refs/heads/main") {
		t.Fatalf("bob's ls-remote: %q", res.stdout)
	}
	// With the real client, the message is shown as the server's.
	aliceKey := g.addUser("alice2", gitgate.PermissionRead)
	g.keys.add(aliceKey.pub, &gitgate.User{Name: "alice"})
	r := run(t, g.git(&aliceKey, t.TempDir(), "ls-remote", g.url("repo.git")))
	if r.status == 0 || !strings.Contains(r.stderr, "remote: ERROR: "+gitgate.BusyMessage) {
		t.Fatalf("alice's ls-remote over her cap: %d\n%s", r.status, r.stderr)
	}
}

// One user cannot hold every session of the server.
func TestPerUserSessionCap(t *testing.T) {
	g := startGate(t, func(c *sshd.Config) { c.MaxSessionsPerUser = 2; c.MaxSessions = 3 })
	g.createRepo("repo", map[string][]byte{"a": []byte("a")})
	aliceKey := g.addUser("alice", gitgate.PermissionRead)
	for i := 0; i < 2; i++ {
		if _, err := g.dial(aliceKey).NewSession(); err != nil { // sessions that never run anything
			t.Fatal(err)
		}
	}
	_, err := g.dial(aliceKey).NewSession()
	if err == nil || !strings.Contains(err.Error(), `resource shortage ("too many sessions for this user (limit 2); try again later")`) {
		t.Fatalf("alice's third session: %v", err)
	}
	bob := g.addUser("bob", gitgate.PermissionRead)
	ok(t, g.git(&bob, t.TempDir(), "ls-remote", g.url("repo.git")))
}

// A panic while serving a session ends that session with an error line
// and exit status 1; it is logged with its stack and the server goes on.
func TestPanicInSessionIsRecovered(t *testing.T) {
	g := startGate(t, sshd.WithServeHook(func(command string) {
		if strings.Contains(command, "boom") {
			panic("injected failure")
		}
	}))
	g.createRepo("repo", map[string][]byte{"a": []byte("a")})
	alice := g.addUser("alice", gitgate.PermissionRead)
	client := g.dial(alice)
	stderr, status := runSession(t, client, "git-upload-pack 'boom.git'")
	want := "remote: ERROR: Internal server error. It has been logged; try again in a moment.\n"
	if stderr != want || status != 1 {
		t.Fatalf("status %d, stderr %q; want 1, %q", status, stderr, want)
	}
	logs := g.logs.String()
	if !strings.Contains(logs, "panic in ssh session") || !strings.Contains(logs, "injected failure") || !strings.Contains(logs, "runtime/debug.Stack") {
		t.Errorf("panic not logged with its stack:\n%s", logs)
	}
	// The same connection and new ones are still served.
	if stderr, status := runSession(t, client, "git-upload-pack 'repo.git'"); status != 0 {
		t.Fatalf("after the panic: %d %q", status, stderr)
	}
	ok(t, g.git(&alice, t.TempDir(), "ls-remote", g.url("repo.git")))
}

// The idle timeout covers a running git whose client sends nothing: the
// connection is closed and git ends.
func TestIdleTimeoutEndsRunningGit(t *testing.T) {
	g := startGate(t, func(c *sshd.Config) { c.IdleTimeout = 300 * time.Millisecond })
	g.createRepo("repo", map[string][]byte{"a": []byte("a")})
	repoPath := filepath.Join(g.root, "repo.git")
	client := g.dial(g.addUser("alice", gitgate.PermissionRead))
	openUploadPack(t, client, "repo.git")
	waitClosed(t, client)
	if !waitFor(func() bool { return len(gitProcesses(t, repoPath)) == 0 }) {
		t.Fatalf("git left after the idle timeout: %v", gitProcesses(t, repoPath))
	}
}
