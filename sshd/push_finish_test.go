package sshd_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/gittest"
	"github.com/gitgate/gitgate/sshd"
)

// readAdvertisement reads pkt-lines up to the flush that ends the ref
// advertisement.
func readAdvertisement(t *testing.T, r *bufio.Reader) {
	t.Helper()
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			t.Fatalf("advertisement: %v", err)
		}
		n, err := strconv.ParseUint(string(hdr[:]), 16, 16)
		if err != nil {
			t.Fatalf("advertisement: bad pkt-line length %q", hdr)
		}
		if n == 0 {
			return
		}
		if _, err := io.CopyN(io.Discard, r, int64(n)-4); err != nil {
			t.Fatalf("advertisement: %v", err)
		}
	}
}

// A client that hangs up right after reading the push's report (go-git
// does) does not cut the push short: git finishes, its post-receive hook
// included, and the push counts as a success.
func TestPushFinishesAfterClientHangsUp(t *testing.T) {
	rec := &gittest.Recorder{}
	g := startGate(t, func(c *sshd.Config) { c.Tracker = gitgate.NewTracker(rec) })
	alice := g.addUser("alice", gitgate.PermissionWrite)
	old := g.createRepo("group/repo", map[string][]byte{"README": []byte("hello\n")})
	bare := filepath.Join(g.root, "group/repo.git")

	dir := t.TempDir()
	goFile, marker := filepath.Join(dir, "go"), filepath.Join(dir, "marker")
	hook := fmt.Sprintf(`#!/bin/sh
cat >/dev/null
echo "post-receive: working" >&2
i=0
while [ ! -e '%s' ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done
echo "post-receive: still working" >&2
echo done > '%s'
`, goFile, marker)
	if err := os.WriteFile(filepath.Join(bare, "hooks", "post-receive"), []byte(hook), 0o755); err != nil {
		t.Fatal(err)
	}

	work := filepath.Join(dir, "w")
	ok(t, g.git(nil, dir, "clone", "-q", bare, "w"))
	ok(t, g.git(nil, work, "commit", "-q", "--allow-empty", "-m", "pushed by a client that hangs up"))
	newCommit := strings.TrimSpace(ok(t, g.git(nil, work, "rev-parse", "HEAD")).stdout)
	pack := exec.Command("git", "pack-objects", "--stdout", "--revs", "-q")
	pack.Dir, pack.Env = work, g.env()
	pack.Stdin = strings.NewReader(newCommit + "\n^" + old + "\n")
	data, err := pack.Output()
	if err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("%s %s refs/heads/main\x00report-status side-band-64k\n", old, newCommit)
	var req bytes.Buffer
	fmt.Fprintf(&req, "%04x%s0000", len(line)+4, line)
	req.Write(data)

	client := g.dial(alice)
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdin, _ := sess.StdinPipe()
	stdoutPipe, _ := sess.StdoutPipe()
	stdout := bufio.NewReader(stdoutPipe)
	if err := sess.Start("git-receive-pack 'group/repo.git'"); err != nil {
		t.Fatal(err)
	}
	readAdvertisement(t, stdout)
	if _, err := stdin.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	// Read up to the report, then hang up.
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(got, []byte("ok refs/heads/main")) {
		n, err := stdout.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("reading the answer: %v; got %q", err, got)
		}
	}
	client.Close()

	// Give the gate time to see the hang-up (it used to kill git then);
	// the push must not end before the hook is let go.
	for i := 0; i < 50 && len(rec.Finished()) == 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !waitFor(func() bool { return len(rec.Finished()) > 0 }) {
		t.Fatal("the push never ended")
	}
	if got := rec.Finished(); len(got) != 1 || got[0] != gitgate.OutcomeOK {
		t.Errorf("outcomes %v, want one %q", got, gitgate.OutcomeOK)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("post-receive did not finish: %v", err)
	}
	if head := g.head("group/repo"); head != newCommit {
		t.Errorf("main is %s, want %s", head, newCommit)
	}
}
