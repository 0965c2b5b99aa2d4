package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/internal/gittest"
)

// serveInProcess runs "gitgate serve" in this process on loopback ports and
// returns its HTTP base URL. Hooks are not installed: they would run this
// test binary.
func serveInProcess(t *testing.T, dataDir string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, pw, io.Discard, []string{"gitgate", "--data-dir", dataDir, "--log-level", "error",
			"serve", "--http-listen", "127.0.0.1:0", "--ssh-listen", "", "--no-hooks"})
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

func TestMaintenanceEnableWaitsForPushesInFlight(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"repo", "create", "project", "--readme", "--no-hook"},
		{"user", "add", "dev"},
		{"access", "grant", "project", "--user", "dev", "--level", "write"},
	} {
		mustCLI(t, dir, args...)
	}
	token := strings.TrimSpace(mustCLI(t, dir, "token", "create", "dev"))
	url := serveInProcess(t, dir)

	// A push whose pack the test feeds by hand: it stays in flight until the
	// test writes the rest.
	env := gittest.Env(t)
	repo := filepath.Join(dir, "repositories", "project.git")
	old := gittest.MustGit(t, env, repo, "rev-parse", "main")
	work := t.TempDir()
	gittest.MustGit(t, env, work, "clone", "-q", repo, ".")
	gittest.MustGit(t, env, work, "commit", "-q", "--allow-empty", "-m", "paced push")
	newID := gittest.MustGit(t, env, work, "rev-parse", "HEAD")
	packCmd := exec.Command("git", "pack-objects", "--stdout", "--revs", "-q")
	packCmd.Dir, packCmd.Env = work, env
	packCmd.Stdin = strings.NewReader(newID + "\n^" + old + "\n")
	pack, err := packCmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	cmdLine := fmt.Sprintf("%s %s refs/heads/main\x00report-status\n", old, newID)
	var head bytes.Buffer
	fmt.Fprintf(&head, "%04x%s0000", len(cmdLine)+4, cmdLine)
	head.Write(pack[:len(pack)/2])

	body, feed := io.Pipe()
	req, _ := http.NewRequest("POST", url+"/project.git/git-receive-pack", body)
	req.Header.Set("Content-Type", "application/x-git-receive-pack-request")
	req.SetBasicAuth("dev", token)
	respc := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
		}
		respc <- resp
	}()
	if _, err := feed.Write(head.Bytes()); err != nil {
		t.Fatal(err)
	}

	// The gate sees the push in flight (bounded poll: the request is on its way).
	for i := 0; ; i++ {
		out := mustCLI(t, dir, "maintenance", "status")
		if strings.Contains(out, "in flight:        1 push(es)") {
			break
		}
		if i == 1000 {
			t.Fatalf("push never in flight:\n%s", out)
		}
	}

	stdout, stderr, code := gitgateCLI(t, dir, "maintenance", "enable", "--wait", "--timeout", "1ms")
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
		out, stderr, code := gitgateCLI(t, dir, "maintenance", "enable", "--wait", "--timeout", "1h")
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
	// Finish the push: it was admitted before maintenance, so it runs to
	// the end (the hook is not installed in this test).
	feed.Write(pack[len(pack)/2:])
	feed.Close()
	resp := <-respc
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if out := <-waited; !strings.Contains(out, "no push in flight: safe to start the maintenance work") {
		t.Fatalf("--wait output:\n%s", out)
	}
	if got := gittest.MustGit(t, env, repo, "rev-parse", "main"); got != newID {
		t.Errorf("the push in flight did not land: main is %s", got)
	}
	if _, err := os.Stat(filepath.Join(dir, SocketName)); err != nil {
		t.Errorf("admin socket: %v", err)
	}
}
