package sitetest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitgate/gitgate/internal/gittest"
)

// fenceToggles is how many times TestSiteRefFence enables and disables
// maintenance.
const fenceToggles = 24

// Issue 11's promise across gates: once "maintenance enable" returns on one
// gate, no ref changes on any gate until disable. Pushers push again and
// again through all three gates (HTTP and SSH) to one repository on the
// shared directory, while maintenance is toggled through a gate that did
// NOT install the hook scripts last (so a fence kept in one gate's data dir
// cannot see the others' updates), alternately through its API and through
// the CLI. Each enable comes as soon as a push is past its pre-receive
// check; after it returns the refs are read, and read again once every git
// receive-pack running at that moment has ended. They must be equal.
func TestSiteRefFence(t *testing.T) {
	t.Parallel() // mostly waiting on git processes
	s := newSite(t)
	bare := filepath.Join(s.repos, "proj.git")
	script, err := os.ReadFile(filepath.Join(bare, "hooks", "reference-transaction"))
	if err != nil {
		t.Fatal(err)
	}
	var toggler *gate
	for _, g := range s.gates {
		if !strings.Contains(string(script), g.dataDir) {
			toggler = g
			break
		}
	}
	if toggler == nil {
		t.Fatal("every gate's data dir is named in the hook script")
	}
	// The repository's own pre-receive hook, run after gitgate's check,
	// counts the pushes past it.
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

	ctx, cancel := context.WithCancel(context.Background())
	var stop atomic.Bool
	var wg sync.WaitGroup
	var attempts atomic.Int64
	defer func() {
		stop.Store(true)
		cancel()
		wg.Wait()
	}()
	var urls []string
	for _, g := range s.gates {
		urls = append(urls, s.httpURL(g), s.sshURL(g))
	}
	for i, u := range urls {
		dir := t.TempDir()
		// --no-local: a local clone copies the objects directory as it is,
		// with the quarantine directory of a push already running there,
		// which can vanish mid-copy.
		gittest.MustGit(t, s.env, dir, "clone", "-q", "--no-local", bare, ".")
		wg.Add(1)
		go func() {
			defer wg.Done()
			git := func(args ...string) error {
				ctx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, "git", args...)
				cmd.Dir, cmd.Env, cmd.WaitDelay = dir, s.env, 5*time.Second
				return cmd.Run()
			}
			for n := 0; !stop.Load() && ctx.Err() == nil; n++ {
				if git("commit", "-q", "--allow-empty", "-m", fmt.Sprint("push ", n)) != nil {
					return
				}
				_ = git("push", "-q", u, fmt.Sprintf("HEAD:refs/heads/w%d", i))
				attempts.Add(1)
			}
		}()
	}

	changed := 0
	for i := range fenceToggles {
		// Let pushes go until one is past its check (or every pusher
		// has had time for a whole attempt).
		from, tried := passedCount(), attempts.Load()
		for j := 0; passedCount() == from && attempts.Load() < tried+int64(len(urls)); j++ {
			if j == 60000 {
				t.Fatal("pushers made no progress")
			}
			time.Sleep(time.Millisecond)
		}
		via := "API"
		if i%2 == 0 {
			s.settingsUpdate(t, toggler, true)
		} else {
			via = "CLI"
			mustCLI(t, s.db, toggler.dataDir, "maintenance", "enable")
		}
		before := refsOf(t, bare)
		waitNoReceivePack(t, bare)
		if after := refsOf(t, bare); after != before {
			changed++
			t.Errorf("toggle %d (enable via gate %s's %s): refs changed after enable returned:\nbefore:\n%s\nafter:\n%s",
				i, toggler.name, via, before, after)
		}
		s.settingsUpdate(t, toggler, false)
	}
	t.Logf("%d toggles through gate %s; %d pushes past pre-receive, %d attempts; %d windows with ref changes",
		fenceToggles, toggler.name, passedCount(), attempts.Load(), changed)
	if passedCount() == 0 {
		t.Error("no push ever got past its pre-receive check: the test did not exercise anything")
	}
}

// refsOf lists the repository's branches from its files, without git:
// loose refs win over packed-refs.
func refsOf(t *testing.T, bare string) string {
	t.Helper()
	refs := map[string]string{}
	packed, err := os.ReadFile(filepath.Join(bare, "packed-refs"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(packed), "\n") {
		if oid, name, ok := strings.Cut(line, " "); ok && strings.HasPrefix(name, "refs/heads/") {
			refs[name] = oid
		}
	}
	entries, err := os.ReadDir(filepath.Join(bare, "refs", "heads"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasSuffix(e.Name(), ".lock") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(bare, "refs", "heads", e.Name()))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		refs["refs/heads/"+e.Name()] = strings.TrimSpace(string(data))
	}
	lines := make([]string, 0, len(refs))
	for n, v := range refs {
		lines = append(lines, n+" "+v)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// waitNoReceivePack waits (bounded) until no git receive-pack runs on the
// repository: only they update its refs, and none starts in maintenance.
func waitNoReceivePack(t *testing.T, bare string) {
	t.Helper()
	real, err := filepath.EvalSymlinks(bare)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		running := false
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range dirs {
			cmdline, err := os.ReadFile(filepath.Join(d, "cmdline"))
			if err == nil && strings.Contains(string(cmdline), "receive-pack") && strings.Contains(string(cmdline), real) {
				running = true
				break
			}
		}
		if !running {
			return
		}
		if i == 60000 {
			t.Fatal("git receive-pack never ended")
		}
		time.Sleep(time.Millisecond)
	}
}

// holdRefUpdates installs the repository's own reference-transaction hook
// (run by gitgate's after a successful check): in "prepared" it creates
// <dir>/inside and waits (at most 60 s) for <dir>/go, so the update is held
// past the database check, about to commit its refs.
func holdRefUpdates(t *testing.T, bare string) (inside, release string) {
	t.Helper()
	dir := t.TempDir()
	inside, release = filepath.Join(dir, "inside"), filepath.Join(dir, "go")
	own := fmt.Sprintf("#!/bin/sh\ncat >/dev/null\n[ \"$1\" = prepared ] || exit 0\n: >'%s'\n"+
		"i=0; while [ ! -e '%s' ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n", inside, release)
	if err := os.WriteFile(filepath.Join(bare, "hooks", "reference-transaction.gitgate-chained"), []byte(own), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(release, nil, 0o644) })
	return inside, release
}

// A push through gate C is past the database check and about to commit
// when maintenance is enabled through gate A: enable returns only once
// that update is done, so no ref moves after it has returned; with a
// short --fence-timeout it says, naming the update, that it did not wait
// until the end. (Before the site's registry, enable on A did not wait for
// updates through C.)
func TestSiteEnableWaitsForRefUpdateOnAnotherGate(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	a, b, c := s.gates[0], s.gates[1], s.gates[2]
	bare := filepath.Join(s.repos, "proj.git")
	inside, release := holdRefUpdates(t, bare)

	// 1. A short fence timeout: enable reports the held update.
	pushed := make(chan gittest.Result, 1)
	gittest.MustGit(t, s.env, s.work, "commit", "-q", "--allow-empty", "-m", "held")
	go func() { pushed <- gittest.Git(t, s.env, s.work, "push", "-q", s.httpURL(c), "HEAD:refs/heads/main") }()
	bounded(t, "the push through C to be past its check", func() bool { _, err := os.Stat(inside); return err == nil })
	out, errs, code := cli(t, s.db, a.dataDir, "maintenance", "enable", "--fence-timeout", "1s")
	if code == 0 || !strings.Contains(errs, "ref update(s) that began before the switch were still running after 1s") ||
		!strings.Contains(errs, "proj.git on host") {
		t.Errorf("enable on A with an update held on C, --fence-timeout 1s: exit %d\n%s%s", code, out, errs)
	}
	os.WriteFile(release, nil, 0o644)
	if r := <-pushed; r.Err != nil {
		t.Fatalf("the held push, released after the fence timed out: %v\n%s", r.Err, r.Stderr)
	}
	s.settingsUpdate(t, a, false)
	os.Remove(inside)
	os.Remove(release)

	// 2. Enable through A's API waits for the update held on C; the
	// update is released only once every gate refuses pushes (the
	// switch is committed), and when enable returns its ref is in place.
	gittest.MustGit(t, s.env, s.work, "commit", "-q", "--allow-empty", "-m", "held")
	go func() { pushed <- gittest.Git(t, s.env, s.work, "push", "-q", s.sshURL(c), "HEAD:refs/heads/main") }()
	bounded(t, "the push through C to be past its check", func() bool { _, err := os.Stat(inside); return err == nil })
	enabled := make(chan string, 1)
	go func() {
		// Not t.Fatal here: another goroutine.
		req, _ := http.NewRequest("PUT", a.http+"/api/v4/application/settings?maintenance_mode=true", nil)
		req.Header.Set("PRIVATE-TOKEN", s.token)
		resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			enabled <- "PUT settings: " + err.Error()
			return
		}
		resp.Body.Close()
		refs, _ := os.ReadFile(filepath.Join(bare, "refs", "heads", "main"))
		enabled <- fmt.Sprintf("%d %s", resp.StatusCode, refs)
	}()
	bounded(t, "gate B to refuse pushes", func() bool {
		code, _ := infoRefs(t, b, "git-receive-pack", "alice", s.token)
		return code == 403
	})
	os.WriteFile(release, nil, 0o644)
	atEnable := <-enabled
	r := <-pushed
	if r.Err != nil {
		t.Fatalf("the push already past its check when enable began: %v\n%s", r.Err, r.Stderr)
	}
	after, _ := os.ReadFile(filepath.Join(bare, "refs", "heads", "main"))
	if want := fmt.Sprintf("200 %s", after); atEnable != want {
		t.Errorf("main changed after enable returned: (status, main) at enable %q, main after the push %q", atEnable, after)
	}
	// And a push that starts now is refused by every gate.
	if r := s.push(t, s.httpURL(c)); r.Err == nil {
		t.Error("a push through C in maintenance went through")
	}
}
