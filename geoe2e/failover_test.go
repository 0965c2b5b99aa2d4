package geoe2e

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/internal/gittest"
)

// TestGeoPromotion drives the split-brain rules with the real binary: a
// restarted primary accepts no push until every secondary has confirmed
// its failover term; "geo promote" on a secondary demotes the old primary
// at once, persistently (restarted with its old role it still refuses
// pushes, even with --geo-confirm-primary and a state set by hand); the
// promoted site, restarted as primary, takes pushes from its own doors and
// through the remaining secondary once repointed, over HTTP and SSH.
func TestGeoPromotion(t *testing.T) {
	step := func(s string) { t.Logf("%s %s", time.Now().Format("05.000"), s) }
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("SKIPPING the Geo promotion end-to-end test: ssh is not installed")
	}
	t.Parallel()
	work := t.TempDir()
	env := gittest.Env(t)
	gitEnv := append(env[:len(env):len(env)], "GIT_SSH_COMMAND=ssh -F /dev/null -i "+filepath.Join(work, "id_dev")+
		" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR")
	P := filepath.Join(work, "primary")
	EU, US := filepath.Join(work, "eu"), filepath.Join(work, "us")
	writeSecret := func(name string) {
		b := make([]byte, 32)
		rand.Read(b)
		secret := []byte(hex.EncodeToString(b))
		for _, f := range []string{filepath.Join(P, "secrets", name+".key"), filepath.Join(EU, "secrets", name+".key"), filepath.Join(work, name+".key")} {
			os.MkdirAll(filepath.Dir(f), 0o750)
			if err := os.WriteFile(f, secret, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeSecret("eu")
	writeSecret("us")
	writeSecret("old") // the old primary, once it rejoins as a secondary of eu
	geoYAML := func(dir string, nodes ...string) {
		y := "secondaries:\n"
		for _, n := range nodes {
			y += "  - name: " + n + "\n    secret_file: secrets/" + n + ".key\n"
		}
		if err := os.WriteFile(filepath.Join(dir, "geo.yaml"), []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	geoYAML(P, "eu", "us")

	mustCLI(t, env, P, "repo", "create", "group/project", "--readme")
	mustCLI(t, env, P, "user", "add", "dev")
	mustCLI(t, env, P, "access", "grant", "group/*", "--user", "dev", "--level", "write")
	dev := mustCLI(t, env, P, "token", "create", "dev")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dev", "-f", filepath.Join(work, "id_dev")).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	mustCLI(t, env, P, "user", "key", "add", "dev", "--file", filepath.Join(work, "id_dev.pub"))

	primary := &gate{t: t, name: "primary", data: P, env: env, logPath: filepath.Join(work, "primary.log"),
		args: []string{"--geo-role", "primary", "--geo-scan-interval", "300ms"}}
	secondaryArgs := func(node, primaryURL string) []string {
		return []string{"--geo-role", "secondary", "--geo-primary-url", primaryURL, "--geo-node-name", node,
			"--geo-secret-file", filepath.Join(work, node+".key"), "--geo-reconcile-interval", "1s"}
	}
	step("setup")
	startGate(t, primary)
	t.Cleanup(primary.stop)
	eu := &gate{t: t, name: "eu", data: EU, env: env, logPath: filepath.Join(work, "eu.log"), args: secondaryArgs("eu", primary.url())}
	us := &gate{t: t, name: "us", data: US, env: env, logPath: filepath.Join(work, "us.log"), args: secondaryArgs("us", primary.url())}
	for _, g := range []*gate{eu, us} {
		startGate(t, g)
		t.Cleanup(g.stop)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, g := range []*gate{primary, eu, us} {
				t.Logf("%s log:\n%s", g.name, readFile(g.logPath))
			}
		}
	})

	httpURL := func(g *gate) string { return "http://dev:" + dev + "@" + g.http + "/group/project.git" }
	sshURL := func(g *gate) string { return "ssh://git@" + g.ssh + "/group/project.git" }
	clone := filepath.Join(work, "clone")
	gittest.MustGit(t, env, work, "clone", "-q", httpURL(primary), clone)
	n := 0
	// push makes a new commit on a branch of its own and pushes it.
	push := func(e []string, url string) (gittest.Result, string) {
		n++
		branch := "b" + string(rune('a'+n%26)) + hex.EncodeToString([]byte{byte(n)})
		gittest.MustGit(t, env, clone, "commit", "-q", "--allow-empty", "-m", branch)
		return gittest.Git(t, e, clone, "push", "-q", url, "HEAD:refs/heads/"+branch), branch
	}
	mustRefuse := func(what string, e []string, url, text string) {
		t.Helper()
		r, _ := push(e, url)
		if r.Err == nil || !strings.Contains(r.Stderr, text) {
			t.Fatalf("%s: push not refused with %q: %v\n%s", what, text, r.Err, r.Stderr)
		}
	}
	awaitPush := func(what string, e []string, url string) string {
		t.Helper()
		var branch string
		await(t, what, func() bool {
			var r gittest.Result
			r, branch = push(e, url)
			return r.Err == nil
		})
		return branch
	}
	step("started")
	awaitPush("first push, once both secondaries confirmed the primary", env, httpURL(primary))

	step("first push")
	// A restarted primary with a secondary down: fenced, over both doors.
	eu.stop()
	primary.stop()
	startGate(t, primary)
	mustRefuse("restarted primary, eu down (HTTP)", env, httpURL(primary), geo.FencedMessage)
	mustRefuse("restarted primary, eu down (SSH)", gitEnv, sshURL(primary), geo.FencedMessage)
	startGate(t, eu)
	last := awaitPush("push once eu is back and confirmed", gitEnv, sshURL(primary))
	await(t, "eu in sync", func() bool { return strings.Contains(lsRemote(t, env, httpURL(eu)), "refs/heads/"+last) })

	step("fence")
	// Planned by hand: maintenance, then promote eu.
	mustCLI(t, env, P, "maintenance", "enable")
	var out string
	await(t, "eu in sync, so geo promote succeeds", func() bool {
		o, _, err := cli(t, env, EU, "geo", "promote")
		out = o
		return err == nil
	})
	if !strings.Contains(out, "geo: promoted eu: epoch 1 (primary eu)") {
		t.Fatalf("geo promote printed:\n%s", out)
	}
	await(t, "the old primary demoted by eu's next poll", func() bool {
		rec, ok, err := geo.ReadRole(P)
		return err == nil && ok && rec.Role == geo.RoleSecondary && rec.Term == geo.Term{Epoch: 1, Primary: "eu"}
	})
	if _, errs, err := cli(t, env, P, "maintenance", "disable"); err == nil || !strings.Contains(errs, geo.ChangeOnPrimaryMessage) {
		t.Fatalf("maintenance disable on the demoted primary: %v\n%s", err, errs)
	}

	step("promoted")
	// The old primary restarted with its old role, the override flag, and
	// maintenance switched off behind the gate's back: still no push.
	primary.stop()
	if err := os.Remove(filepath.Join(P, geo.MarkerFileName)); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, env, P, "maintenance", "disable")
	primary.args = append(primary.args, "--geo-confirm-primary")
	startGate(t, primary)
	demoted := geo.Demoted(geo.Term{Epoch: 1, Primary: "eu"})
	mustRefuse("demoted primary restarted (HTTP)", env, httpURL(primary), demoted)
	mustRefuse("demoted primary restarted (SSH)", gitEnv, sshURL(primary), demoted)
	primary.stop()

	step("demoted restart")
	// eu becomes the primary; us, repointed, and the old primary, restarted
	// as a secondary of eu, confirm it.
	eu.stop()
	geoYAML(EU, "us", "old")
	eu.args = []string{"--geo-role", "primary", "--geo-node-name", "eu", "--geo-scan-interval", "300ms"}
	startGate(t, eu)
	mustCLI(t, env, EU, "maintenance", "disable")
	mustRefuse("new primary before us confirmed", env, httpURL(eu), geo.FencedMessage)
	us.stop()
	us.args = secondaryArgs("us", eu.url())
	startGate(t, us)
	mustRefuse("new primary before the old one rejoined", env, httpURL(eu), geo.FencedMessage)
	primary.args = secondaryArgs("old", eu.url())
	startGate(t, primary)
	step("all started")
	b1 := awaitPush("push to the new primary", env, httpURL(eu))
	r, b2 := push(env, httpURL(us))
	if r.Err != nil {
		t.Fatalf("HTTP push through us: %v\n%s", r.Err, r.Stderr)
	}
	r, b3 := push(gitEnv, sshURL(us))
	if r.Err != nil {
		t.Fatalf("SSH push through us: %v\n%s", r.Err, r.Stderr)
	}
	euRefs := gittest.MustGit(t, env, "", "--git-dir", filepath.Join(EU, "repositories", "group", "project.git"), "for-each-ref")
	for _, b := range []string{b1, b2, b3, last} {
		if !strings.Contains(euRefs, "refs/heads/"+b+"\n") {
			t.Errorf("the new primary lacks %s:\n%s", b, euRefs)
		}
	}
	step("pushed")
	r, b4 := push(gitEnv, sshURL(primary))
	if r.Err != nil {
		t.Fatalf("SSH push through the old primary, now a secondary: %v\n%s", r.Err, r.Stderr)
	}
	want := lsRemote(t, env, httpURL(eu))
	if !strings.Contains(want, "refs/heads/"+b4+"\n") {
		t.Fatalf("the new primary lacks %s:\n%s", b4, want)
	}
	for _, g := range []*gate{us, primary} {
		await(t, g.name+" serves the new primary's refs", func() bool { return lsRemote(t, env, httpURL(g)) == want })
	}
	step("all in sync")
	if rec, _, _ := geo.ReadRole(US); rec.Term != (geo.Term{Epoch: 1, Primary: "eu"}) {
		t.Errorf("us persisted %+v", rec)
	}
}
