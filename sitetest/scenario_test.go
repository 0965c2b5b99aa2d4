package sitetest

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/gittest"
	"github.com/gitgate/gitgate/internal/pgtest"
)

// sshBox is GitLab's refusal over SSH, as the git client prints it.
var sshBox = "remote: \nremote: " + strings.Repeat("=", 72) + "\nremote: \nremote: " + gitgate.MaintenanceMessage +
	"\nremote: \nremote: " + strings.Repeat("=", 72) + "\nremote: \n"

// infoRefs asks g for the refs of proj for service, as user with secret
// (no credentials when user is empty).
func infoRefs(t *testing.T, g *gate, service, user, secret string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", g.http+"/proj.git/info/refs?service="+service, nil)
	if user != "" {
		req.SetBasicAuth(user, secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body)
}

// site is three gates on one database and one repository directory, with
// user alice (admin, token, SSH key) allowed to push to proj.
type site struct {
	db, repos, work, token, key string
	env                         []string
	gates                       []*gate
}

func newSite(t *testing.T, extra ...string) *site {
	t.Helper()
	s := &site{db: pgtest.Database(t, cluster), repos: t.TempDir(), env: gittest.Env(t)}
	admin := t.TempDir()
	mustCLI(t, s.db, admin, "db", "migrate")
	gittest.BareRepoWithCommit(t, s.env, s.repos, "proj")
	mustCLI(t, s.db, admin, "user", "add", "alice", "--admin")
	mustCLI(t, s.db, admin, "access", "grant", "proj", "--user", "alice", "--level", "write")
	s.token = strings.TrimSpace(mustCLI(t, s.db, admin, "token", "create", "alice"))
	s.key = filepath.Join(t.TempDir(), "id_alice")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", s.key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	mustCLI(t, s.db, admin, "user", "key", "add", "alice", "--file", s.key+".pub")
	for _, name := range []string{"A", "B", "C"} {
		s.gates = append(s.gates, startGate(t, name, s.db, s.repos, extra...))
	}
	s.work = t.TempDir()
	gittest.MustGit(t, s.env, s.work, "clone", "-q", s.httpURL(s.gates[0]), ".")
	s.env = append(s.env, "GIT_SSH_COMMAND=ssh -F /dev/null -o IdentitiesOnly=yes -o StrictHostKeyChecking=no "+
		"-o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR -i "+s.key)
	return s
}

func (s *site) httpURL(g *gate) string {
	return strings.Replace(g.http, "http://", "http://alice:"+s.token+"@", 1) + "/proj.git"
}

func (s *site) sshURL(g *gate) string { return "ssh://git@" + g.ssh + "/proj.git" }

// push commits and pushes to url, returning git's result.
func (s *site) push(t *testing.T, url string) gittest.Result {
	t.Helper()
	gittest.MustGit(t, s.env, s.work, "commit", "-q", "--allow-empty", "-m", "change")
	return gittest.Git(t, s.env, s.work, "push", "-q", url, "HEAD:refs/heads/main")
}

// settingsUpdate changes maintenance mode through g's API, as alice.
func (s *site) settingsUpdate(t *testing.T, g *gate, on bool) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "PUT", fmt.Sprintf("%s/api/v4/application/settings?maintenance_mode=%v", g.http, on), nil)
	req.Header.Set("PRIVATE-TOKEN", s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("PUT settings on %s: %d %s", g.name, resp.StatusCode, body)
	}
}

// A toggle through gate A's API is enforced by B and C, over HTTP and SSH,
// with the exact texts; users, keys and tokens added or removed through
// the CLI work or stop on every gate.
func TestSiteSharesStateAndAccess(t *testing.T) {
	s := newSite(t)
	a, b, c := s.gates[0], s.gates[1], s.gates[2]
	if r := s.push(t, s.sshURL(b)); r.Err != nil {
		t.Fatalf("push over SSH through B before maintenance: %v\n%s", r.Err, r.Stderr)
	}

	s.settingsUpdate(t, a, true)
	for _, g := range []*gate{b, c} {
		bounded(t, "gate "+g.name+" to refuse pushes", func() bool {
			code, _ := infoRefs(t, g, "git-receive-pack", "alice", s.token)
			return code == http.StatusForbidden
		})
		code, body := infoRefs(t, g, "git-receive-pack", "alice", s.token)
		if code != 403 || body != gitgate.MaintenanceMessage+"\n" {
			t.Errorf("gate %s: info/refs for push: %d %q", g.name, code, body)
		}
		r := s.push(t, s.httpURL(g))
		if r.Err == nil || !strings.Contains(r.Stderr, "remote: "+gitgate.MaintenanceMessage+"\n") {
			t.Errorf("HTTP push through %s in maintenance: %v\n%s", g.name, r.Err, r.Stderr)
		}
		r = s.push(t, s.sshURL(g))
		if r.Err == nil || !strings.Contains(r.Stderr, sshBox) {
			t.Errorf("SSH push through %s in maintenance: %v\n%q", g.name, r.Err, r.Stderr)
		}
		if code, _ := infoRefs(t, g, "git-upload-pack", "alice", s.token); code != 200 {
			t.Errorf("gate %s refuses a fetch in maintenance: %d", g.name, code)
		}
	}
	s.settingsUpdate(t, c, false)
	bounded(t, "gate B to take pushes again", func() bool {
		code, _ := infoRefs(t, b, "git-receive-pack", "alice", s.token)
		return code == 200
	})
	if r := s.push(t, s.sshURL(b)); r.Err != nil {
		t.Fatalf("push over SSH through B after maintenance: %v\n%s", r.Err, r.Stderr)
	}

	// A user and a token added through the CLI work on B and C...
	admin := t.TempDir()
	mustCLI(t, s.db, admin, "user", "add", "bob")
	mustCLI(t, s.db, admin, "access", "grant", "proj", "--user", "bob", "--level", "read")
	bobToken := strings.TrimSpace(mustCLI(t, s.db, admin, "token", "create", "bob"))
	for _, g := range []*gate{b, c} {
		bounded(t, "bob's token on "+g.name, func() bool {
			code, _ := infoRefs(t, g, "git-upload-pack", "bob", bobToken)
			return code == 200
		})
	}
	// ... and stop working once revoked.
	list := mustCLI(t, s.db, admin, "token", "list", "bob")
	var id string
	for _, line := range strings.Split(list, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "bob" {
			id = f[1]
		}
	}
	mustCLI(t, s.db, admin, "token", "revoke", "bob", id)
	for _, g := range []*gate{b, c} {
		bounded(t, "bob's revoked token refused on "+g.name, func() bool {
			code, _ := infoRefs(t, g, "git-upload-pack", "bob", bobToken)
			return code == http.StatusUnauthorized
		})
	}
	// Alice's SSH key removed through the CLI stops working on C.
	mustCLI(t, s.db, admin, "user", "key", "remove", "alice", "SHA256:"+fingerprint(t, s.key))
	bounded(t, "alice's removed key refused on C", func() bool {
		return gittest.Git(t, s.env, s.work, "ls-remote", s.sshURL(c)).Err != nil
	})
	// The audit log of the site holds the CLI's and the API's changes.
	status := mustCLI(t, s.db, admin, "maintenance", "status")
	if !strings.Contains(status, "maintenance mode: disabled") || !strings.Contains(status, "version:          2") {
		t.Errorf("status:\n%s", status)
	}
}

// fingerprint is the SHA256 fingerprint of a key file, without the prefix.
func fingerprint(t *testing.T, key string) string {
	out, err := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", key+".pub").Output()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out))
	return strings.TrimPrefix(f[1], "SHA256:")
}
