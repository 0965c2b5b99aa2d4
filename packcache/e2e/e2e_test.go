package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/gittest"
)

var gitgateBin string

// TestMain builds gitgate once for the package.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "packcache-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gitgateBin = filepath.Join(dir, "gitgate")
	_, file, _, _ := runtime.Caller(0)
	// go test's own timeout is not armed yet in TestMain.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", gitgateBin, "./cmd/gitgate")
	build.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build gitgate: %v\n%s", err, out)
		os.Exit(1)
	}
	cancel()
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// holdingGit is the --git of the gates: real git, except that pack-objects
// first waits while the file $PACK_HOLD exists (at most 5 minutes), and
// says so by creating $PACK_HOLD.held, so that a test can keep a generation
// running for as long as it needs (see hold).
func holdingGit(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "git")
	script := `#!/bin/sh
case "$*" in *pack-objects*)
	if [ -e "$PACK_HOLD" ]; then
		: >"$PACK_HOLD.held"
		i=0
		while [ -e "$PACK_HOLD" ] && [ $i -lt 6000 ]; do sleep 0.05; i=$((i+1)); done
	fi ;;
esac
exec git "$@"
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

type gate struct {
	url, sshAddr string
	data         string
	env          []string // for the git client
	sshCommand   string
}

var listenLine = regexp.MustCompile(`^(http|ssh): listening on (\S+)`)

// startGate creates the repository "example" (one commit) readable by
// anyone and by alice over SSH, and runs "gitgate serve args..." until the
// test ends.
func startGate(t *testing.T, args ...string) *gate {
	t.Helper()
	dir, err := os.MkdirTemp("", "pc-") // short: the data dir holds Unix sockets
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	g := &gate{data: filepath.Join(dir, "data"), env: gittest.Env(t)}
	key := filepath.Join(dir, "id_alice")
	run := func(name string, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = g.env
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("%s %s: timed out after 1m, killed\n%s", name, strings.Join(args, " "), out)
		}
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
	for _, a := range [][]string{
		{"repo", "create", "example", "--readme"},
		{"user", "add", "alice"},
		{"user", "key", "add", "alice", "--file", key + ".pub"},
		{"access", "grant", "example", "--user", "alice", "--level", "read"},
		{"access", "grant", "example", "--anonymous", "--level", "read"},
	} {
		run(gitgateBin, append([]string{"--data-dir", g.data}, a...)...)
	}
	g.sshCommand = "ssh -F /dev/null -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR -i " + key
	argv := append([]string{"--data-dir", g.data, "serve", "--http-listen", "127.0.0.1:0", "--ssh-listen", "127.0.0.1:0",
		"--shutdown-grace", "5s", "--git", holdingGit(t, dir)}, args...)
	cmd := exec.Command(gitgateBin, argv...)
	cmd.Env = append(os.Environ(), "PACK_HOLD="+filepath.Join(dir, "hold"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "gate.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			t.Error("the gate did not stop within 15 s of SIGTERM")
		}
		logFile.Close()
		if t.Failed() {
			log, _ := os.ReadFile(logFile.Name())
			t.Logf("gate log:\n%s", log)
		}
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, stdout)
	}()
	deadline := time.After(30 * time.Second)
	for g.url == "" || g.sshAddr == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("the gate exited before it listened")
			}
			if m := listenLine.FindStringSubmatch(line); m != nil {
				if m[1] == "http" {
					g.url = m[2]
				} else {
					g.sshAddr = strings.TrimPrefix(m[2], "ssh://git@")
				}
			}
		case <-deadline:
			t.Fatal("the gate did not listen within 30 s")
		}
	}
	go func() {
		for range lines {
		}
	}()
	return g
}

// git runs the git client against the gate.
func (g *gate) git(t *testing.T, dir string, args ...string) gittest.Result {
	t.Helper()
	env := append(g.env[:len(g.env):len(g.env)], "GIT_SSH_COMMAND="+g.sshCommand)
	return gittest.Git(t, env, dir, args...)
}

// metricsClient reads the gates' /metrics, with a deadline.
var metricsClient = &http.Client{Timeout: 30 * time.Second}

// metric reads one sample of the gate's /metrics.
func (g *gate) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := metricsClient.Get(g.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func (g *gate) waitMetric(t *testing.T, name string, want float64) {
	t.Helper()
	for range 1000 {
		if g.metric(t, name) == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never reached %v", name, want)
}

// refs returns a repository's refs after checking it with fsck.
func refs(t *testing.T, g *gate, dir string) string {
	t.Helper()
	if r := g.git(t, dir, "fsck", "--strict", "--no-dangling"); r.Err != nil {
		t.Fatalf("fsck %s: %v\n%s", dir, r.Err, r.Stderr)
	}
	return gittest.MustGit(t, g.env, dir, "for-each-ref", "--format=%(objectname) %(refname)")
}

// holdFile is the file whose presence holds the generations (the gate's
// $PACK_HOLD).
func (g *gate) holdFile() string { return filepath.Join(filepath.Dir(g.data), "hold") }

// hold makes the next generations wait until the returned func is called
// (at the latest when the test ends). Releasing removes a file, so it never
// waits, whether a generation was held or none came.
func hold(t *testing.T, g *gate) (release func()) {
	t.Helper()
	if err := os.WriteFile(g.holdFile(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	release = func() {
		if err := os.Remove(g.holdFile()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("release the held generations: %v", err)
		}
	}
	t.Cleanup(release)
	return release
}

// waitHeld waits until a generation is held by hold (at most 30 s).
func waitHeld(t *testing.T, g *gate) {
	t.Helper()
	for range 3000 {
		if _, err := os.Stat(g.holdFile() + ".held"); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no generation was held within 30 s")
}

func TestCloneThroughPackCache(t *testing.T) {
	t.Parallel()
	// The process limiter would refuse 16 clones from one address.
	g := startGate(t, "--pack-objects-per-repo", "1", "--pack-objects-queue", "-1", "--max-git-per-user", "-1")
	work := t.TempDir()
	repoURL := g.url + "/example.git"
	bare := filepath.Join(g.data, "repositories", "example.git")

	// Uncached reference: git straight from the repository.
	gittest.MustGit(t, g.env, work, "clone", "-q", "--bare", "--no-local", bare, "direct.git")
	want := refs(t, g, filepath.Join(work, "direct.git"))

	// A miss, then a hit: both identical to the direct clone.
	for _, name := range []string{"miss.git", "hit.git"} {
		if r := g.git(t, work, "clone", "--bare", repoURL, name); r.Err != nil {
			t.Fatalf("clone %s: %v\n%s", name, r.Err, r.Stderr)
		}
		if got := refs(t, g, filepath.Join(work, name)); got != want {
			t.Fatalf("%s refs:\n%s\nwant:\n%s", name, got, want)
		}
	}
	if h, m := g.metric(t, "gitgate_pack_objects_cache_hits_total"), g.metric(t, "gitgate_pack_objects_cache_misses_total"); h != 1 || m != 1 {
		t.Fatalf("hits=%v misses=%v after two identical clones", h, m)
	}

	// 16 concurrent identical shallow clones run one pack-objects.
	gens := g.metric(t, "gitgate_pack_objects_generations_total")
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := g.git(t, work, "clone", "-q", "--depth", "1", repoURL, fmt.Sprintf("shallow%d", i))
			if r.Err != nil {
				errs[i] = fmt.Errorf("%v: %s", r.Err, r.Stderr)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("shallow clone %d: %v", i, err)
		}
	}
	if got := g.metric(t, "gitgate_pack_objects_generations_total") - gens; got != 1 {
		t.Fatalf("16 identical clones ran %v pack-objects, want 1", got)
	}

	// A generation holds the repository's only slot, no queue: another
	// request is refused with the busy message on both transports.
	release := hold(t, g)
	held := make(chan gittest.Result, 1)
	go func() { held <- g.git(t, work, "clone", "-q", "--filter=blob:none", repoURL, "partial") }()
	waitHeld(t, g)
	g.waitMetric(t, "gitgate_pack_objects_running", 1)
	for _, url := range []string{repoURL, "ssh://git@" + g.sshAddr + "/example.git"} {
		r := g.git(t, work, "clone", "--depth", "2", url, "refused"+strconv.Itoa(len(url)))
		if r.Err == nil {
			t.Fatalf("clone %s succeeded while the only slot was taken", url)
		}
		if !strings.Contains(r.Stderr, "remote: "+gitgate.BusyMessage) {
			t.Fatalf("clone %s: stderr lacks the busy line:\n%s", url, r.Stderr)
		}
	}
	if got := g.metric(t, `gitgate_pack_objects_refused_total{reason="queue_full"}`); got != 2 {
		t.Fatalf("refusals counted: %v, want 2", got)
	}
	release()
	if r := <-held; r.Err != nil {
		t.Fatalf("the held clone: %v\n%s", r.Err, r.Stderr)
	}
}

func TestUnwritableCacheDirStillServes(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	g := startGate(t, "--pack-objects-cache-dir", filepath.Join(file, "cache"))
	work := t.TempDir()
	for _, url := range []string{g.url + "/example.git", "ssh://git@" + g.sshAddr + "/example.git"} {
		r := g.git(t, work, "clone", "--bare", url, "c"+strconv.Itoa(len(url))+".git")
		if r.Err != nil {
			t.Fatalf("clone %s: %v\n%s", url, r.Err, r.Stderr)
		}
		refs(t, g, filepath.Join(work, "c"+strconv.Itoa(len(url))+".git"))
	}
	if got := g.metric(t, "gitgate_pack_objects_cache_fallbacks_total"); got != 2 {
		t.Fatalf("fallbacks = %v, want 2", got)
	}
}

// The scenario with the default limits: 32 identical CI clones
// from one address at once. The process limiter's per-user cap (8) lets 8
// run and queues the rest instead of refusing them; all 32 get the one
// generated pack.
func TestThirtyTwoClonesFromOneAddressWithDefaults(t *testing.T) {
	t.Parallel()
	g := startGate(t)
	work := t.TempDir()
	repoURL := g.url + "/example.git"
	release := hold(t, g)
	var wg sync.WaitGroup
	errs := make([]error, 32)
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := g.git(t, work, "clone", "-q", "--depth", "1", repoURL, fmt.Sprintf("ci%d", i))
			if r.Err != nil {
				errs[i] = fmt.Errorf("%v: %s", r.Err, r.Stderr)
			}
		}()
	}
	// While the one generation is held, 8 git processes run and 24 wait.
	waitHeld(t, g)
	g.waitMetric(t, "gitgate_git_processes_waiting", 24)
	if got := g.metric(t, "gitgate_git_processes_running"); got != gitgate.DefaultMaxGitPerUser {
		t.Errorf("running: %v, want %d", got, gitgate.DefaultMaxGitPerUser)
	}
	release()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("clone %d: %v", i, err)
		}
	}
	if got := g.metric(t, "gitgate_pack_objects_generations_total"); got != 1 {
		t.Fatalf("32 identical clones ran %v pack-objects, want 1", got)
	}
	// Every hook passed upload-pack's pipe: the gate wrote the packs.
	if got := g.metric(t, "gitgate_pack_objects_direct_pipe_total"); got != 32 {
		t.Fatalf("%v packs written into upload-pack's pipe, want 32", got)
	}
}
