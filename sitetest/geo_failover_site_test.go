package sitetest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/internal/gittest"
	"github.com/gitgate/gitgate/internal/pgtest"
)

// writeGeoYAML writes dir's geo.yaml: one secondary, its secret file in
// dir/secrets (written), and its URL.
func writeGeoYAML(t *testing.T, dir, node, secret, url string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets", node+".key"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	y := "secondaries:\n  - name: " + node + "\n    secret_file: secrets/" + node + ".key\n"
	if url != "" {
		y += "    url: " + url + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "geo.yaml"), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A planned failover of a Geo primary site of two gates on one database
// ("us"), run on gate B while secondary eu follows gate A: step 3 counts
// the contacts gate A heard, the promotion order reaches eu through gate
// A, the demotion is written to the site's role record, and both gates of
// the old primary restart by themselves as secondaries of eu on the
// database; the command resumes after B's restart and finishes. A push
// through either old gate then lands on eu. (Before, "geo failover" was
// refused on a database site.)
func TestSiteGeoPlannedFailoverOfADatabasePrimary(t *testing.T) {
	t.Parallel()
	db := pgtest.Database(t, cluster)
	admin := t.TempDir()
	mustCLI(t, db, admin, "db", "migrate")
	env := gittest.Env(t)
	repos := t.TempDir()
	gittest.BareRepoWithCommit(t, env, repos, "proj")
	mustCLI(t, db, admin, "user", "add", "alice", "--admin")
	mustCLI(t, db, admin, "access", "grant", "proj", "--user", "alice", "--level", "write")
	token := strings.TrimSpace(mustCLI(t, db, admin, "token", "create", "alice"))
	secret := strings.Repeat("f41107", 11)

	dA, dB, dE := t.TempDir(), t.TempDir(), t.TempDir()
	writeGeoYAML(t, dA, "eu", secret, "")
	writeGeoYAML(t, dB, "eu", secret, "")
	flags := []string{"--geo-role", "primary", "--geo-node-name", "us", "--geo-confirm-primary",
		"--database-heartbeat", "200ms", "--geo-scan-interval", "300ms"}
	a := startGateIn(t, dA, "A", db, repos, flags...)
	b := startGateIn(t, dB, "B", db, repos, flags...)

	// eu, a site on files, follows gate A; its geo.yaml lists us (to
	// follow it once promoted) at gate A's URL.
	writeGeoYAML(t, dE, "us", secret, a.http)
	eu := startGateIn(t, dE, "eu", "", filepath.Join(dE, "repositories"), "--geo-role", "secondary",
		"--geo-primary-url", a.http, "--geo-node-name", "eu", "--geo-secret-file", filepath.Join(dE, "secrets", "us.key"),
		"--geo-reconcile-interval", "1s")
	writeGeoYAML(t, dA, "eu", secret, eu.http)
	writeGeoYAML(t, dB, "eu", secret, eu.http)

	out, errs, code := cli(t, db, dB, "geo", "failover", "--to", "eu", "--timeout", "60s")
	t.Logf("gitgate geo failover --to eu on gate B:\n%s%s", out, errs)
	if code != 0 || !strings.Contains(out, "eu is the primary in epoch 1 (primary eu)") {
		t.Fatalf("geo failover: exit %d\n%s%s\ngate A:\n%s\ngate B:\n%s\neu:\n%s", code, out, errs,
			a.stderr.String(), b.stderr.String(), eu.stderr.String())
	}
	// Gate A, which did not run the failover, learnt the demotion from the
	// database and restarted by itself; eu polled gate A only, so step 3
	// on gate B counted gate A's contacts.
	if !strings.Contains(a.stderr.String(), "a planned failover demoted this site; restarting as a secondary") {
		t.Errorf("gate A did not restart as a secondary:\n%s", a.stderr.String())
	}
	// The site's role record: demoted, following eu.
	conn, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var rec string
	if err := conn.QueryRow(t.Context(), `SELECT record::text FROM geo_role`).Scan(&rec); err != nil ||
		!regexp.MustCompile(`"epoch": 1`).MatchString(rec) || !strings.Contains(rec, `"role": "secondary"`) || !strings.Contains(rec, eu.http) {
		t.Errorf("the site's role record: %s %v", rec, err)
	}
	if r, ok, err := geo.ReadRole(dE); err != nil || !ok || r.Role != geo.RolePrimary || r.Term != (geo.Term{Epoch: 1, Primary: "eu"}) {
		t.Errorf("eu's role: %+v %v %v", r, ok, err)
	}
	// Pushes through either old gate reach eu, which reopened.
	work := t.TempDir()
	url := func(g *gate) string {
		return strings.Replace(g.http, "http://", "http://alice:"+token+"@", 1) + "/proj.git"
	}
	gittest.MustGit(t, env, work, "clone", "-q", url(eu), ".")
	for _, g := range []*gate{a, b} {
		gittest.MustGit(t, env, work, "commit", "-q", "--allow-empty", "-m", "via "+g.name)
		gittest.MustGit(t, env, work, "push", "-q", url(g), "HEAD:refs/heads/main")
		head := strings.TrimSpace(gittest.MustGit(t, env, work, "rev-parse", "HEAD"))
		if got := gittest.MustGit(t, env, work, "ls-remote", url(eu), "refs/heads/main"); !strings.HasPrefix(got, head) {
			t.Errorf("push through gate %s: eu has %q, want %s", g.name, got, head)
		}
	}
}
