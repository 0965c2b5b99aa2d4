package sitetest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gitgate/gitgate/internal/pgtest"
)

var (
	cluster *pgtest.Cluster
	binary  string // the gitgate binary, built once
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gitgate-sitetest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "gitgate")
	if out, err := exec.Command("go", "build", "-o", binary, "../cmd/gitgate").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := pgtest.Main(m, &cluster)
	os.RemoveAll(dir)
	os.Exit(code)
}

// bounded polls cond every 10 ms, failing after 15 s.
func bounded(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// cli runs the gitgate binary with --database-url and returns its output
// and exit status.
func cli(t *testing.T, dbURL, dataDir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	full := append([]string{"--data-dir", dataDir, "--log-level", "warn"}, args...)
	cmd := exec.CommandContext(ctx, binary, full...)
	cmd.Env = append(os.Environ(), "GITGATE_DATABASE_URL="+dbURL)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("gitgate %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

func mustCLI(t *testing.T, dbURL, dataDir string, args ...string) string {
	t.Helper()
	out, errs, code := cli(t, dbURL, dataDir, args...)
	if code != 0 {
		t.Fatalf("gitgate %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// gate is a running "gitgate serve".
type gate struct {
	name, dataDir, http, ssh string
	cmd                      *exec.Cmd
	stderr                   *syncBuffer
	done                     chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startGate starts a gate on the database and the repository directory.
func startGate(t *testing.T, name, dbURL, repos string, extra ...string) *gate {
	t.Helper()
	return startGateIn(t, t.TempDir(), name, dbURL, repos, extra...)
}

// startGateIn starts a gate with the data dir dataDir.
func startGateIn(t *testing.T, dataDir, name, dbURL, repos string, extra ...string) *gate {
	t.Helper()
	g := &gate{name: name, dataDir: dataDir, stderr: &syncBuffer{}, done: make(chan struct{})}
	args := append([]string{"--data-dir", g.dataDir, "--log-level", "info", "serve", "--repos", repos,
		"--http-listen", "127.0.0.1:0", "--ssh-listen", "127.0.0.1:0", "--gate-id", name,
		"--shutdown-grace", "2s"}, extra...)
	g.cmd = exec.Command(binary, args...)
	g.cmd.Env = append(os.Environ(), "GITGATE_DATABASE_URL="+dbURL)
	g.cmd.Stderr = g.stderr
	out, err := g.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan [2]string, 1)
	go func() {
		defer close(g.done)
		var got [2]string
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := httpRE.FindStringSubmatch(sc.Text()); m != nil {
				got[0] = m[1]
			}
			if m := sshRE.FindStringSubmatch(sc.Text()); m != nil {
				got[1] = m[1]
				addrs <- got
				break
			}
		}
		io.Copy(io.Discard, out)
		g.cmd.Wait()
	}()
	t.Cleanup(func() { g.stop(t) })
	select {
	case a := <-addrs:
		g.http, g.ssh = a[0], a[1]
	case <-g.done:
		t.Fatalf("gate %s exited at start:\n%s", name, g.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("gate %s did not start:\n%s", name, g.stderr.String())
	}
	return g
}

var (
	httpRE = regexp.MustCompile(`http: listening on (http://\S+)`)
	sshRE  = regexp.MustCompile(`ssh: listening on ssh://git@(\S+)`)
)

func (g *gate) stop(t *testing.T) {
	select {
	case <-g.done:
		return
	default:
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(20 * time.Second):
		g.cmd.Process.Kill()
		<-g.done
		t.Errorf("gate %s did not stop on SIGTERM", g.name)
	}
	if t.Failed() {
		t.Logf("gate %s stderr:\n%s", g.name, g.stderr.String())
	}
}

// kill stops the gate at once, as a crash would.
func (g *gate) kill() {
	g.cmd.Process.Kill()
	<-g.done
}
