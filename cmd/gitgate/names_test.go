package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/internal/gittest"
)

// TestRepositoryNames drives a real "gitgate serve" with the README's rules
// (group/*: anonymous read, bob write; group/secret: bob read; group/private:
// alice only) and checks, over HTTP and SSH with the real git client, that a
// repository is reached under its one name only, that a repository leading
// outside the root is not served, and that hidden, missing and aliased
// repositories answer alike.
func TestRepositoryNames(t *testing.T) {
	for _, tool := range []string{"git", "ssh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	bin := e2eBinary(t)
	g := newE2ETool(t, bin)
	for _, repo := range []string{"group/secret", "group/public", "group/private", "group/escape"} {
		g.must(t, "repo", "create", repo, "--readme")
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		g.must(t, "user", "add", u)
	}
	g.must(t, "access", "grant", "group/*", "--anonymous", "--level", "read")
	g.must(t, "access", "grant", "group/*", "--user", "bob", "--level", "write")
	g.must(t, "access", "grant", "group/secret", "--user", "bob", "--level", "read")
	g.must(t, "access", "grant", "group/private", "--user", "alice", "--level", "read")
	bobTok, _ := g.token(t, "bob")
	carolTok, _ := g.token(t, "carol")
	keys := map[string]string{"bob": g.sshKey(t, "bob"), "carol": g.sshKey(t, "carol")}

	root := filepath.Join(g.data, "repositories")
	env := gittest.Env(t)
	// Second names a file system allows: a symlink to a hidden repository,
	// and a repository whose .git gitfile leads to one outside the root.
	if err := os.Symlink("private.git", filepath.Join(root, "group", "alias.git")); err != nil {
		t.Fatal(err)
	}
	victim, victimHead := gittest.BareRepoWithCommit(t, env, t.TempDir(), "victim")
	if err := os.WriteFile(filepath.Join(root, "group", "escape.git", ".git"), []byte("gitdir: "+victim+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A push killed long ago left its quarantine behind; the gate sweeps
	// such leftovers at start.
	stale := filepath.Join(root, "group", "public.git", "objects", "tmp_objdir-incoming-Xy12Zw")
	if err := os.MkdirAll(filepath.Join(stale, "pack"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "pack", "tmp_pack_abc"), []byte("PACK"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(stale, "pack", "tmp_pack_abc"), filepath.Join(stale, "pack"), stale} {
		old := time.Now().Add(-25 * time.Hour)
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	gate := g.serve(t)
	t.Run("unserved repositories logged", func(t *testing.T) {
		gate.awaitLog(t, regexp.MustCompile(`level=WARN msg="repository not served" path=group/escape.git reason=".*reaches outside the repository root: it holds \\".git\\""`))
	})
	t.Run("stale quarantine", func(t *testing.T) {
		for range 1000 {
			if _, err := os.Stat(stale); errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Errorf("the gate left the stale push quarantine %s", stale)
	})
	tmp := t.TempDir()
	sshCmd := func(user string) string {
		return "ssh -F /dev/null -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR -i " + keys[user]
	}
	sshURL := func(repo string) string { return "ssh://git@" + gate.sshHost + "/" + repo + ".git" }
	sshEnv := func(user string) []string { return append(env[:len(env):len(env)], "GIT_SSH_COMMAND="+sshCmd(user)) }
	secret := filepath.Join(root, "group", "secret.git")
	secretHead := gittest.MustGit(t, env, secret, "rev-parse", "main")

	// Issue 10, item 1: group/secret.git.git was group/secret under the
	// group/* rule.
	t.Run("doubled .git", func(t *testing.T) {
		r := gittest.Git(t, env, tmp, "clone", "-q", "http://"+gate.httpHost+"/group/secret.git.git", filepath.Join(tmp, "stolen"))
		if r.Err == nil {
			t.Errorf("anonymous clone of group/secret.git.git succeeded")
		}
		work := filepath.Join(tmp, "bob-work")
		gittest.MustGit(t, env, tmp, "clone", "-q", gate.url("bob", bobTok, "group/secret"), work)
		gittest.MustGit(t, env, work, "commit", "-q", "--allow-empty", "-m", "bob was here")
		if r := gittest.Git(t, env, work, "push", "-q", gate.url("bob", bobTok, "group/secret"), "HEAD:main"); r.Err == nil {
			t.Errorf("bob's push to group/secret (read only) succeeded")
		}
		if r := gittest.Git(t, env, work, "push", "-q", gate.url("bob", bobTok, "group/secret.git"), "HEAD:main"); r.Err == nil {
			t.Errorf("bob's HTTP push to group/secret.git.git succeeded")
		}
		if r := gittest.Git(t, sshEnv("bob"), work, "push", "-q", sshURL("group/secret.git"), "HEAD:main"); r.Err == nil {
			t.Errorf("bob's SSH push to group/secret.git.git succeeded")
		}
		if got := gittest.MustGit(t, env, secret, "rev-parse", "main"); got != secretHead {
			t.Errorf("group/secret main moved from %s to %s", secretHead, got)
		}
	})

	// Issue 10, item 2: a .git gitfile in a repository served, and took
	// pushes into, the repository it points to.
	t.Run("escape", func(t *testing.T) {
		for _, tc := range []struct {
			transport, url string
			env            []string
		}{
			{"http", gate.url("bob", bobTok, "group/escape"), env},
			{"ssh", sshURL("group/escape"), sshEnv("bob")},
		} {
			t.Run(tc.transport, func(t *testing.T) {
				dir := filepath.Join(tmp, "escape-"+tc.transport)
				if r := gittest.Git(t, tc.env, tmp, "clone", "-q", tc.url, dir); r.Err == nil {
					t.Errorf("clone of a repository whose .git leads outside the root succeeded")
				} else if !strings.Contains(r.Stderr, "could not be found") {
					t.Errorf("clone refused, but not as not found:\n%s", r.Stderr)
				}
				work := filepath.Join(tmp, "escape-work-"+tc.transport)
				gittest.MustGit(t, env, tmp, "clone", "-q", victim, work)
				gittest.MustGit(t, env, work, "commit", "-q", "--allow-empty", "-m", "through the gate")
				if r := gittest.Git(t, tc.env, work, "push", "-q", tc.url, "HEAD:main"); r.Err == nil {
					t.Errorf("push through the escaping repository succeeded")
				}
				if got := gittest.MustGit(t, env, victim, "rev-parse", "main"); got != victimHead {
					t.Errorf("the repository outside the root moved from %s to %s", victimHead, got)
				}
			})
		}
	})

	// Issue 10, item 5: every kind of client gets one answer for missing,
	// hidden and aliased repositories, on every endpoint and transport.
	t.Run("existence oracle", func(t *testing.T) {
		names := []string{
			"group/private",   // hidden from all three
			"group/missing",   // missing, where anonymous users may read
			"group/alias",     // a symlink to the hidden repository
			"group/Private",   // another case
			"group/escape",    // refused: leads outside the root
			"nogroup/missing", // missing, where nobody may read
		}
		type client struct{ user, token string }
		clients := []client{{"", ""}, {"bob", bobTok}, {"carol", carolTok}}
		for _, c := range clients {
			for _, ep := range httpEndpoints {
				var first, firstName string
				for _, name := range names {
					got := ep.answer(t, gate.httpHost, c.user, c.token, name)
					if first == "" {
						first, firstName = got, name
						continue
					}
					if got != first {
						t.Errorf("HTTP %s as %q: %s answers\n%s\nbut %s answers\n%s", ep.name, c.user, name, got, firstName, first)
					}
				}
				want := "404 WWW-Authenticate=\"\" text/plain; charset=utf-8\nThe project you were looking for could not be found or you don't have permission to view it.\n"
				if c.user == "" {
					want = "401 WWW-Authenticate=\"Basic realm=\\\"gitgate\\\"\" text/plain; charset=utf-8\nAuthentication required: sign in with your user name and an access token.\n"
				}
				if first != want {
					t.Errorf("HTTP %s as %q: answer\n%s\nwant\n%s", ep.name, c.user, first, want)
				}
			}
			if c.user == "" {
				continue // SSH has no anonymous users
			}
			for _, svc := range []string{"git-upload-pack", "git-receive-pack", "git-upload-archive"} {
				var first, firstName string
				for _, name := range names {
					got := sshAnswer(t, gate.sshHost, keys[c.user], svc+" '"+name+".git'")
					if first == "" {
						first, firstName = got, name
						continue
					}
					if got != first {
						t.Errorf("SSH %s as %s: %s answers\n%s\nbut %s answers\n%s", svc, c.user, name, got, firstName, first)
					}
				}
				want := "exit 1\nstdout \"\"\nstderr \"remote: ERROR: The project you were looking for could not be found or you don't have permission to view it.\\n\""
				if svc == "git-receive-pack" {
					// A push from an SSH client that is not one git runs
					// (this one is Go's) is told in the Git protocol too.
					want = strings.Replace(want, `stdout ""`, `stdout "0064ERR The project you were looking for could not be found or you don't have permission to view it."`, 1)
				}
				if first != want {
					t.Errorf("SSH %s as %s: answer\n%s\nwant\n%s", svc, c.user, first, want)
				}
			}
		}
		// A doubled .git is no name at all: the same answer whether or not
		// the repository it would stand for exists.
		for _, c := range clients {
			for _, ep := range httpEndpoints {
				hidden := ep.answer(t, gate.httpHost, c.user, c.token, "group/private.git")
				missing := ep.answer(t, gate.httpHost, c.user, c.token, "group/missing.git")
				if hidden != missing {
					t.Errorf("HTTP %s as %q: group/private.git.git answers\n%s\nbut group/missing.git.git\n%s", ep.name, c.user, hidden, missing)
				}
			}
			if c.user != "" {
				hidden := sshAnswer(t, gate.sshHost, keys[c.user], "git-upload-pack 'group/private.git.git'")
				missing := sshAnswer(t, gate.sshHost, keys[c.user], "git-upload-pack 'group/missing.git.git'")
				if hidden != missing {
					t.Errorf("SSH as %s: group/private.git.git answers\n%s\nbut group/missing.git.git\n%s", c.user, hidden, missing)
				}
			}
		}
	})
}

// sshKey makes an ed25519 key for user, registers its public half, and
// returns the path of the private key file.
func (g *e2eTool) sshKey(t *testing.T, user string) string {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, user)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(g.data)
	path := filepath.Join(dir, "id_"+user)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sshPub), 0o644); err != nil {
		t.Fatal(err)
	}
	g.must(t, "user", "key", "add", user, "--file", path+".pub")
	return path
}

// httpEndpoint is one smart HTTP request a client can make for a repository.
type httpEndpoint struct {
	name, method, suffix, contentType string
}

var httpEndpoints = []httpEndpoint{
	{"info/refs upload-pack", http.MethodGet, "/info/refs?service=git-upload-pack", ""},
	{"info/refs receive-pack", http.MethodGet, "/info/refs?service=git-receive-pack", ""},
	{"POST upload-pack", http.MethodPost, "/git-upload-pack", "application/x-git-upload-pack-request"},
	{"POST receive-pack", http.MethodPost, "/git-receive-pack", "application/x-git-receive-pack-request"},
}

// answer makes the request for repo as user (token; "" for anonymous) and
// returns what a client learns from it: status, the headers that matter,
// and the body.
func (ep httpEndpoint) answer(t *testing.T, host, user, token, repo string) string {
	t.Helper()
	// A flush packet: the smallest request body git could send.
	req, err := http.NewRequest(ep.method, "http://"+host+"/"+repo+".git"+ep.suffix, strings.NewReader("0000"))
	if err != nil {
		t.Fatal(err)
	}
	if ep.contentType != "" {
		req.Header.Set("Content-Type", ep.contentType)
	}
	if user != "" {
		req.SetBasicAuth(user, token)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d WWW-Authenticate=%q %s\n%s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), resp.Header.Get("Content-Type"), body)
}

// sshAnswer runs command in an SSH session signed in with the key at
// keyPath and returns what the client learns: exit status, stdout and
// stderr. The session has 30 s.
func sshAnswer(t *testing.T, host, keyPath, command string) string {
	t.Helper()
	pemBytes, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", host, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c, chans, reqs, err := ssh.NewClientConn(conn, host, &ssh.ClientConfig{
		User:            "git",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	})
	if err != nil {
		t.Fatal(err)
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	err = sess.Run(command)
	code := 0
	var exit *ssh.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitStatus()
	case err != nil:
		t.Fatalf("ssh %s: %v", command, err)
	}
	return fmt.Sprintf("exit %d\nstdout %q\nstderr %q", code, stdout.String(), stderr.String())
}
