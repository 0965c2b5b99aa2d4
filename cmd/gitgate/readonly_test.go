package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitgate/gitgate/internal/gittest"
	"github.com/gitgate/gitgate/internal/syncbuf"
)

// readOnlyServe runs "gitgate serve" with its data dir bind-mounted
// read-only in a private mount namespace (so the mount vanishes with the
// process), as a read-only volume would be. Root can write through chmod,
// not through a read-only mount. It skips where namespaces or mounts are
// not allowed.
func readOnlyServe(t *testing.T, g *e2eTool, stderr *syncbuf.Buffer) *exec.Cmd {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare not found")
	}
	probe := t.TempDir()
	if out, err := exec.Command("unshare", "-m", "sh", "-c", `mount --bind -o ro "$0" "$0" && ! touch "$0/x" 2>/dev/null`, probe).CombinedOutput(); err != nil {
		t.Skipf("read-only bind mounts are not available here: %v %s", err, out)
	}
	cmd := exec.Command("unshare", "-m", "sh", "-c", `mount --bind -o ro "$0" "$0" && exec "$1" serve --http-listen 127.0.0.1:0 --ssh-listen 127.0.0.1:0`, g.data, g.bin)
	cmd.Env = g.env()
	cmd.Stderr = stderr
	return cmd
}

// The gate starts on a read-only data dir that has its host keys, and
// serves; only the admin socket is missing, with a warning.
func TestServeReadOnlyDataDir(t *testing.T) {
	g := newE2ETool(t, e2eBinary(t))
	g.must(t, "repo", "create", "project", "--readme")
	g.must(t, "access", "grant", "project", "--anonymous", "--level", "read")
	g.must(t, "ssh", "host-keys")
	g.must(t, "maintenance", "disable")
	os.Remove(filepath.Join(g.data, ".ssh_host_keys.lock")) // a data dir prepared elsewhere

	var stderr syncbuf.Buffer
	cmd := readOnlyServe(t, g, &stderr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	hostc := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`^http: listening on http://(\S+)`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				hostc <- m[1]
			}
		}
		close(hostc)
		done <- cmd.Wait()
	}()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Error("gate did not stop within 15s of SIGTERM")
		}
	}()
	var host string
	select {
	case h, ok := <-hostc:
		if !ok {
			<-done
			t.Fatalf("gate did not start on a read-only data dir:\n%s", stderr.String())
		}
		host = h
	case <-time.After(30 * time.Second):
		t.Fatal("gate did not print its HTTP address within 30s")
	}
	env := append(g.env(), "GIT_TERMINAL_PROMPT=0")
	work := t.TempDir()
	gittest.MustGit(t, env, work, "clone", "-q", "http://"+host+"/project.git", "clone")
	if _, err := os.Stat(filepath.Join(g.data, SocketName)); !os.IsNotExist(err) {
		t.Errorf("admin socket on a read-only dir: %v", err)
	}
	if !waitForText(&stderr, "no admin socket: the data dir is read-only") {
		t.Errorf("no warning about the admin socket:\n%s", stderr.String())
	}
}

// Without host keys, a read-only data dir stops the gate with a message
// that says how to provide them.
func TestServeReadOnlyDataDirWithoutHostKeys(t *testing.T) {
	g := newE2ETool(t, e2eBinary(t))
	g.must(t, "repo", "create", "project", "--readme")
	var stderr syncbuf.Buffer
	cmd := readOnlyServe(t, g, &stderr)
	if err := cmd.Run(); err == nil {
		t.Fatal("the gate started without host keys on a read-only data dir")
	}
	if !strings.Contains(stderr.String(), `gitgate ssh host-keys`) || !strings.Contains(stderr.String(), "--ssh-host-key") {
		t.Errorf("stderr does not say how to provide host keys:\n%s", stderr.String())
	}
}

// waitForText waits, boundedly, for s in a buffer written by a process.
func waitForText(b *syncbuf.Buffer, s string) bool {
	for range 100 {
		if strings.Contains(b.String(), s) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
