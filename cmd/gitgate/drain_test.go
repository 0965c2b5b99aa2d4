package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/gittest"
)

// serveInProcess runs "gitgate serve" in this process on loopback ports and
// returns its HTTP base URL. Hooks are not installed: they would run this
// test binary.
func serveInProcess(t *testing.T, dataDir string, serveArgs ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, pw, io.Discard, append([]string{"gitgate", "--data-dir", dataDir, "--log-level", "error",
			"serve", "--http-listen", "127.0.0.1:0", "--ssh-listen", "", "--no-hooks"}, serveArgs...))
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	re := regexp.MustCompile(`^http: listening on (\S+)`)
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			go io.Copy(io.Discard, pr)
			return m[1]
		}
	}
	t.Fatal("serve did not start")
	return ""
}

// pushFixture is a gate with a repository "project" that user dev may
// push to.
type pushFixture struct {
	dir, url, token, repo string
	env                   []string
}

func newPushFixture(t *testing.T, withHook bool) *pushFixture {
	t.Helper()
	dir := t.TempDir()
	mustCLI(t, dir, "repo", "create", "project", "--readme", "--no-hook")
	mustCLI(t, dir, "user", "add", "dev")
	mustCLI(t, dir, "access", "grant", "project", "--user", "dev", "--level", "write")
	f := &pushFixture{
		dir:   dir,
		token: strings.TrimSpace(mustCLI(t, dir, "token", "create", "dev")),
		repo:  filepath.Join(dir, "repositories", "project.git"),
		env:   gittest.Env(t),
	}
	if withHook {
		mustCLI(t, dir, "hooks", "install", "--binary", builtGitgate(t))
	}
	f.url = serveInProcess(t, dir)
	return f
}

// builtGitgate builds the gitgate binary for a test that installs hooks:
// the test binary cannot stand in for it there.
func builtGitgate(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gitgate")
	if out, err := exec.Command("go", "build", "-o", path, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return path
}

// pacedPush is a push whose data the test sends by hand: start sends the
// commands and half the pack, so the push stays in flight until finish
// sends the rest and returns the gate's answer.
type pacedPush struct {
	old, new string
	rest     []byte
	feed     *io.PipeWriter
	respc    chan *http.Response
}

func startPacedPush(t *testing.T, f *pushFixture) *pacedPush {
	t.Helper()
	p := &pacedPush{old: gittest.MustGit(t, f.env, f.repo, "rev-parse", "main"), respc: make(chan *http.Response, 1)}
	work := t.TempDir()
	gittest.MustGit(t, f.env, work, "clone", "-q", f.repo, ".")
	gittest.MustGit(t, f.env, work, "commit", "-q", "--allow-empty", "-m", "paced push")
	p.new = gittest.MustGit(t, f.env, work, "rev-parse", "HEAD")
	packCmd := exec.Command("git", "pack-objects", "--stdout", "--revs", "-q")
	packCmd.Dir, packCmd.Env = work, f.env
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
	req, _ := http.NewRequest("POST", f.url+"/project.git/git-receive-pack", body)
	req.Header.Set("Content-Type", "application/x-git-receive-pack-request")
	req.SetBasicAuth("dev", f.token)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
		}
		p.respc <- resp
	}()
	if _, err := feed.Write(head.Bytes()); err != nil {
		t.Fatal(err)
	}
	// The gate sees the push in flight (bounded poll: the request is on its way).
	for i := 0; !strings.Contains(mustCLI(t, f.dir, "maintenance", "status"), "in flight:        1 push(es)"); i++ {
		if i == 1000 {
			t.Fatal("the push never showed as in flight")
		}
	}
	return p
}

// finish sends the rest of the pack and returns the gate's answer.
func (p *pacedPush) finish(t *testing.T) string {
	t.Helper()
	p.feed.Write(p.rest)
	p.feed.Close()
	resp := <-p.respc
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return string(out)
}

func TestMaintenanceEnableWaitsForPushesInFlight(t *testing.T) {
	f := newPushFixture(t, false)
	push := startPacedPush(t, f)

	stdout, stderr, code := gitgateCLI(t, f.dir, "maintenance", "enable", "--wait", "--timeout", "1ms")
	if code != 1 {
		t.Fatalf("enable --wait with a push running: exit %d, %s", code, stderr)
	}
	for _, want := range []string{"gitgate: timed out after 1ms; still in flight:\n", "\n  git-receive-pack project by dev over http, running since "} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if !strings.Contains(stdout, "maintenance mode: enabled") {
		t.Errorf("stdout: %s", stdout)
	}

	waited := make(chan string, 1)
	go func() {
		out, stderr, code := gitgateCLI(t, f.dir, "maintenance", "enable", "--wait", "--timeout", "1h")
		if code != 0 {
			t.Errorf("enable --wait: exit %d: %s", code, stderr)
		}
		waited <- out
	}()
	select {
	case out := <-waited:
		t.Fatalf("--wait returned with the push still running:\n%s", out)
	default:
	}
	// Without the hook, a push admitted before maintenance runs to the end.
	push.finish(t)
	if out := <-waited; !strings.Contains(out, "no push in flight: safe to start the maintenance work") {
		t.Fatalf("--wait output:\n%s", out)
	}
	if got := gittest.MustGit(t, f.env, f.repo, "rev-parse", "main"); got != push.new {
		t.Errorf("the push in flight did not land: main is %s", got)
	}
}

// A push already past the gate's own check when maintenance is switched on
// is refused by the pre-receive hook, with the message, and no ref changes.
func TestHookRefusesPushAlreadyPastTheGate(t *testing.T) {
	f := newPushFixture(t, true)
	push := startPacedPush(t, f)
	mustCLI(t, f.dir, "maintenance", "enable")
	answer := push.finish(t)
	for _, want := range []string{
		gitgate.MaintenanceMessage,
		"ng refs/heads/main pre-receive hook declined",
	} {
		if !strings.Contains(answer, want) {
			t.Errorf("the gate's answer lacks %q:\n%q", want, answer)
		}
	}
	if got := gittest.MustGit(t, f.env, f.repo, "rev-parse", "main"); got != push.old {
		t.Errorf("main moved to %s", got)
	}
}
