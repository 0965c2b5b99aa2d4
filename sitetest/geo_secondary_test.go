package sitetest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/gittest"
	"github.com/gitgate/gitgate/internal/pgtest"
)

// geoLockSpace is pgstore's first key of the Geo advisory locks ("geo").
const geoLockSpace = 0x67656f

// electedGates lists the gates holding the secondary site's follower lock,
// from the database (the lock connection's application_name names them).
func electedGates(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(t.Context(), `SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objsubid = 2 AND l.granted`, int64(geoLockSpace))
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// httpDo sends method to url with alice's token and returns the status
// and body.
func httpDo(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, url, nil)
	if token != "" {
		req.Header.Set("PRIVATE-TOKEN", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body)
}

// geoSecondarySite is a file-based Geo primary with repository proj and
// user alice (admin, token, SSH key), and a secondary site of gates on one
// database and one repository directory.
type geoSecondarySite struct {
	env     []string
	token   string
	primary *gate
	db      string
	gates   map[string]*gate
}

// newGeoSecondarySite starts the primary and the secondary gates named.
func newGeoSecondarySite(t *testing.T, names []string, extra ...string) *geoSecondarySite {
	t.Helper()
	env := gittest.Env(t)
	work := t.TempDir()
	secret := strings.Repeat("5ec0da", 11)
	P := geoPrimaryDir(t, secret) // geo.yaml names eu
	pRepos := filepath.Join(P, "repositories")

	// The primary's repository, user, token and key: nothing is copied by hand.
	mustCLI(t, "", P, "repo", "create", "proj", "--readme")
	mustCLI(t, "", P, "user", "add", "alice", "--admin")
	mustCLI(t, "", P, "access", "grant", "proj", "--user", "alice", "--level", "write")
	token := strings.TrimSpace(mustCLI(t, "", P, "token", "create", "alice"))
	key := filepath.Join(work, "id_alice")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	mustCLI(t, "", P, "user", "key", "add", "alice", "--file", key+".pub")
	env = append(env, "GIT_SSH_COMMAND=ssh -F /dev/null -o IdentitiesOnly=yes -o StrictHostKeyChecking=no "+
		"-o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR -i "+key)
	primary := startGateIn(t, P, "P", "", pRepos, "--geo-role", "primary", "--geo-scan-interval", "300ms")

	// The secondary site: one database, one repository directory, gates
	// with their own data dirs and each its own copy of the secret.
	db := pgtest.Database(t, cluster)
	mustCLI(t, db, t.TempDir(), "db", "migrate")
	sRepos := t.TempDir()
	gates := map[string]*gate{}
	for _, name := range names {
		dir := t.TempDir()
		secretFile := filepath.Join(dir, "eu.key")
		if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		gates[name] = startGateIn(t, dir, name, db, sRepos, append([]string{"--geo-role", "secondary",
			"--geo-primary-url", primary.http, "--geo-node-name", "eu", "--geo-secret-file", secretFile,
			"--geo-reconcile-interval", "1s", "--database-heartbeat", "150ms"}, extra...)...)
	}
	return &geoSecondarySite{env: env, token: token, primary: primary, db: db, gates: gates}
}

func (s *geoSecondarySite) httpURL(g *gate) string {
	return strings.Replace(g.http, "http://", "http://alice:"+s.token+"@", 1) + "/proj.git"
}

func (s *geoSecondarySite) sshURL(g *gate) string { return "ssh://git@" + g.ssh + "/proj.git" }

// lsRemote returns the main branch's line of ls-remote url ("" on error).
func (s *geoSecondarySite) lsRemote(t *testing.T, url string) string {
	t.Helper()
	r := gittest.Git(t, s.env, "", "ls-remote", url, "refs/heads/main")
	return strings.TrimSpace(r.Stdout)
}

// setMaintenance changes maintenance mode on the primary, as alice.
func (s *geoSecondarySite) setMaintenance(t *testing.T, on bool) {
	t.Helper()
	if code, body := httpDo(t, "PUT", fmt.Sprintf("%s/api/v4/application/settings?maintenance_mode=%v", s.primary.http, on), s.token); code != 200 {
		t.Fatalf("maintenance %v on the primary: %d %s", on, code, body)
	}
}

// A Geo secondary site of two gates on one database and one repository
// directory follows a (file-based) primary: one gate is elected to follow
// and replicate, and the other learns the mirrored state and the
// replicated access data through the database; both enforce the primary's
// maintenance over HTTP and SSH with the exact texts, take tokens and keys
// made on the primary, refuse local changes, and hand pushes to the
// primary, which are replicated back. Killing the elected gate moves the
// lead to the other one, and mirroring and replication go on; the
// database never shows two holders of the lead. (Before, "serve
// --geo-role secondary --database-url" was refused at start.)
func TestSiteGeoSecondary(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("SKIPPING the Geo secondary site test: ssh is not installed")
	}
	t.Parallel()
	gs := newGeoSecondarySite(t, []string{"S1", "S2"})
	env, token, primary, db, gates := gs.env, gs.token, gs.primary, gs.db, gs.gates

	conn, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// Property, sampled from the database all along: never two leaders.
	sampler, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer sampler.Close(context.Background())
	var samples, twoLeaders atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for range 10000 { // bounded: 5 ms apart, ended by stopSampling
			select {
			case <-stopSampling:
				return
			case <-time.After(5 * time.Millisecond):
			}
			var n int
			if err := sampler.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
				AND classid = $1 AND objsubid = 2 AND granted`, int64(geoLockSpace)).Scan(&n); err != nil {
				return
			}
			samples.Add(1)
			if n > 1 {
				twoLeaders.Add(1)
			}
		}
	}()
	defer func() {
		close(stopSampling)
		<-sampled
		if n := twoLeaders.Load(); n > 0 {
			t.Errorf("%d of %d samples of the database showed two gates leading", n, samples.Load())
		}
	}()

	var leader string
	bounded(t, "one secondary gate to be elected", func() bool {
		names := electedGates(t, conn)
		if len(names) == 1 {
			leader = strings.TrimPrefix(names[0], "gitgate-geo-follower:")
		}
		return len(names) == 1
	})
	other := map[string]string{"S1": "S2", "S2": "S1"}[leader]
	if gates[leader] == nil {
		t.Fatalf("elected %q", leader)
	}
	lsRemote := func(url string) string { return gs.lsRemote(t, url) }
	httpURL, sshURL := gs.httpURL, gs.sshURL
	// replicated waits until both gates serve the primary's main.
	replicated := func(what string, gs ...*gate) string {
		t.Helper()
		want := lsRemote(httpURL(primary))
		if want == "" {
			t.Fatalf("%s: the primary serves no main", what)
		}
		for _, g := range gs {
			bounded(t, what+" on "+g.name, func() bool { return lsRemote(httpURL(g)) == want })
		}
		return want
	}
	// The repository and the access data (token, key) reach the site: a
	// clone with the primary's token works through both gates.
	replicated("the first replication", gates["S1"], gates["S2"])
	for _, g := range gates {
		if r := gittest.Git(t, env, "", "ls-remote", sshURL(g), "refs/heads/main"); r.Err != nil {
			t.Errorf("ls-remote over SSH through %s with the primary's key: %v\n%s", g.name, r.Err, r.Stderr)
		}
	}
	// Every gate tells the site's follower status from the database.
	for _, g := range gates {
		bounded(t, g.name+"'s status to say the site's follower is connected", func() bool {
			code, body := httpDo(t, "GET", g.http+"/metrics", "")
			return code == 200 && strings.Contains(body, "\ngitgate_geo_secondary_connected 1\n")
		})
		_, body := httpDo(t, "GET", g.http+"/metrics", "")
		want := map[bool]string{true: "1", false: "0"}[g.name == leader]
		if !strings.Contains(body, "\ngitgate_geo_secondary_elected "+want+"\n") {
			t.Errorf("%s's metrics: gitgate_geo_secondary_elected is not %s", g.name, want)
		}
		_, ready := httpDo(t, "GET", g.http+"/-/readiness", "")
		if !strings.Contains(ready, `"elected_gate":"`+leader+`"`) && g.name != leader {
			t.Errorf("%s's readiness does not name the elected gate %s: %s", g.name, leader, ready)
		}
		// Maintenance is changed on the primary only.
		code, body := httpDo(t, "PUT", g.http+"/api/v4/application/settings?maintenance_mode=true", token)
		if code != 403 || !strings.Contains(body, geo.ChangeOnPrimaryMessage) {
			t.Errorf("settings change on %s: %d %s", g.name, code, body)
		}
	}

	// The CLI on the site's database refuses local changes, whatever its
	// data dir.
	for _, args := range [][]string{{"maintenance", "enable"}, {"user", "add", "mallory", "--admin"}} {
		_, errs, code := cli(t, db, t.TempDir(), args...)
		want := map[string]string{"maintenance": geo.ChangeOnPrimaryMessage, "user": geo.ChangeAccessOnPrimaryMessage}[args[0]]
		if code == 0 || !strings.Contains(errs, want) {
			t.Errorf("gitgate %s on the secondary site's database: exit %d %s", strings.Join(args, " "), code, errs)
		}
	}
	// The local CLI of the gate that does not lead tells the site's truth.
	var status string
	bounded(t, "maintenance status on "+other+" to show the site's follower", func() bool {
		status, _, _ = cli(t, db, gates[other].dataDir, "maintenance", "status")
		return strings.Contains(status, "following:        live")
	})
	_, ready := httpDo(t, "GET", gates[other].http+"/-/readiness", "")
	_, metrics := httpDo(t, "GET", gates[other].http+"/metrics", "")
	var geoMetrics []string
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, "gitgate_geo_") {
			geoMetrics = append(geoMetrics, l)
		}
	}
	t.Logf("gitgate maintenance status on %s:\n%s\nreadiness of %s: %s\nmetrics of %s:\n%s", other, status, other, ready,
		other, strings.Join(geoMetrics, "\n"))

	clone := t.TempDir()
	gittest.MustGit(t, env, clone, "clone", "-q", httpURL(gates[other]), ".")
	push := func(url string) gittest.Result {
		gittest.MustGit(t, env, clone, "commit", "-q", "--allow-empty", "-m", "change")
		return gittest.Git(t, env, clone, "push", "-q", url, "HEAD:refs/heads/main")
	}
	// toggle changes maintenance on the primary and waits until every
	// gate given enforces it, then checks the exact texts.
	toggle := func(on bool, gates ...*gate) {
		t.Helper()
		gs.setMaintenance(t, on)
		for _, g := range gates {
			want := map[bool]int{true: 403, false: 200}[on]
			bounded(t, fmt.Sprintf("%s to follow maintenance %v", g.name, on), func() bool {
				code, _ := infoRefs(t, g, "git-receive-pack", "alice", token)
				return code == want
			})
			if !on {
				continue
			}
			code, body := infoRefs(t, g, "git-receive-pack", "alice", token)
			if code != 403 || body != gitgate.MaintenanceMessage+"\n" {
				t.Errorf("%s: info/refs for a push in maintenance: %d %q", g.name, code, body)
			}
			if r := push(sshURL(g)); r.Err == nil || !strings.Contains(r.Stderr, sshBox) {
				t.Errorf("%s: push over SSH in maintenance: %v\n%s", g.name, r.Err, r.Stderr)
			}
			if code, _ := infoRefs(t, g, "git-upload-pack", "alice", token); code != 200 {
				t.Errorf("%s: a clone in maintenance: %d", g.name, code)
			}
		}
	}
	toggle(true, gates["S1"], gates["S2"])
	toggle(false, gates["S1"], gates["S2"])

	// A push through either gate lands on the primary and comes back.
	for _, p := range []struct{ g, url string }{{other, httpURL(gates[other])}, {leader, sshURL(gates[leader])}} {
		if r := push(p.url); r.Err != nil {
			t.Fatalf("push through %s: %v\n%s", p.g, r.Err, r.Stderr)
		}
		head := strings.TrimSpace(gittest.MustGit(t, env, clone, "rev-parse", "HEAD"))
		if got := lsRemote(httpURL(primary)); !strings.HasPrefix(got, head) {
			t.Fatalf("after the push through %s the primary has %q, want %s", p.g, got, head)
		}
		replicated("the push through "+p.g, gates["S1"], gates["S2"])
	}
	if strings.Contains(gates[other].stderr.String(), "elected to follow") {
		t.Errorf("gate %s followed while %s led", other, leader)
	}

	// The elected gate dies: the other one takes the lead, and goes on
	// mirroring and replicating.
	gates[leader].kill()
	bounded(t, other+" to be elected", func() bool {
		names := electedGates(t, conn)
		return len(names) == 1 && names[0] == "gitgate-geo-follower:"+other
	})
	survivor := gates[other]
	toggle(true, survivor)
	toggle(false, survivor)
	if r := push(httpURL(survivor)); r.Err != nil {
		t.Fatalf("push through %s after the takeover: %v\n%s", other, r.Err, r.Stderr)
	}
	replicated("the push after the takeover", survivor)
	var version int64
	var stateRow string
	if err := conn.QueryRow(t.Context(), `SELECT m.version, g.gate FROM maintenance_state m, geo_secondary g`).Scan(&version, &stateRow); err != nil {
		t.Fatal(err)
	}
	if stateRow != other {
		t.Errorf("the site's follower status was last written by %q, want %s", stateRow, other)
	}
	_, pst := httpDo(t, "GET", primary.http+"/api/v4/application/settings", token)
	if want := fmt.Sprintf(`"maintenance_mode_version":%d`, version); !strings.Contains(pst, want) {
		t.Errorf("the secondary site's state version %d is not the primary's: %s", version, pst)
	}
}

// The database of a secondary site stops: the gate fails closed as on a
// primary site (clones go on; pushes are refused with the clear message
// once its view is older than --database-stale-after), the elected gate
// loses the lead with its lock's connection, and when the database is back
// a gate is elected again and the primary's changes are mirrored again.
// It stops the package's cluster, so it does not run in parallel.
func TestSiteGeoSecondaryDatabaseDown(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("SKIPPING the Geo secondary site test: ssh is not installed")
	}
	gs := newGeoSecondarySite(t, []string{"S"}, "--database-stale-after", "1s")
	g := gs.gates["S"]
	want := gs.lsRemote(t, gs.httpURL(gs.primary))
	bounded(t, "the first replication", func() bool { return gs.lsRemote(t, gs.httpURL(g)) == want })

	if err := cluster.Kill(t.Context()); err != nil {
		t.Fatal(err)
	}
	up := false
	defer func() {
		if !up {
			_ = cluster.Restart(context.Background())
		}
	}()
	gittest.MustGit(t, gs.env, t.TempDir(), "clone", "-q", gs.httpURL(g), ".")
	bounded(t, "the secondary gate to refuse pushes on a stale state", func() bool {
		_, body := infoRefs(t, g, "git-receive-pack", "alice", gs.token)
		return strings.Contains(body, gitgate.StateUnavailableMessage)
	})
	bounded(t, "the gate to lose the lead", func() bool {
		_, body := httpDo(t, "GET", g.http+"/metrics", "")
		return strings.Contains(body, "\ngitgate_geo_secondary_elected 0\n")
	})
	bounded(t, "the gate to stop reporting the site's follower as connected", func() bool {
		_, body := httpDo(t, "GET", g.http+"/metrics", "")
		return strings.Contains(body, "\ngitgate_geo_secondary_connected 0\n")
	})
	// Meanwhile the primary enters maintenance.
	gs.setMaintenance(t, true)

	if err := cluster.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	up = true
	bounded(t, "the gate to be elected again and mirror the primary's maintenance", func() bool {
		code, body := infoRefs(t, g, "git-receive-pack", "alice", gs.token)
		return code == 403 && body == gitgate.MaintenanceMessage+"\n"
	})
	gs.setMaintenance(t, false)
	bounded(t, "the gate to take pushes again", func() bool {
		code, _ := infoRefs(t, g, "git-receive-pack", "alice", gs.token)
		return code == 200
	})
}
