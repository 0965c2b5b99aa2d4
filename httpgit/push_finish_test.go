package httpgit_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/gittest"
)

// slowPostReceive installs a post-receive hook that talks to the client
// (side band), waits until the file go exists (bounded), talks again, and
// then writes the file marker. It returns the paths of go and marker.
func slowPostReceive(t *testing.T, bare string) (goFile, marker string) {
	t.Helper()
	dir := t.TempDir()
	goFile, marker = filepath.Join(dir, "go"), filepath.Join(dir, "marker")
	script := fmt.Sprintf(`#!/bin/sh
cat >/dev/null
echo "post-receive: working" >&2
i=0
while [ ! -e '%s' ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done
echo "post-receive: still working" >&2
echo done > '%s'
`, goFile, marker)
	if err := os.WriteFile(filepath.Join(bare, "hooks", "post-receive"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return goFile, marker
}

// pushRequest returns the body of a push of a new commit on main, as git
// sends it with report-status and side-band-64k, and the new commit.
func pushRequest(t *testing.T, env []string, bare string) (body []byte, newCommit string) {
	t.Helper()
	old := gittest.MustGit(t, env, bare, "rev-parse", "main")
	work := t.TempDir()
	gittest.MustGit(t, env, work, "clone", "-q", bare, ".")
	gittest.MustGit(t, env, work, "commit", "-q", "--allow-empty", "-m", "pushed by a client that hangs up")
	newCommit = gittest.MustGit(t, env, work, "rev-parse", "HEAD")
	pack := exec.Command("git", "pack-objects", "--stdout", "--revs", "-q")
	pack.Dir, pack.Env = work, env
	pack.Stdin = strings.NewReader(newCommit + "\n^" + old + "\n")
	data, err := pack.Output()
	if err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("%s %s refs/heads/main\x00report-status side-band-64k\n", old, newCommit)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%04x%s0000", len(line)+4, line)
	b.Write(data)
	return b.Bytes(), newCommit
}

// A client that hangs up right after reading the push's report (go-git
// does) does not cut the push short: git finishes, its post-receive hook
// included, and the push counts as a success.
func TestPushFinishesAfterClientHangsUp(t *testing.T) {
	rec := &gittest.Recorder{}
	g := startGate(t, gateOptions{anonymousPush: true, tracker: gitgate.NewTracker(rec)})
	bare, _ := gittest.BareRepoWithCommit(t, g.env, g.root, "repo")
	goFile, marker := slowPostReceive(t, bare)
	body, newCommit := pushRequest(t, g.env, bare)

	conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /repo.git/git-receive-pack HTTP/1.1\r\nHost: gate\r\n"+
		"Content-Type: application/x-git-receive-pack-request\r\nContent-Length: %d\r\n\r\n", len(body))
	if _, err := conn.Write(body); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(time.Minute)) // a safety bound, not a timing check
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Read up to the report, then hang up.
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(got, []byte("ok refs/heads/main")) {
		n, err := resp.Body.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("reading the answer: %v; got %q", err, got)
		}
	}
	conn.Close()

	// Give the gate time to see the hang-up (it used to kill git then);
	// the push must not end before the hook is let go.
	for i := 0; i < 50 && len(rec.Finished()) == 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3000 && len(rec.Finished()) == 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if got := rec.Finished(); len(got) != 1 || got[0] != gitgate.OutcomeOK {
		t.Errorf("outcomes %v, want one %q", got, gitgate.OutcomeOK)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("post-receive did not finish: %v", err)
	}
	if head := gittest.MustGit(t, g.env, bare, "rev-parse", "main"); head != newCommit {
		t.Errorf("main is %s, want %s", head, newCommit)
	}
}
