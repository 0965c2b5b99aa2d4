package sitetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/gittest"
)

// pacedPush is a push over HTTP whose pack the test sends in two halves,
// so that it stays in flight on its gate until finish.
type pacedPush struct {
	old, new string
	rest     []byte
	feed     *io.PipeWriter
	respc    chan string
}

func startPacedPush(t *testing.T, s *site, g *gate) *pacedPush {
	t.Helper()
	repo := filepath.Join(s.repos, "proj.git")
	p := &pacedPush{old: gittest.MustGit(t, s.env, repo, "rev-parse", "main"), respc: make(chan string, 1)}
	work := t.TempDir()
	gittest.MustGit(t, s.env, work, "clone", "-q", repo, ".")
	gittest.MustGit(t, s.env, work, "commit", "-q", "--allow-empty", "-m", "paced push")
	p.new = gittest.MustGit(t, s.env, work, "rev-parse", "HEAD")
	packCmd := exec.Command("git", "pack-objects", "--stdout", "--revs", "-q")
	packCmd.Dir, packCmd.Env = work, s.env
	packCmd.Stdin = strings.NewReader(p.new + "\n^" + p.old + "\n")
	pack, err := packCmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	cmdLine := fmt.Sprintf("%s %s refs/heads/main\x00report-status side-band-64k\n", p.old, p.new)
	var head bytes.Buffer
	fmt.Fprintf(&head, "%04x%s0000", len(cmdLine)+4, cmdLine)
	head.Write(pack[:len(pack)/2])
	p.rest = pack[len(pack)/2:]

	body, feed := io.Pipe()
	p.feed = feed
	req, _ := http.NewRequestWithContext(context.WithoutCancel(t.Context()), "POST", g.http+"/proj.git/git-receive-pack", body)
	req.Header.Set("Content-Type", "application/x-git-receive-pack-request")
	req.SetBasicAuth("alice", s.token)
	go func() {
		resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			p.respc <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		p.respc <- string(out)
	}()
	if _, err := feed.Write(head.Bytes()); err != nil {
		t.Fatal(err)
	}
	return p
}

// finish sends the rest of the pack and returns the gate's answer.
func (p *pacedPush) finish() string {
	p.feed.Write(p.rest)
	p.feed.Close()
	return <-p.respc
}

// "maintenance enable --wait" on one gate waits for a push running through
// another; "maintenance status" lists it with its gate; the push, already
// past the gate's check, is refused by the hook, which reads the state from
// the database. A gate killed with a push in flight leaves an entry that
// expires, so --wait does not block forever.
func TestSiteDrain(t *testing.T) {
	s := newSite(t, "--database-heartbeat", "100ms")
	c := s.gates[2]
	admin := t.TempDir()
	push := startPacedPush(t, s, c)
	bounded(t, "the push on C in the site's status", func() bool {
		out, _, _ := cli(t, s.db, admin, "maintenance", "status")
		return strings.Contains(out, "site in flight:   1 push(es)")
	})
	out := mustCLI(t, s.db, admin, "maintenance", "status")
	if !strings.Contains(out, "push to proj by alice over http on gate C, running since ") {
		t.Errorf("status:\n%s", out)
	}
	// Through another gate's API, too: a gate on the database answers for
	// the whole site.
	out = mustCLI(t, s.db, admin, "maintenance", "status", "--url", s.gates[0].http, "--token", s.token)
	if !strings.Contains(out, "site in flight:   1 push(es) on the site's gates\n  push to proj by alice over http on gate C, running since ") {
		t.Errorf("status --url of gate A with a push on C:\n%s", out)
	}
	stdout, stderr, code := cli(t, s.db, s.gates[0].dataDir, "maintenance", "enable", "--wait", "--timeout", "1ms")
	if code != 1 || !strings.Contains(stderr, "still in flight:\n  push to proj by alice over http on gate C") ||
		!strings.Contains(stdout, "maintenance mode: enabled") {
		t.Fatalf("enable --wait --timeout 1ms with a push on C: exit %d\n%s%s", code, stdout, stderr)
	}
	waited := make(chan string, 1)
	go func() {
		out, errs, code := cli(t, s.db, s.gates[0].dataDir, "maintenance", "enable", "--wait", "--timeout", "1m")
		if code != 0 {
			out += fmt.Sprintf("exit %d: %s", code, errs)
		}
		waited <- out
	}()
	select {
	case out := <-waited:
		t.Fatalf("--wait returned with the push on C still running:\n%s", out)
	default:
	}
	answer := push.finish()
	for _, want := range []string{gitgate.MaintenanceMessage, "ng refs/heads/main pre-receive hook declined"} {
		if !strings.Contains(answer, want) {
			t.Errorf("the push in flight on C: answer lacks %q:\n%q", want, answer)
		}
	}
	if out := <-waited; !strings.Contains(out, "no push in flight on any gate of the site") {
		t.Fatalf("--wait:\n%s", out)
	}

	// A gate that dies with a push in flight.
	mustCLI(t, s.db, admin, "maintenance", "disable")
	d := startGate(t, "D", s.db, s.repos, "--database-heartbeat", "100ms", "--no-hooks")
	dead := startPacedPush(t, s, d)
	bounded(t, "the push on D in the site's status", func() bool {
		out, _, _ := cli(t, s.db, admin, "maintenance", "status")
		return strings.Contains(out, "on gate D")
	})
	d.kill()
	dead.feed.Close()
	<-dead.respc
	stdout, stderr, code = cli(t, s.db, admin, "maintenance", "enable", "--wait", "--timeout", "1m")
	if code != 0 || !strings.Contains(stdout, "no push in flight on any gate of the site") {
		t.Fatalf("enable --wait after gate D died: exit %d\n%s%s", code, stdout, stderr)
	}

	// The pre-receive hook of a push through a gate asks that gate, which
	// holds the state in memory, before the database: with the database
	// URL made useless, it still sees maintenance through gate A.
	bounded(t, "gate A in maintenance", func() bool {
		code, _ := infoRefs(t, s.gates[0], "git-receive-pack", "alice", s.token)
		return code == http.StatusForbidden
	})
	out, code = runHook(t, "GITGATE_DATA_DIR="+s.gates[0].dataDir, "GITGATE_DATABASE_URL=postgres://nobody@127.0.0.1:1/none")
	if code != 1 || !strings.Contains(out, gitgate.MaintenanceMessage) {
		t.Fatalf("hook through gate A's socket: exit %d\n%s", code, out)
	}
}
