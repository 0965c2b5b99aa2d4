package geoe2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/gittest"
)

// failoverSites is one primary ("old") and two secondaries ("eu", "us")
// with the secrets and geo.yaml files a planned failover needs.
type failoverSites struct {
	t               testing.TB
	work, P, EU, US string
	env, gitEnv     []string
	dev             string
	// reader (no admin) and devScoped (an admin token without the api
	// scope) are for the endpoint's refusals.
	reader, devScoped string
	primary, eu, us   *gate
	secondaryArgs     func(node, primaryURL string) []string
	geoYAML           func(dir string, nodes ...string)
	httpURL, sshURL   func(g *gate) string
	urls              map[string]string
	clones            int
	mu                sync.Mutex
}

func newFailoverSites(t testing.TB) *failoverSites {
	work := t.TempDir()
	env := gittest.Env(t)
	s := &failoverSites{t: t, work: work, env: env, P: filepath.Join(work, "old"), EU: filepath.Join(work, "eu"), US: filepath.Join(work, "us"),
		urls: map[string]string{}}
	s.gitEnv = append(env[:len(env):len(env)], "GIT_SSH_COMMAND=ssh -F /dev/null -i "+filepath.Join(work, "id_dev")+
		" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR")
	// One secret per pair: old-eu and old-us now; after the failover eu
	// shares the first with old and the second with us.
	for _, name := range []string{"eu", "us"} {
		b := make([]byte, 32)
		rand.Read(b)
		secret := []byte(hex.EncodeToString(b))
		for _, f := range []string{filepath.Join(s.P, "secrets", name+".key"), filepath.Join(s.EU, "secrets", name+".key"), filepath.Join(work, name+".key")} {
			os.MkdirAll(filepath.Dir(f), 0o750)
			if err := os.WriteFile(f, secret, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	// secretOf names the secret file a node's entry uses.
	secretOf := map[string]string{"eu": "eu", "us": "us", "old": "eu"}
	s.geoYAML = func(dir string, nodes ...string) {
		y := "secondaries:\n"
		for _, n := range nodes {
			y += "  - name: " + n + "\n    secret_file: secrets/" + secretOf[n] + ".key\n"
			if u := s.urls[n]; u != "" {
				y += "    url: " + u + "\n"
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "geo.yaml"), []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.geoYAML(s.P, "eu", "us")
	mustCLI(t, env, s.P, "repo", "create", "group/project", "--readme")
	mustCLI(t, env, s.P, "user", "add", "--admin", "dev")
	mustCLI(t, env, s.P, "access", "grant", "group/*", "--user", "dev", "--level", "write")
	s.dev = mustCLI(t, env, s.P, "token", "create", "dev")
	mustCLI(t, env, s.P, "user", "add", "reader")
	s.reader = mustCLI(t, env, s.P, "token", "create", "reader")
	s.devScoped = mustCLI(t, env, s.P, "token", "create", "dev", "--scope", "read_repository,write_repository")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dev", "-f", filepath.Join(work, "id_dev")).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	mustCLI(t, env, s.P, "user", "key", "add", "dev", "--file", filepath.Join(work, "id_dev.pub"))
	s.secondaryArgs = func(node, primaryURL string) []string {
		return []string{"--geo-role", "secondary", "--geo-primary-url", primaryURL, "--geo-node-name", node,
			"--geo-secret-file", filepath.Join(work, node+".key"), "--geo-reconcile-interval", "1s"}
	}
	s.httpURL = func(g *gate) string { return "http://dev:" + s.dev + "@" + g.http + "/group/project.git" }
	s.sshURL = func(g *gate) string { return "ssh://git@" + g.ssh + "/group/project.git" }
	s.primary = &gate{t: t, name: "old", data: s.P, env: env, logPath: filepath.Join(work, "old.log"),
		args: []string{"--geo-role", "primary", "--geo-node-name", "old", "--geo-scan-interval", "300ms"}}
	t.Cleanup(func() {
		if t.Failed() {
			for _, g := range []*gate{s.primary, s.eu, s.us} {
				if g != nil {
					t.Logf("%s log:\n%s", g.name, readFile(g.logPath))
				}
			}
		}
	})
	return s
}

// clone makes a fresh clone for one pusher.
func (s *failoverSites) clone(from *gate) string {
	s.mu.Lock()
	s.clones++
	dir := filepath.Join(s.work, fmt.Sprintf("clone%d", s.clones))
	s.mu.Unlock()
	gittest.MustGit(s.t, s.env, s.work, "clone", "-q", s.httpURL(from), dir)
	return dir
}

// push commits in dir and pushes it to branch at url.
func (s *failoverSites) push(dir string, e []string, url, branch string) gittest.Result {
	if r := gittest.Git(s.t, s.env, dir, "commit", "-q", "--allow-empty", "-m", branch); r.Err != nil {
		return r
	}
	return gittest.Git(s.t, e, dir, "push", "-q", url, "HEAD:refs/heads/"+branch)
}

// settings reads a site's maintenance state from its API.
func (s *failoverSites) maintenance(g *gate) string {
	_, body := httpGet(s.t, "http://"+g.http+"/api/v4/application/settings", "PRIVATE-TOKEN", s.dev)
	return body
}

// TestGeoPlannedFailover runs "gitgate geo failover" on a primary with two
// secondaries and pushes in flight over HTTP and SSH, at every site: a
// failover whose target is not in sync times out with the old primary in
// maintenance and still primary, and is aborted; a failover that stops at
// step 3 is resumed and completes, with no run-time restart by hand; every
// push a client was told was accepted is on the new primary; afterwards
// pushes from every site reach the new primary, every site serves the same
// refs, and the old primary restarted with its old flags follows the new
// one instead of acting as primary.
func TestGeoPlannedFailover(t *testing.T) {
	step := func(s string) { t.Logf("%s %s", time.Now().Format("05.000"), s) }
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("SKIPPING the planned Geo failover end-to-end test: ssh is not installed")
	}
	t.Parallel()
	s := newFailoverSites(t)
	env := s.env
	startGate(t, s.primary)
	t.Cleanup(s.primary.stop)
	s.eu = &gate{t: t, name: "eu", data: s.EU, env: env, logPath: filepath.Join(s.work, "eu.log"), args: s.secondaryArgs("eu", s.primary.url())}
	s.us = &gate{t: t, name: "us", data: s.US, env: env, logPath: filepath.Join(s.work, "us.log"), args: s.secondaryArgs("us", s.primary.url())}
	startGate(t, s.eu)
	t.Cleanup(s.eu.stop)
	s.urls["eu"], s.urls["us"] = s.eu.url(), "http://"+"127.0.0.1:1" // us gets its real URL once started
	s.geoYAML(s.P, "eu", "us")
	s.geoYAML(s.EU, "old") // not yet ready to lead us: step 3 waits for it
	await(t, "the first push", func() bool {
		return gittest.Git(t, env, "", "ls-remote", s.httpURL(s.primary)).Err == nil
	})
	step("old and eu started")

	// 1. A target that is not in sync (us never started): step 3 times out;
	// the old primary stays primary, in maintenance; another target is
	// refused; --abort restores the state.
	out, errs, err := cli(t, env, s.P, "geo", "failover", "--to", "us", "--timeout", "1500ms")
	if err == nil || !strings.Contains(out, "step 3/5 FAILED") || !strings.Contains(errs, "Resume: gitgate geo failover --to us") ||
		!strings.Contains(errs, "this site is still the primary") {
		t.Fatalf("failover to a target not in sync: %v\n%s\n%s", err, out, errs)
	}
	if rec, _, _ := geo.ReadRole(s.P); rec.Role != geo.RolePrimary || rec.Primary != "old" {
		t.Fatalf("the old primary's role after a timed-out failover: %+v", rec)
	}
	if !strings.Contains(s.maintenance(s.primary), `"maintenance_mode":true`) {
		t.Fatalf("maintenance off after a timed-out failover: %s", s.maintenance(s.primary))
	}
	if _, errs, err := cli(t, env, s.P, "geo", "failover", "--to", "eu"); err == nil || !strings.Contains(errs, "a failover to us is in progress") {
		t.Fatalf("a second failover to another node: %v\n%s", err, errs)
	}
	mustCLI(t, env, s.P, "geo", "failover", "--abort")
	if !strings.Contains(s.maintenance(s.primary), `"maintenance_mode":false`) {
		t.Fatalf("maintenance on after --abort: %s", s.maintenance(s.primary))
	}
	step("timed out and aborted")

	startGate(t, s.us)
	t.Cleanup(s.us.stop)
	s.urls["us"] = s.us.url()
	s.geoYAML(s.P, "eu", "us")

	// 2. Pushes in flight at every door when the failover starts.
	type pusher struct {
		name, url string
		env       []string
		dir       string
		accepted  map[string]bool
		refused   []string
	}
	var pushers []*pusher
	for _, g := range []*gate{s.primary, s.eu, s.us} {
		pushers = append(pushers,
			&pusher{name: g.name + "-http", url: s.httpURL(g), env: env},
			&pusher{name: g.name + "-ssh", url: s.sshURL(g), env: s.gitEnv})
	}
	for _, p := range pushers {
		p.dir, p.accepted = s.clone(s.primary), map[string]bool{}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				select {
				case <-stop:
					return
				default:
				}
				branch := fmt.Sprintf("%s-%d", p.name, i)
				r := s.push(p.dir, p.env, p.url, branch)
				s.mu.Lock()
				if r.Err == nil {
					p.accepted[branch] = true
				} else {
					p.refused = append(p.refused, r.Stderr)
				}
				s.mu.Unlock()
			}
		}()
	}
	await(t, "every pusher had a push accepted", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, p := range pushers {
			if len(p.accepted) == 0 {
				return false
			}
		}
		return true
	})
	step("pushers running")

	// 3. eu's geo.yaml does not list us yet: step 3 times out; then it does,
	// and the same command resumes and completes.
	// Over HTTP the failover is for admins with the api scope alone,
	// with GitLab's answers; an admin's dry run there is the CLI's.
	askFailover := func(token string) string {
		req, _ := http.NewRequest(http.MethodPost, s.primary.url()+geo.FailoverPath, strings.NewReader("to=eu"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if token != "" {
			req.Header.Set("PRIVATE-TOKEN", token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return fmt.Sprintf("%d %s", resp.StatusCode, body)
	}
	for _, c := range []struct{ token, want string }{
		{"", `401 {"message":"401 Unauthorized"}`},
		{s.reader, `403 {"message":"403 Forbidden"}`},
		{s.devScoped, `403 {"error":"insufficient_scope"`},
	} {
		if got := askFailover(c.token); !strings.HasPrefix(got, c.want) {
			t.Fatalf("failover over HTTP with token %q: %s, want %s", c.token, got, c.want)
		}
	}
	out, errs, err = cli(t, env, s.P, "geo", "failover", "--to", "eu", "--dry-run", "--url", s.primary.url(), "--token", s.dev)
	if err != nil || !strings.Contains(out, "blocks step 3: eu's geo.yaml does not list us") {
		t.Fatalf("dry run over HTTP: %v\n%s\n%s", err, out, errs)
	}
	if st := mustCLI(t, env, s.P, "maintenance", "status"); !strings.Contains(st, "maintenance mode: disabled") {
		t.Fatalf("refused and dry runs changed the state:\n%s", st)
	}

	out, errs, err = cli(t, env, s.P, "geo", "failover", "--to", "eu", "--dry-run")
	t.Logf("geo failover --dry-run:\n%s%s", out, errs)
	if err != nil || !strings.Contains(out, "blocks step 3: eu's geo.yaml does not list us") {
		t.Fatalf("dry run: %v\n%s\n%s", err, out, errs)
	}
	out, errs, err = cli(t, env, s.P, "geo", "failover", "--to", "eu", "--timeout", "2s", "--message", "Failover to eu")
	t.Logf("geo failover, stopped:\n%s%s", out, errs)
	if err == nil || !strings.Contains(out, "step 1/5 done") || !strings.Contains(out, "step 2/5 done") ||
		!strings.Contains(errs, "geo.yaml does not list us") {
		t.Fatalf("failover with eu not ready: %v\n%s\n%s", err, out, errs)
	}
	close(stop)
	wg.Wait()
	for _, p := range pushers {
		for _, e := range p.refused {
			if !strings.Contains(e, gitgate.MaintenanceMessage) {
				t.Errorf("%s: a push refused without the maintenance message:\n%s", p.name, e)
			}
		}
	}
	step("drained, stopped at step 3")
	s.geoYAML(s.EU, "old", "us")
	out = mustCLI(t, env, s.P, "geo", "failover", "--to", "eu", "--timeout", "30s")
	t.Logf("geo failover:\n%s", out)
	for _, want := range []string{"resuming the failover to eu at step 3", "step 3/5 done", "step 4/5 done", "switching roles", "step 5/5 done",
		"eu is the primary in epoch 1 (primary eu)"} {
		if !strings.Contains(out, want) {
			t.Fatalf("failover output lacks %q:\n%s", want, out)
		}
	}
	step("failover done")

	// Every accepted push is on the new primary.
	euRefs := gittest.MustGit(t, env, "", "--git-dir", filepath.Join(s.EU, "repositories", "group", "project.git"), "for-each-ref", "--format=%(refname)") + "\n"
	for _, p := range pushers {
		for b := range p.accepted {
			if !strings.Contains(euRefs, "refs/heads/"+b+"\n") {
				t.Errorf("accepted push %s is not on the new primary; the old primary has:\n%s", b,
					gittest.MustGit(t, env, "", "--git-dir", filepath.Join(s.P, "repositories", "group", "project.git"), "for-each-ref", "--format=%(refname)"))
			}
		}
	}
	if rec, _, _ := geo.ReadRole(s.P); rec.Role != geo.RoleSecondary || rec.Term != (geo.Term{Epoch: 1, Primary: "eu"}) || rec.Follow == nil {
		t.Fatalf("the old primary's role: %+v", rec)
	}
	if rec, _, _ := geo.ReadRole(s.US); rec.Follow == nil || rec.Follow.URL != s.eu.url() {
		t.Fatalf("us was not repointed: %+v", rec)
	}

	// Pushes from every site and door reach the new primary; every site
	// serves its refs.
	dir := s.clone(s.eu)
	var last []string
	for i, g := range []*gate{s.primary, s.eu, s.us} {
		for j, u := range []struct {
			url string
			e   []string
		}{{s.httpURL(g), env}, {s.sshURL(g), s.gitEnv}} {
			b := fmt.Sprintf("after-%d-%d", i, j)
			if r := s.push(dir, u.e, u.url, b); r.Err != nil {
				t.Fatalf("push to %s after the failover: %v\n%s", u.url, r.Err, r.Stderr)
			}
			last = append(last, b)
		}
	}
	want := lsRemote(t, env, s.httpURL(s.eu))
	if !strings.HasSuffix(want, "\n") {
		want += "\n"
	}
	for _, b := range last {
		if !strings.Contains(want, "refs/heads/"+b+"\n") {
			t.Fatalf("the new primary lacks %s", b)
		}
	}
	for _, g := range []*gate{s.primary, s.us} {
		await(t, g.name+" serves the new primary's refs", func() bool { return lsRemote(t, env, s.httpURL(g)) == want })
	}
	step("pushes everywhere")

	// The old primary restarted with its old flags: it follows eu, it does
	// not act as primary (its settings refuse a change; a push through it
	// lands on eu).
	s.primary.stop()
	startGate(t, s.primary)
	if _, errs, err := cli(t, env, s.P, "maintenance", "enable"); err == nil || !strings.Contains(errs, geo.ChangeOnPrimaryMessage) {
		t.Fatalf("maintenance enable on the restarted old primary: %v\n%s", err, errs)
	}
	var r gittest.Result
	await(t, "a push through the restarted old primary", func() bool {
		r = s.push(dir, env, s.httpURL(s.primary), "after-restart")
		return r.Err == nil
	})
	if !strings.Contains(lsRemote(t, env, s.httpURL(s.eu)), "refs/heads/after-restart\n") {
		t.Fatal("a push through the restarted old primary did not reach eu")
	}
	step("old primary restarted")
}
