package sitetest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/gittest"
	"github.com/gitgate/gitgate/internal/pgtest"
)

// get returns the status and body of a GET.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body)
}

// PostgreSQL stopped under the site: clones go on, pushes are refused with
// the clear message once the gates' view is older than the bound, readiness
// and metrics say so, and everything recovers when it is back. It stops the
// package's cluster, so it does not run in parallel with anything.
func TestSiteDatabaseDown(t *testing.T) {
	s := newSite(t, "--database-stale-after", "1s")
	b, c := s.gates[1], s.gates[2]
	if err := cluster.Kill(t.Context()); err != nil {
		t.Fatal(err)
	}
	up := false
	defer func() {
		if !up {
			_ = cluster.Restart(context.Background())
		}
	}()
	// Reads go on with the last known users and tokens.
	gittest.MustGit(t, s.env, t.TempDir(), "clone", "-q", s.httpURL(b), ".")
	bounded(t, "gate B to refuse pushes on a stale state", func() bool {
		_, body := infoRefs(t, b, "git-receive-pack", "alice", s.token)
		return strings.Contains(body, gitgate.StateUnavailableMessage)
	})
	if r := s.push(t, s.sshURL(c)); r.Err == nil || !strings.Contains(r.Stderr, "remote: "+gitgate.StateUnavailableMessage) {
		bounded(t, "gate C to refuse pushes on a stale state", func() bool {
			r = s.push(t, s.sshURL(c))
			return r.Err != nil && strings.Contains(r.Stderr, "remote: "+gitgate.StateUnavailableMessage)
		})
	}
	gittest.MustGit(t, s.env, t.TempDir(), "clone", "-q", s.sshURL(c), ".")
	if code, body := get(t, b.http+"/-/readiness"); code != http.StatusServiceUnavailable {
		t.Errorf("readiness while the database is down: %d %s", code, body)
	}
	if log := b.stderr.String(); !strings.Contains(log, "lost the shared state database") || strings.Contains(log, "password") {
		t.Errorf("gate B's log does not say the database is unreachable:\n%s", log)
	}
	if _, body := get(t, b.http+"/metrics"); !strings.Contains(body, "gitgate_database_up 0") {
		t.Errorf("metrics while the database is down lack gitgate_database_up 0")
	}

	if err := cluster.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	up = true
	for _, g := range []*gate{b, c} {
		bounded(t, "gate "+g.name+" to take pushes again", func() bool {
			code, _ := infoRefs(t, g, "git-receive-pack", "alice", s.token)
			return code == 200
		})
	}
	if r := s.push(t, s.httpURL(b)); r.Err != nil {
		t.Fatalf("push after the database came back: %v\n%s", r.Err, r.Stderr)
	}
	if code, body := get(t, b.http+"/-/readiness"); code != 200 {
		t.Errorf("readiness after recovery: %d %s", code, body)
	}
	if _, body := get(t, b.http+"/metrics"); !strings.Contains(body, "gitgate_database_up 1") {
		t.Errorf("metrics after recovery lack gitgate_database_up 1")
	}
}

// A file-based site imported into PostgreSQL behaves the same: the same
// maintenance state (version included), users and tokens; a second import
// into the non-empty database is refused unless --force.
func TestDBImport(t *testing.T) {
	files, repos := t.TempDir(), t.TempDir()
	env := gittest.Env(t)
	gittest.BareRepoWithCommit(t, env, repos, "proj")
	mustCLI(t, "", files, "user", "add", "carol", "--admin")
	mustCLI(t, "", files, "access", "grant", "proj", "--user", "carol", "--level", "write")
	token := strings.TrimSpace(mustCLI(t, "", files, "token", "create", "carol"))
	mustCLI(t, "", files, "maintenance", "enable", "--message", "moving to PostgreSQL")
	fileStatus := mustCLI(t, "", files, "maintenance", "status")

	db := pgtest.Database(t, cluster)
	other := t.TempDir()
	mustCLI(t, db, other, "db", "migrate")
	out := mustCLI(t, db, other, "db", "import", "--data-dir", files)
	if !strings.Contains(out, "maintenance enabled (version 1), access data yes, 4 audit event(s)") {
		t.Errorf("import: %s", out)
	}
	if _, errs, code := cli(t, db, other, "db", "import", "--data-dir", files); code != 1 || !strings.Contains(errs, "already holds gitgate data; refusing to overwrite it") {
		t.Errorf("second import: exit %d %s", code, errs)
	}
	mustCLI(t, db, other, "db", "import", "--data-dir", files, "--force")
	if dbStatus := mustCLI(t, db, other, "maintenance", "status"); !strings.HasPrefix(dbStatus, fileStatus) {
		t.Errorf("status after import:\n%s\nwant as from the files:\n%s", dbStatus, fileStatus)
	}

	g := startGate(t, "E", db, repos)
	req, _ := http.NewRequest("GET", g.http+"/proj.git/info/refs?service=git-receive-pack", nil)
	req.SetBasicAuth("carol", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || string(body) != gitgate.MaintenanceMessage+"\n" {
		t.Errorf("push after import: %d %q", resp.StatusCode, body)
	}
	url := strings.Replace(g.http, "http://", "http://carol:"+token+"@", 1) + "/proj.git"
	gittest.MustGit(t, env, t.TempDir(), "clone", "-q", url, ".")
}
