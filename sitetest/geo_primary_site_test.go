package sitetest

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/internal/gittest"
	"github.com/gitgate/gitgate/internal/pgtest"
)

// geoPrimaryDirFor makes a primary gate's data dir whose geo.yaml names
// nodes, each with its secret from secrets.
func geoPrimaryDirFor(t *testing.T, secrets map[string]string, nodes ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	yaml := "secondaries:\n"
	for _, n := range nodes {
		if err := os.WriteFile(filepath.Join(dir, "secrets", n+".key"), []byte(secrets[n]+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		yaml += fmt.Sprintf("  - name: %s\n    secret_file: secrets/%s.key\n    url: http://127.0.0.1:9/%s\n", n, n, n)
	}
	if err := os.WriteFile(filepath.Join(dir, "geo.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// geoCall makes a signed Geo request of secondary node to g, as the
// secondary's follower does, and returns the status code.
func geoCall(t *testing.T, g *gate, secret, node string, claims geo.Claims, method, path, body string) int {
	t.Helper()
	auth, err := geo.Sign([]byte(secret), node, claims, 0)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(t.Context(), method, g.http+path, bytes.NewBufferString(body))
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A Geo primary site of several gates on one database: "geo status" on
// any gate shows every secondary as the site knows it (the newest contact
// any gate heard, which gate heard it, the version seen, the lag and the
// replication report), not only what that gate heard; and a secondary
// removed from geo.yaml leaves the registry only once no gate of the site
// lists it any more, never while a gate with the old geo.yaml still
// serves it. (Before, gate B's status showed eu as never seen when eu
// talked to gate A only, and registry rows stayed forever.)
func TestSiteGeoPrimaryStatusAndPrune(t *testing.T) {
	t.Parallel()
	db := pgtest.Database(t, cluster)
	mustCLI(t, db, t.TempDir(), "db", "migrate")
	repos := t.TempDir()
	gittest.BareRepoWithCommit(t, gittest.Env(t), repos, "proj")
	secrets := map[string]string{"eu": strings.Repeat("e0e0e0", 11), "asia": strings.Repeat("a5a5a5", 11)}
	flags := []string{"--geo-role", "primary", "--geo-confirm-primary", "--database-heartbeat", "200ms", "--geo-unlisted-after", "2s"}
	a := startGateIn(t, geoPrimaryDirFor(t, secrets, "asia", "eu"), "A", db, repos, flags...)
	b := startGateIn(t, geoPrimaryDirFor(t, secrets, "asia", "eu"), "B", db, repos, flags...)

	// Secondary eu talks only to gate A: a status poll at version 0, then
	// its replication report.
	if code := geoCall(t, a, secrets["eu"], "eu", geo.Claims{Scope: geo.ScopeStatus}, "GET", geo.StatusPath+"?after=0&wait=0s", ""); code != 200 {
		t.Fatalf("status poll of gate A: %d", code)
	}
	if code := geoCall(t, a, secrets["eu"], "eu", geo.Claims{Scope: geo.ScopeStatus}, "POST", geo.ReportPath,
		`{"synced": 3, "pending": 1, "failed": 0}`); code != 204 {
		t.Fatalf("report to gate A: %d", code)
	}
	// Asked of gate B: eu connected, heard by A, version 0, lag 0, the
	// report's figures; asia never heard by any gate.
	euLine := regexp.MustCompile(`(?m)^eu +true +\d{4}-\d\d-\d\dT\S+Z \(\d+s ago\) +A +0 +0 +3 +1 +0 `)
	var out string
	bounded(t, "gate B's geo status to show gate A's contact", func() bool {
		// eu polls on (B's status file is rewritten every few seconds).
		geoCall(t, a, secrets["eu"], "eu", geo.Claims{Scope: geo.ScopeStatus}, "GET", geo.StatusPath+"?after=0&wait=0s", "")
		out, _, _ = cli(t, db, b.dataDir, "geo", "status")
		return euLine.MatchString(out)
	})
	if !regexp.MustCompile(`(?m)^NODE +CONNECTED +LAST CONTACT +GATE +VERSION SEEN +LAG +SYNCED +PENDING +FAILED +OLDEST UNSYNCED$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^asia +false +never +- +0 +0 +- +- +- +-$`).MatchString(out) {
		t.Errorf("geo status of gate B:\n%s", out)
	}
	t.Logf("gitgate geo status on gate B:\n%s", out)

	// Rolling change of geo.yaml: asia is dropped. Gate C with the new
	// file starts while A and B still list asia: the row stays, for longer
	// than the bound, and "db geo-nodes --remove" refuses it.
	c := startGateIn(t, geoPrimaryDirFor(t, secrets, "eu"), "C", db, repos, flags...)
	listed := regexp.MustCompile(`(?m)^asia `)
	for range 3 { // 3 s, past the 2 s bound, C pruning every 200 ms
		time.Sleep(time.Second)
		out = mustCLI(t, db, t.TempDir(), "db", "geo-nodes")
		if !listed.MatchString(out) {
			t.Fatalf("gate C removed asia while gates A and B list it:\n%s\n%s", out, c.stderr.String())
		}
		_, errs, code := cli(t, db, t.TempDir(), "db", "geo-nodes", "--remove", "asia")
		if code == 0 || !strings.Contains(errs, "a gate of the site still lists this node in its geo.yaml") {
			t.Fatalf("db geo-nodes --remove asia while listed: exit %d\n%s", code, errs)
		}
	}
	// A and B restart with the new file (here: they stop): no gate lists
	// asia; C removes its row after the bound.
	a.stop(t)
	b.stop(t)
	bounded(t, "gate C to prune asia", func() bool {
		out = mustCLI(t, db, t.TempDir(), "db", "geo-nodes")
		return !listed.MatchString(out)
	})
	if !regexp.MustCompile(`(?m)^eu +\d{4}-\d\d-\d\dT\S+Z +A +0 +sha256:\S+ +\d{4}-`).MatchString(out) {
		t.Errorf("db geo-nodes after the prune:\n%s", out)
	}
	t.Logf("db geo-nodes after the prune:\n%s", out)
	if !strings.Contains(c.stderr.String(), "removed from the registry the secondaries no gate of the site lists") {
		t.Errorf("gate C did not log the prune:\n%s", c.stderr.String())
	}
}

// The gates of a Geo primary site on a database share its role and
// failover term (geo_role): a newer term a secondary presents to gate A
// demotes gate B as well, at once (NOTIFY, then a re-read), and B refuses
// pushes with the demotion's words; a gate started afterwards with a
// fresh data dir reads the demotion from the database. (Before, each gate
// kept its role in its own data dir: B went on accepting pushes.)
func TestSiteGeoRoleShared(t *testing.T) {
	t.Parallel()
	db := pgtest.Database(t, cluster)
	admin := t.TempDir()
	mustCLI(t, db, admin, "db", "migrate")
	repos := t.TempDir()
	gittest.BareRepoWithCommit(t, gittest.Env(t), repos, "proj")
	mustCLI(t, db, admin, "user", "add", "alice", "--admin")
	mustCLI(t, db, admin, "access", "grant", "proj", "--user", "alice", "--level", "write")
	token := strings.TrimSpace(mustCLI(t, db, admin, "token", "create", "alice"))
	secrets := map[string]string{"eu": strings.Repeat("e0e0e0", 11)}
	flags := []string{"--geo-role", "primary", "--geo-node-name", "us", "--geo-confirm-primary"}
	a := startGateIn(t, geoPrimaryDirFor(t, secrets, "eu"), "A", db, repos, flags...)
	b := startGateIn(t, geoPrimaryDirFor(t, secrets, "eu"), "B", db, repos, flags...)
	if code, body := infoRefs(t, b, "git-receive-pack", "alice", token); code != 200 {
		t.Fatalf("push to gate B before the demotion: %d %s", code, body)
	}

	// eu was promoted to epoch 1 and tells gate A (only).
	promoted := geo.Term{Epoch: 1, Primary: "eu"}
	if code := geoCall(t, a, secrets["eu"], "eu", geo.Claims{Scope: geo.ScopeStatus, Term: &promoted}, "GET", geo.StatusPath+"?after=0&wait=0s", ""); code != 200 {
		t.Fatalf("status poll of gate A: %d", code)
	}
	want := geo.Demoted(promoted)
	for _, g := range []*gate{a, b} {
		bounded(t, "gate "+g.name+" to refuse pushes", func() bool {
			code, body := infoRefs(t, g, "git-receive-pack", "alice", token)
			return code == 403 && strings.Contains(body, want)
		})
	}
	// A gate started now, with a data dir that never heard of it.
	b.stop(t)
	b2 := startGateIn(t, geoPrimaryDirFor(t, secrets, "eu"), "B2", db, repos, flags...)
	if code, body := infoRefs(t, b2, "git-receive-pack", "alice", token); code != 403 || !strings.Contains(body, want) {
		t.Errorf("push to a gate started after the demotion: %d %s", code, body)
	}
	out := mustCLI(t, db, b2.dataDir, "geo", "status")
	if !strings.Contains(out, "failover:         epoch 1 (primary eu), this site secondary (demoted: node eu presented epoch 1 (primary eu))") {
		t.Errorf("geo status on the new gate:\n%s", out)
	}
	t.Logf("gitgate geo status on a gate started after the demotion:\n%s", out)
}
