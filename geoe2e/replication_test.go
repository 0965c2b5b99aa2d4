package geoe2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/internal/gittest"
)

// TestGeoReplication starts one primary and two secondaries once and walks
// through what replication must do: pushes by every path reach both
// secondaries, repositories come and go, access data follows, a stopped
// secondary catches up (in maintenance too), a tampered copy is repaired,
// a fetch cut off mid-pack leaves a valid repository, and site tokens
// cannot be misused.
func TestGeoReplication(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("SKIPPING the Geo replication end-to-end test: ssh is not installed")
	}
	work := t.TempDir()
	env := gittest.Env(t)
	gitEnv := append(env[:len(env):len(env)], "GIT_SSH_COMMAND=ssh -F /dev/null -i "+filepath.Join(work, "id_dev")+
		" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR")
	P := filepath.Join(work, "primary")
	S := [2]string{filepath.Join(work, "s1"), filepath.Join(work, "s2")}
	nodes := [2]string{"eu", "us"}
	secrets := map[string][]byte{}
	os.MkdirAll(filepath.Join(P, "secrets"), 0o750)
	geoYAML := "secondaries:\n"
	for _, n := range nodes {
		b := make([]byte, 32)
		rand.Read(b)
		secret := []byte(hex.EncodeToString(b))
		secrets[n] = secret
		for _, f := range []string{filepath.Join(P, "secrets", n+".key"), filepath.Join(work, n+".key")} {
			if err := os.WriteFile(f, secret, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		geoYAML += "  - name: " + n + "\n    secret_file: secrets/" + n + ".key\n"
	}
	if err := os.WriteFile(filepath.Join(P, "geo.yaml"), []byte(geoYAML), 0o644); err != nil {
		t.Fatal(err)
	}

	// The primary's repository, users and keys; nothing is copied by hand.
	mustCLI(t, env, P, "repo", "create", "group/project", "--readme")
	mustCLI(t, env, P, "user", "add", "dev")
	mustCLI(t, env, P, "user", "add", "root", "--admin")
	mustCLI(t, env, P, "access", "grant", "group/*", "--user", "dev", "--level", "write")
	mustCLI(t, env, P, "access", "grant", "*", "--user", "dev", "--level", "write")
	dev := mustCLI(t, env, P, "token", "create", "dev")
	root := mustCLI(t, env, P, "token", "create", "root")
	gittest.MustGit(t, env, work, "version") // git works
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dev", "-f", filepath.Join(work, "id_dev")).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	mustCLI(t, env, P, "user", "key", "add", "dev", "--file", filepath.Join(work, "id_dev.pub"))

	primary := &gate{t: t, name: "primary", data: P, env: env, logPath: filepath.Join(work, "primary.log"),
		args: []string{"--geo-role", "primary", "--geo-scan-interval", "300ms"}}
	startGate(t, primary)
	t.Cleanup(primary.stop)
	// The second secondary reaches the primary through a proxy that can
	// cut a pack off.
	proxy := startCutProxy(t, primary.url())
	var secs [2]*gate
	for i := range secs {
		primaryURL := primary.url()
		if i == 1 {
			primaryURL = "http://" + proxy.addr
		}
		secs[i] = &gate{t: t, name: nodes[i], data: S[i], env: env, logPath: filepath.Join(work, nodes[i]+".log"),
			args: []string{"--geo-role", "secondary", "--geo-primary-url", primaryURL, "--geo-node-name", nodes[i],
				"--geo-secret-file", filepath.Join(work, nodes[i]+".key"), "--geo-reconcile-interval", "1s",
				"--geo-delete-delay", "1s"}}
		startGate(t, secs[i])
		t.Cleanup(secs[i].stop)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, g := range append([]*gate{primary}, secs[:]...) {
				t.Logf("%s log:\n%s", g.name, readFile(g.logPath))
			}
		}
	})

	pRepo := filepath.Join(P, "repositories", "group", "project.git")
	userURL := func(g *gate, repo string) string { return "http://dev:" + dev + "@" + g.http + "/" + repo + ".git" }
	refsOf := func(path string) string {
		return gittest.MustGit(t, env, "", "--git-dir", path, "for-each-ref", "--format=%(objectname) %(refname)")
	}
	// everywhere waits until both secondaries serve exactly the primary's
	// refs of repo (through their own gate, with a replicated token).
	everywhere := func(what, repo string) {
		t.Helper()
		want := lsRemote(t, env, userURL(primary, repo))
		if want == "" {
			t.Fatalf("%s: the primary does not serve %s", what, repo)
		}
		for _, s := range secs {
			await(t, what+" on "+s.name, func() bool { return lsRemote(t, env, userURL(s, repo)) == want })
		}
	}
	everywhere("initial sync with the access data", "group/project")

	clone := filepath.Join(work, "clone")
	gittest.MustGit(t, env, work, "clone", "-q", userURL(primary, "group/project"), clone)
	commit := func(msg string) string {
		gittest.MustGit(t, env, clone, "commit", "-q", "--allow-empty", "-m", msg)
		return gittest.MustGit(t, env, clone, "rev-parse", "HEAD")
	}

	t.Run("pushes by every path", func(t *testing.T) {
		commit("over HTTP")
		gittest.MustGit(t, env, clone, "push", "-q", "origin", "main")
		everywhere("HTTP push", "group/project")

		commit("over SSH")
		gittest.MustGit(t, gitEnv, clone, "push", "-q", "ssh://git@"+primary.ssh+"/group/project.git", "main")
		everywhere("SSH push", "group/project")

		// On the primary's disk, past the gate: the hook still sees it.
		commit("local push")
		gittest.MustGit(t, env, clone, "tag", "-a", "v1", "-m", "v1")
		gittest.MustGit(t, env, clone, "notes", "add", "-m", "a note")
		gittest.MustGit(t, env, clone, "push", "-q", pRepo, "main", "v1", "refs/notes/commits", "HEAD:refs/custom/x")
		everywhere("local push with a tag, notes and a custom ref", "group/project")
		for _, s := range secs {
			got := refsOf(filepath.Join(s.data, "repositories", "group", "project.git"))
			for _, ref := range []string{"refs/tags/v1", "refs/notes/commits", "refs/custom/x"} {
				if !strings.Contains(got, ref) {
					t.Errorf("%s lacks %s:\n%s", s.name, ref, got)
				}
			}
		}
		// HEAD follows the primary's.
		gittest.MustGit(t, env, "", "--git-dir", pRepo, "symbolic-ref", "HEAD", "refs/custom/x")
		gittest.MustGit(t, env, clone, "push", "-q", "origin", "HEAD:refs/heads/other") // an event
		for _, s := range secs {
			path := filepath.Join(s.data, "repositories", "group", "project.git")
			await(t, "HEAD on "+s.name, func() bool {
				return gittest.Git(t, env, "", "--git-dir", path, "symbolic-ref", "HEAD").Stdout == "refs/custom/x\n"
			})
		}
		gittest.MustGit(t, env, "", "--git-dir", pRepo, "symbolic-ref", "HEAD", "refs/heads/main")
		gittest.MustGit(t, env, clone, "push", "-q", "origin", ":refs/heads/other")
		everywhere("branch deleted", "group/project")
	})

	t.Run("repositories created and removed", func(t *testing.T) {
		mustCLI(t, env, P, "repo", "create", "group/new", "--readme")
		everywhere("new repository", "group/new")
		// Hooks are installed in the copy.
		for _, s := range secs {
			if _, err := os.Stat(filepath.Join(s.data, "repositories", "group", "new.git", "hooks", "reference-transaction")); err != nil {
				t.Errorf("%s: no hook in the new copy: %v", s.name, err)
			}
		}
		if err := os.RemoveAll(filepath.Join(P, "repositories", "group", "new.git")); err != nil {
			t.Fatal(err)
		}
		for _, s := range secs {
			await(t, "removed repository trashed on "+s.name, func() bool {
				_, err := os.Stat(filepath.Join(s.data, "repositories", "group", "new.git"))
				trash, _ := filepath.Glob(filepath.Join(s.data, geo.TrashDirName, "group~new.*.git"))
				return os.IsNotExist(err) && len(trash) == 1
			})
		}
	})

	t.Run("access data follows the primary and is read-only on secondaries", func(t *testing.T) {
		mustCLI(t, env, P, "user", "add", "eve")
		mustCLI(t, env, P, "access", "grant", "group/*", "--user", "eve", "--level", "read")
		eve := mustCLI(t, env, P, "token", "create", "eve")
		eveURL := func(g *gate) string { return "http://eve:" + eve + "@" + g.http + "/group/project.git" }
		for _, s := range secs {
			await(t, "eve's new token works on "+s.name, func() bool { return lsRemote(t, env, eveURL(s)) != "" })
		}
		id := strings.Fields(mustCLI(t, env, P, "token", "list", "eve"))
		var tokenID string
		for _, f := range id {
			if regexp.MustCompile(`^[0-9a-f]{8}$`).MatchString(f) {
				tokenID = f
				break
			}
		}
		mustCLI(t, env, P, "token", "revoke", "eve", tokenID)
		for _, s := range secs {
			await(t, "eve's revoked token refused on "+s.name, func() bool { return lsRemote(t, env, eveURL(s)) == "" })
		}
		_, stderr, err := cli(t, env, S[0], "user", "add", "mallory")
		if err == nil || !strings.Contains(stderr, geo.ChangeAccessOnPrimaryMessage) || !strings.Contains(stderr, primary.url()) {
			t.Errorf("user add on a secondary: err %v, stderr %q", err, stderr)
		}
	})

	t.Run("a stopped secondary catches up, also in maintenance", func(t *testing.T) {
		secs[1].stop()
		var last string
		for i := range 20 {
			last = commit(fmt.Sprintf("while us is down %d", i))
			gittest.MustGit(t, env, clone, "push", "-q", "origin", "main")
		}
		mustCLI(t, env, P, "repo", "create", "group/while-down", "--readme")
		mustCLI(t, env, P, "maintenance", "enable")
		// No push lands anywhere.
		commit("during maintenance")
		for _, g := range []*gate{primary, secs[0]} {
			r := gittest.Git(t, env, clone, "push", userURL(g, "group/project"), "main")
			if r.Err == nil || !strings.Contains(r.Stderr, "currently in (read-only) maintenance mode") {
				t.Errorf("push to %s in maintenance: %v %s", g.name, r.Err, r.Stderr)
			}
		}
		gittest.MustGit(t, env, clone, "reset", "-q", "--hard", "HEAD~1")
		startGate(t, secs[1])
		everywhere("catch-up after restart", "group/project")
		everywhere("repository created while down", "group/while-down")
		if !strings.Contains(lsRemote(t, env, userURL(secs[1], "group/project")), last) {
			t.Errorf("us lacks the last push %s", last)
		}
		r := gittest.Git(t, env, clone, "push", userURL(secs[1], "group/project"), "HEAD:refs/heads/x")
		if r.Err == nil || !strings.Contains(r.Stderr, "currently in (read-only) maintenance mode") {
			t.Errorf("push to us in maintenance: %v %s", r.Err, r.Stderr)
		}
		// The condition a planned failover waits for, on both sides.
		await(t, "us reports 0 pending, 0 failed", func() bool {
			out, _, _ := cli(t, env, S[1], "geo", "status")
			return regexp.MustCompile(`(?m)^repositories:\s+\d+ synced, 0 pending, 0 failed$`).MatchString(out) &&
				strings.Contains(out, "oldest unsynced:  none")
		})
		await(t, "the primary shows both secondaries caught up", func() bool {
			out, _, _ := cli(t, env, P, "geo", "status")
			return regexp.MustCompile(`(?m)^eu\s+true\s.*\s2\s+0\s+0\s+none$`).MatchString(out) &&
				regexp.MustCompile(`(?m)^us\s+true\s.*\s2\s+0\s+0\s+none$`).MatchString(out)
		})
		mustCLI(t, env, P, "maintenance", "disable")
	})

	t.Run("a tampered copy is repaired", func(t *testing.T) {
		path := filepath.Join(S[0], "repositories", "group", "project.git")
		before := refsOf(path)
		gittest.MustGit(t, env, "", "--git-dir", path, "update-ref", "refs/heads/main", "HEAD~3")
		gittest.MustGit(t, env, "", "--git-dir", path, "update-ref", "refs/heads/evil", "HEAD")
		await(t, "tampered refs repaired", func() bool { return refsOf(path) == before })
		if !strings.Contains(readFile(secs[0].logPath), "repository differs from the Geo primary: repairing it") {
			t.Error("the repair was not logged")
		}
	})

	t.Run("a fetch cut off mid-pack leaves a valid repository", func(t *testing.T) {
		big := make([]byte, 2<<20)
		rand.Read(big)
		if err := os.WriteFile(filepath.Join(clone, "big.bin"), big, 0o644); err != nil {
			t.Fatal(err)
		}
		gittest.MustGit(t, env, clone, "add", "big.bin")
		path := filepath.Join(S[1], "repositories", "group", "project.git")
		before := refsOf(path)
		proxy.armed.Store(true)
		gittest.MustGit(t, env, clone, "commit", "-q", "-m", "big")
		gittest.MustGit(t, env, clone, "push", "-q", "origin", "main")
		await(t, "the pack was cut", func() bool { return proxy.cuts.Load() > 0 })
		if got := refsOf(path); got != before {
			// Either untouched, or (after the retry) complete: never half.
			if !strings.Contains(got, gittest.MustGit(t, env, clone, "rev-parse", "HEAD")) {
				t.Errorf("refs changed to something else after the cut:\n%s", got)
			}
		}
		gittest.MustGit(t, env, "", "--git-dir", path, "fsck", "--no-progress")
		everywhere("retry after the cut", "group/project")
		gittest.MustGit(t, env, "", "--git-dir", path, "fsck", "--no-progress")
	})

	t.Run("site tokens cannot be misused", func(t *testing.T) {
		sign := func(node string, secret []byte, c geo.Claims) string {
			h, err := geo.Sign(secret, node, c, 0)
			if err != nil {
				t.Fatal(err)
			}
			return h
		}
		refs := primary.url() + "/group/project.git/info/refs?service=git-upload-pack"
		forged := sign("eu", []byte(strings.Repeat("x", 40)), geo.Claims{Scope: geo.ScopeReplicate, Repo: "group/project"})
		cases := []struct{ name, url, auth string }{
			{"forged signature", refs, forged},
			{"status scope", refs, sign("eu", secrets["eu"], geo.Claims{Scope: geo.ScopeStatus})},
			{"push scope", refs, sign("eu", secrets["eu"], geo.Claims{Scope: geo.ScopePush, Repo: "group/project"})},
			{"another repository", refs, sign("eu", secrets["eu"], geo.Claims{Scope: geo.ScopeReplicate, Repo: "group/while-down"})},
			{"receive-pack", primary.url() + "/group/project.git/info/refs?service=git-receive-pack",
				sign("eu", secrets["eu"], geo.Claims{Scope: geo.ScopeReplicate, Repo: "group/project"})},
			{"unknown node", refs, sign("asia", secrets["eu"], geo.Claims{Scope: geo.ScopeReplicate, Repo: "group/project"})},
			{"events, forged", primary.url() + geo.EventsPath + "?wait=0", forged},
			{"repositories, forged", primary.url() + geo.RepositoriesPath, forged},
			{"access data, forged", primary.url() + geo.AccessPath, forged},
			{"access data, replicate scope", primary.url() + geo.AccessPath, sign("eu", secrets["eu"], geo.Claims{Scope: geo.ScopeReplicate, Repo: "group/project"})},
		}
		for _, c := range cases {
			if code, body := httpGet(t, c.url, "Authorization", c.auth); code != http.StatusUnauthorized {
				t.Errorf("%s: %d %s, want 401", c.name, code, body)
			}
		}
		// A user's token does not open the access data either.
		if code, _ := httpGet(t, primary.url()+geo.AccessPath, "PRIVATE-TOKEN", root); code != http.StatusUnauthorized {
			t.Errorf("access data with an admin's token: %d, want 401", code)
		}
		// The right token works, for that repository only (control).
		good := sign("eu", secrets["eu"], geo.Claims{Scope: geo.ScopeReplicate, Repo: "group/project"})
		if code, body := httpGet(t, refs, "Authorization", good); code != http.StatusOK {
			t.Errorf("replicate token: %d %s", code, body)
		}
	})

	t.Run("status in the API, readiness and metrics", func(t *testing.T) {
		// The last push (the big one) may still be settling on a secondary.
		await(t, "nodes on the primary: both caught up", func() bool {
			code, body := httpGet(t, primary.url()+geo.NodesPath, "PRIVATE-TOKEN", root)
			return code == http.StatusOK && strings.Count(body, `"replication":{"synced":2,"pending":0,"failed":0`) == 2
		})
		await(t, "nodes on a secondary: caught up", func() bool {
			code, body := httpGet(t, secs[0].url()+geo.NodesPath, "PRIVATE-TOKEN", root)
			return code == http.StatusOK && strings.Contains(body, `"replication":{"synced":2,"pending":0,"failed":0`)
		})
		if _, body := httpGet(t, primary.url()+"/-/readiness"); !strings.Contains(body, `"replication":{`) {
			t.Errorf("readiness on the primary: %s", body)
		}
		if _, body := httpGet(t, secs[0].url()+"/-/readiness"); !strings.Contains(body, `"replication":{`) {
			t.Errorf("readiness on a secondary: %s", body)
		}
		await(t, "metrics on the primary", func() bool {
			_, body := httpGet(t, primary.url()+"/metrics")
			return strings.Contains(body, `gitgate_geo_repositories{node="us",state="synced"} 2`) &&
				strings.Contains(body, `gitgate_geo_repositories{node="eu",state="failed"} 0`) &&
				strings.Contains(body, `gitgate_geo_replication_lag_seconds{node="eu"} 0`)
		})
		_, body := httpGet(t, secs[0].url()+"/metrics")
		if !strings.Contains(body, `gitgate_geo_repositories{node="eu",state="pending"} 0`) ||
			!strings.Contains(body, `gitgate_geo_replication_lag_seconds{node="eu"} 0`) {
			t.Errorf("metrics on a secondary:\n%s", grepLines(body, "gitgate_geo_"))
		}
	})

	// Last, as it adds a repository the counts above do not expect.
	t.Run("a failing repository does not hold up the others", func(t *testing.T) {
		mustCLI(t, env, P, "repo", "create", "group/broken", "--readme")
		everywhere("new repository", "group/broken")
		// On the primary's disk: a commit whose blob is then removed, so
		// every fetch of the repository fails on the primary's side
		// (upload-pack cannot read it) until the blob is back.
		pBroken := filepath.Join(P, "repositories", "group", "broken.git")
		data := filepath.Join(work, "lost.txt")
		if err := os.WriteFile(data, []byte("lost and found\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		blob := gittest.MustGit(t, env, "", "--git-dir", pBroken, "hash-object", "-w", data)
		idx := append(slices.Clone(env), "GIT_INDEX_FILE="+filepath.Join(work, "broken.index"))
		gittest.MustGit(t, idx, "", "--git-dir", pBroken, "read-tree", "main")
		gittest.MustGit(t, idx, "", "--git-dir", pBroken, "update-index", "--add", "--cacheinfo", "100644,"+blob+",lost.txt")
		tree := gittest.MustGit(t, idx, "", "--git-dir", pBroken, "write-tree")
		c := gittest.MustGit(t, env, "", "--git-dir", pBroken, "commit-tree", tree, "-p", "main", "-m", "needs the lost blob")
		if err := os.Remove(filepath.Join(pBroken, "objects", blob[:2], blob[2:])); err != nil {
			t.Fatal(err)
		}
		gittest.MustGit(t, env, "", "--git-dir", pBroken, "update-ref", "refs/heads/main", c) // an event

		commit("while another repository fails")
		gittest.MustGit(t, env, clone, "push", "-q", "origin", "main")
		everywhere("a push while another repository fails", "group/project")
		await(t, "the broken repository counted as failed on a secondary", func() bool {
			code, body := httpGet(t, secs[0].url()+geo.NodesPath, "PRIVATE-TOKEN", root)
			return code == http.StatusOK && strings.Contains(body, `"failed":1`)
		})

		// The blob back: the retry (with backoff) completes the copy.
		gittest.MustGit(t, env, "", "--git-dir", pBroken, "hash-object", "-w", data)
		everywhere("the failed repository after its retry", "group/broken")
	})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
