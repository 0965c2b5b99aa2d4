package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitgate/gitgate/internal/gittest"
)

// fenceToggles is how many times TestMaintenanceFenceRace enables and
// disables maintenance. GITGATE_FENCE_TOGGLES overrides it.
const fenceToggles = 200

// TestMaintenanceFenceRace is issue 11's promise, "once enabled, nothing
// changes until I disable it", under races: a real "gitgate serve" process
// (built from this module, with the hooks installed) takes pushes from
// real git clients over smart HTTP and SSH, continuously, while the test
// enables and disables maintenance hundreds of times, alternately through
// the API and through the CLI (no --wait). Each enable comes as soon as a
// push is past its pre-receive check, about to commit its refs. After every
// enable returns, the repository's refs are read; they are read again once
// every git receive-pack running at that moment has ended, just before
// disable. The two must be equal: no push that passed its check just before
// the switch may still move a ref after enable has returned. (On the code
// before the reference-transaction hook, about half the windows failed.)
func TestMaintenanceFenceRace(t *testing.T) {
	// Most of its time is spent waiting on git processes: let it overlap
	// with the scripts.
	t.Parallel()
	for _, tool := range []string{"git", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	toggles := fenceToggles
	if v := os.Getenv("GITGATE_FENCE_TOGGLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("GITGATE_FENCE_TOGGLES=%q", v)
		}
		toggles = n
	}
	g := newE2ETool(t, e2eBinary(t))
	env := gittest.Env(t)
	g.must(t, "repo", "create", "project", "--readme")
	g.must(t, "user", "add", "root", "--admin")
	g.must(t, "user", "add", "dev")
	g.must(t, "access", "grant", "project", "--user", "dev", "--level", "write")
	rootToken, _ := g.token(t, "root")
	devToken, _ := g.token(t, "dev")
	key := filepath.Join(t.TempDir(), "id_dev")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	g.must(t, "user", "key", "add", "dev", "--file", key+".pub")
	bare := filepath.Join(g.data, "repositories", "project.git")
	// The repository's own pre-receive hook, which gitgate's runs after a
	// successful check, counts the pushes past the check: the ones that
	// will commit their refs unless something stops them.
	passed := filepath.Join(t.TempDir(), "passed")
	own := fmt.Sprintf("#!/bin/sh\ncat >/dev/null\necho x >> '%s'\n", passed)
	if err := os.WriteFile(filepath.Join(bare, "hooks", "pre-receive.gitgate-chained"), []byte(own), 0o755); err != nil {
		t.Fatal(err)
	}
	passedCount := func() int64 {
		fi, err := os.Stat(passed)
		if err != nil {
			return 0
		}
		return fi.Size() / 2
	}
	httpHost, sshHost := startFenceGate(t, g)

	// Pushers stop after their current attempt once stop is set; ctx
	// (cancelled only when the test fails early) kills them.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stop atomic.Bool

	// Pushers: each pushes a new commit to its own branch, again and again.
	sshCmd := "ssh -F /dev/null -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR -i " + key
	urls := []string{
		"http://dev:" + devToken + "@" + httpHost + "/project.git",
		"ssh://git@" + sshHost + "/project.git",
		"http://dev:" + devToken + "@" + httpHost + "/project.git",
		"ssh://git@" + sshHost + "/project.git",
	}
	// Every pusher clones before any pushes: a local clone copies the
	// objects directory as it is, and a push running meanwhile has a
	// quarantine directory there that vanishes mid-copy.
	pushers := make([]*fencePusher, len(urls))
	for i, u := range urls {
		p := &fencePusher{url: u, branch: fmt.Sprintf("w%d", i), dir: t.TempDir(), env: append(slices.Clip(env), "GIT_SSH_COMMAND="+sshCmd)}
		gittest.MustGit(t, env, p.dir, "clone", "-q", bare, ".")
		pushers[i] = p
	}
	var wg sync.WaitGroup
	for _, p := range pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.loop(ctx, &stop)
		}()
	}
	defer func() {
		cancel()
		wg.Wait()
	}()

	api := &http.Client{Timeout: time.Minute}
	setViaAPI := func(on bool) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPut, "http://"+httpHost+"/api/v4/application/settings?maintenance_mode="+strconv.FormatBool(on), nil)
		req.Header.Set("PRIVATE-TOKEN", rootToken)
		resp, err := api.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT maintenance_mode=%v: %s", on, resp.Status)
		}
	}
	snapshot := func() string {
		t.Helper()
		s, err := readBranches(bare)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	changed, raced := 0, 0
	for i := range toggles {
		// Let pushes go while maintenance is off, until one is past its
		// pre-receive check (or every pusher has made a whole attempt):
		// enable then lands while it is about to commit its refs.
		from := passedCount()
		waitPushers(t, pushers, func(*fencePusher, pusherCount) bool { return passedCount() > from }, false)

		if i%2 == 0 {
			setViaAPI(true)
		} else {
			g.must(t, "maintenance", "enable")
		}
		before := snapshot()
		// Every git receive-pack running when enable returned has ended:
		// only they update refs, and none can start in maintenance.
		if waitReceivePacks(t, bare) {
			raced++
		}
		after := snapshot()
		if before != after {
			changed++
			t.Errorf("toggle %d (enable via %s): refs changed after enable returned:\nbefore:\n%s\nafter:\n%s",
				i, map[bool]string{true: "API", false: "CLI"}[i%2 == 0], before, after)
		}
		setViaAPI(false)
	}
	stop.Store(true)
	wg.Wait()
	var ok, refused int64
	for _, p := range pushers {
		c := p.count()
		ok += c.ok
		refused += c.done - c.ok
	}
	t.Logf("%d toggles, %d with git receive-pack running after enable returned; %d pushes past pre-receive, %d landed, %d refused; %d windows with ref changes",
		toggles, raced, passedCount(), ok, refused, changed)
	if passedCount() == 0 {
		t.Error("no push ever got past its pre-receive check: the test did not exercise anything")
	}
}

// pusherCount counts a pusher's attempts.
type pusherCount struct{ started, done, ok int64 }

// fencePusher pushes new commits to one branch in a loop.
type fencePusher struct {
	url, branch, dir string
	env              []string
	started, done    atomic.Int64
	ok               atomic.Int64
}

func (p *fencePusher) count() pusherCount {
	// started last: a snapshot never shows more done than started.
	d, o := p.done.Load(), p.ok.Load()
	return pusherCount{started: p.started.Load(), done: d, ok: o}
}

func (p *fencePusher) git(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir, cmd.Env = p.dir, p.env
	cmd.WaitDelay = 5 * time.Second
	return cmd.Run()
}

func (p *fencePusher) loop(ctx context.Context, stop *atomic.Bool) {
	for n := 0; ctx.Err() == nil && !stop.Load(); n++ {
		if err := p.git(ctx, "commit", "-q", "--allow-empty", "-m", "push "+strconv.Itoa(n)); err != nil {
			return
		}
		p.started.Add(1)
		err := p.git(ctx, "push", "-q", p.url, "HEAD:refs/heads/"+p.branch)
		if err == nil {
			p.ok.Add(1)
		}
		p.done.Add(1)
	}
}

// waitReceivePacks waits until no git receive-pack runs on the repository
// (bounded), and reports whether one was running.
func waitReceivePacks(t *testing.T, bare string) bool {
	t.Helper()
	real, err := filepath.EvalSymlinks(bare)
	if err != nil {
		t.Fatal(err)
	}
	running := func() bool {
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range dirs {
			cmdline, err := os.ReadFile(filepath.Join(d, "cmdline"))
			if err == nil && bytes.Contains(cmdline, []byte("receive-pack")) && bytes.Contains(cmdline, []byte(real)) {
				return true
			}
		}
		return false
	}
	was := running()
	for i := 0; running(); i++ {
		if i == 100000 {
			t.Fatal("git receive-pack never ended")
		}
		time.Sleep(time.Millisecond)
	}
	return was
}

// waitPushers waits until cond holds for every pusher (all) or for one of
// them (!all), given each pusher's count when the wait began, or until every
// pusher has made a whole attempt since then. It returns how many pushers
// were in the middle of an attempt when the wait began. Bounded: attempts
// end within their own timeout.
func waitPushers(t *testing.T, ps []*fencePusher, cond func(*fencePusher, pusherCount) bool, all bool) int {
	t.Helper()
	start := make([]pusherCount, len(ps))
	inFlight := 0
	for i, p := range ps {
		start[i] = p.count()
		if start[i].started > start[i].done {
			inFlight++
		}
	}
	for range 100000 {
		met, attempted := 0, 0
		for i, p := range ps {
			if cond(p, start[i]) {
				met++
			}
			if p.count().done > start[i].started {
				attempted++
			}
		}
		if (all && met == len(ps)) || (!all && met > 0) || attempted == len(ps) {
			return inFlight
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("pushers made no progress")
	return 0
}

// startFenceGate starts "gitgate serve" with SSH and returns its HTTP and
// SSH host:port. It is stopped (SIGTERM, then SIGKILL) and reaped when the
// test ends.
func startFenceGate(t *testing.T, g *e2eTool) (httpHost, sshHost string) {
	t.Helper()
	gate := g.serve(t, "--log-level", "warn")
	return gate.httpHost, gate.sshHost
}

// readBranches lists the repository's branches with their values, read
// from the files (loose refs win over packed-refs), without starting git.
// Loose refs are replaced atomically by git (rename), so each read sees a
// whole value.
func readBranches(gitDir string) (string, error) {
	refs := map[string]string{}
	packed, err := os.ReadFile(filepath.Join(gitDir, "packed-refs"))
	if err != nil && !os.IsNotExist(err) {
		return "", err
	}
	for _, line := range strings.Split(string(packed), "\n") {
		if oid, name, ok := strings.Cut(line, " "); ok && strings.HasPrefix(name, "refs/heads/") {
			refs[name] = oid
		}
	}
	dir := filepath.Join(gitDir, "refs", "heads")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasSuffix(e.Name(), ".lock") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if os.IsNotExist(err) {
			continue // deleted, or packed, since the listing
		}
		if err != nil {
			return "", err
		}
		refs["refs/heads/"+e.Name()] = strings.TrimSpace(string(data))
	}
	names := make([]string, 0, len(refs))
	for n := range refs {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s %s\n", n, refs[n])
	}
	return b.String(), nil
}
