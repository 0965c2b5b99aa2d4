package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitgate/gitgate/access"
	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/gittest"
)

// TestAuth drives a real "gitgate serve" process, built from this module,
// with the real git client over smart HTTP, as users see it: every kind of
// user against clone, fetch and push, with and without maintenance mode, and
// the access file changed while the gate runs. Each subtest runs one gate.
func TestAuth(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	bin := e2eBinary(t)
	t.Run("Matrix", func(t *testing.T) { testAuthMatrix(t, bin) })
	t.Run("AccessFileReload", func(t *testing.T) { testAccessFileReload(t, bin) })
}

// e2eBinary builds the gitgate binary the end-to-end tests run: a real
// binary, not this test binary, because the pre-receive hooks that serve
// installs exec it. TestAuth builds it once and its subtests share it; it
// lives in TestAuth's temporary directory, so nothing is left behind (the
// build cache makes a rebuild under -count=N a link step).
func e2eBinary(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gitgate")
	cmd := exec.Command("go", "build", "-o", path, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return path
}

// e2eTool runs the built gitgate binary on one data dir.
type e2eTool struct {
	bin, data, home string
}

func newE2ETool(t *testing.T, bin string) *e2eTool {
	root := t.TempDir()
	home := filepath.Join(root, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	return &e2eTool{bin: bin, data: filepath.Join(root, "data"), home: home}
}

func (g *e2eTool) env() []string {
	env := []string{"HOME=" + g.home, "GITGATE_DATA_DIR=" + g.data, "GIT_CONFIG_NOSYSTEM=1", "LC_ALL=C"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "TMPDIR=") {
			env = append(env, kv)
		}
	}
	return env
}

// run runs "gitgate ARGS..." and returns its output and exit status.
func (g *e2eTool) run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(g.bin, args...)
	cmd.Env = g.env()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("gitgate %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

// must runs "gitgate ARGS..." and fails the test unless it succeeds; it
// returns stdout, trimmed.
func (g *e2eTool) must(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := g.run(t, args...)
	if code != 0 {
		t.Fatalf("gitgate %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return strings.TrimSpace(out)
}

// token creates an access token for user and returns its secret and id.
func (g *e2eTool) token(t *testing.T, user string, args ...string) (secret, id string) {
	t.Helper()
	out, errOut, code := g.run(t, append([]string{"token", "create", user}, args...)...)
	if code != 0 {
		t.Fatalf("token create %s: exit %d: %s", user, code, errOut)
	}
	m := regexp.MustCompile(`^Created token (\S+) for `).FindStringSubmatch(errOut)
	if m == nil {
		t.Fatalf("token create %s: no token id in stderr %q", user, errOut)
	}
	return strings.TrimSpace(out), m[1]
}

// e2eGate is a running "gitgate serve" process.
type e2eGate struct {
	*e2eTool
	httpHost string // 127.0.0.1:PORT
	sshHost  string // 127.0.0.1:PORT
	logPath  string
}

// serve starts "gitgate [globalArgs] serve" on free loopback ports and waits
// until it listens. The gate is stopped (SIGTERM, then SIGKILL) and reaped
// when the test ends.
func (g *e2eTool) serve(t *testing.T, globalArgs ...string) *e2eGate {
	t.Helper()
	logPath := filepath.Join(filepath.Dir(g.data), "gate.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := append(globalArgs, "serve", "--http-listen", "127.0.0.1:0", "--ssh-listen", "127.0.0.1:0", "--shutdown-grace", "5s")
	cmd := exec.Command(g.bin, args...)
	// Every bad credential of the matrix comes from 127.0.0.1: raise the
	// throttle so that they get their 401s (throttling has its own tests).
	cmd.Env = append(g.env(), "GITGATE_SIGNIN_MAX_FAILURES=1000")
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	hostc := make(chan [2]string, 1)
	done := make(chan error, 1)
	go func() {
		re := regexp.MustCompile(`^(http|ssh): listening on (?:http://|ssh://git@)(\S+)`)
		sc := bufio.NewScanner(stdout)
		var hosts [2]string // http, ssh: ssh is printed last
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil && m[1] == "http" {
				hosts[0] = m[2]
			} else if m != nil {
				hosts[1] = m[2]
				hostc <- hosts
			}
		}
		close(hostc)
		done <- cmd.Wait()
		logf.Close()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gate exit after SIGTERM: %v; see %s", err, logPath)
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("gate did not stop within 15s of SIGTERM")
		}
	})
	select {
	case hosts, ok := <-hostc:
		if !ok {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("gate exited before listening:\n%s", log)
		}
		return &e2eGate{e2eTool: g, httpHost: hosts[0], sshHost: hosts[1], logPath: logPath}
	case <-time.After(30 * time.Second):
		t.Fatalf("gate did not print its HTTP address within 30s")
	}
	return nil
}

// url is the clone URL of repo for user with token; user "" is anonymous.
func (g *e2eGate) url(user, token, repo string) string {
	if user == "" {
		return "http://" + g.httpHost + "/" + repo + ".git"
	}
	return "http://" + user + ":" + token + "@" + g.httpHost + "/" + repo + ".git"
}

// awaitPush polls GET info/refs?service=git-receive-pack on repo as user
// until it answers want: the gate has seen a change the CLI made. Bounded.
func (g *e2eGate) awaitPush(t *testing.T, user, token, repo string, want int) {
	t.Helper()
	u := "http://" + user + ":" + token + "@" + g.httpHost + "/" + repo + ".git/info/refs?service=git-receive-pack"
	if last, ok := awaitStatus(u, want); !ok {
		t.Fatalf("GET info/refs of %s as %s: want %d, last answer %s", repo, user, want, last)
	}
}

// awaitLog polls the gate's log until re matches it. Bounded.
func (g *e2eGate) awaitLog(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	var log []byte
	for range 1000 {
		log, _ = os.ReadFile(g.logPath)
		if m := re.Find(log); m != nil {
			return string(m)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("gate log never matched %s:\n%s", re, log)
	return ""
}

// want is what git shows for an operation, by kind.
type want int

const (
	wantOK          want = iota // exit 0, nothing on stderr (-q)
	wantNoCreds                 // 401 and git has no credentials to offer
	wantAuthFailed              // 401 for the credentials git sent
	wantNotFound                // 404
	wantForbidden               // 403, read but no write
	wantMaintenance             // 403, maintenance mode
)

func (w want) String() string {
	return [...]string{"ok", "401 (no credentials)", "401", "404", "403 forbidden", "403 maintenance"}[w]
}

// text is the exact stderr of "git clone|fetch|push -q" for w against the
// repository at base (http://host/repo.git, no credentials: git never
// shows them), and git's exit status.
func (w want) text(host, repo string) (string, int) {
	base := "http://" + host + "/" + repo + ".git/"
	switch w {
	case wantNoCreds:
		// git 2.39 with GIT_TERMINAL_PROMPT=0 and no credential helper.
		return "fatal: could not read Username for 'http://" + host + "': terminal prompts disabled\n", 128
	case wantAuthFailed:
		return "remote: HTTP Basic: Access denied\n" +
			"fatal: Authentication failed for '" + base + "'\n", 128
	case wantNotFound:
		return "remote: " + gitgate.NotFoundMessage + "\n" +
			"fatal: repository '" + base + "' not found\n", 128
	case wantForbidden:
		return "remote: You are not allowed to push code to this project.\n" +
			"fatal: unable to access '" + base + "': The requested URL returned error: 403\n", 128
	case wantMaintenance:
		return "remote: Git push is not allowed because this GitLab instance is currently in (read-only) maintenance mode.\n" +
			"fatal: unable to access '" + base + "': The requested URL returned error: 403\n", 128
	}
	return "", 0
}

// checkGit compares a git run with what w says git shows.
func checkGit(t *testing.T, r gittest.Result, w want, host, repo string) {
	t.Helper()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(r.Err, &exit):
		code = exit.ExitCode()
	case r.Err != nil:
		t.Fatalf("git: %v", r.Err)
	}
	wantStderr, wantCode := w.text(host, repo)
	if code != wantCode || r.Stderr != wantStderr {
		t.Errorf("want %s: exit %d and stderr\n%s\ngot exit %d and stderr\n%s", w, wantCode, wantStderr, code, r.Stderr)
	}
}

// refs lists every ref of a bare repository with its value.
func refs(t *testing.T, env []string, bare string) string {
	t.Helper()
	return gittest.MustGit(t, env, bare, "for-each-ref", "--format=%(refname) %(objectname)")
}

// authUser is one kind of client in the matrix.
type authUser struct {
	kind        string
	user, token string // user "": anonymous
	repo        string
	read        want // clone and fetch, with and without maintenance
	push        want // push, maintenance off
	pushMaint   want // push, maintenance on
}

func testAuthMatrix(t *testing.T, bin string) {
	g := newE2ETool(t, bin)
	g.must(t, "repo", "create", "project", "--readme")
	g.must(t, "repo", "create", "public", "--readme")
	g.must(t, "user", "add", "root", "--admin")
	for _, u := range []string{"writer", "reader", "stranger", "revoked", "expired"} {
		g.must(t, "user", "add", u)
	}
	g.must(t, "access", "grant", "project", "--user", "writer", "--level", "write")
	// Revoked and expired tokens belong to users who may read: only the
	// token is wrong.
	g.must(t, "access", "grant", "project", "--user", "reader,revoked,expired", "--level", "read")
	g.must(t, "access", "grant", "public", "--anonymous", "--level", "read")
	g.must(t, "access", "grant", "public", "--user", "writer", "--level", "write")
	rootTok, _ := g.token(t, "root")
	writerTok, _ := g.token(t, "writer")
	readerTok, _ := g.token(t, "reader")
	strangerTok, _ := g.token(t, "stranger")
	revokedTok, revokedID := g.token(t, "revoked", "--name", "doomed")
	g.must(t, "token", "revoke", "revoked", revokedID)

	// The CLI does not make tokens that are born expired, so expire one
	// through the access package, as a hand edit would.
	if _, errOut, code := g.run(t, "token", "create", "expired", "--expires", "2000-01-01"); code != 1 ||
		errOut != "gitgate: token expiry 2000-01-01T00:00:00Z is not in the future\n" {
		t.Errorf("token create --expires in the past: exit %d, stderr %q", code, errOut)
	}
	expiredTok, expiredID := g.token(t, "expired", "--expires", "2099-01-01")
	err := access.NewStore(g.data).Update(func(f *access.File) error {
		u := f.User("expired")
		for i := range u.Tokens {
			if u.Tokens[i].ID == expiredID {
				u.Tokens[i].Expires = time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
				return nil
			}
		}
		return fmt.Errorf("token %s not found", expiredID)
	})
	if err != nil {
		t.Fatal(err)
	}
	list := g.must(t, "token", "list")
	for _, re := range []string{`(?m)^revoked +` + revokedID + ` +doomed .* revoked$`, `(?m)^expired +` + expiredID + ` .* expired$`} {
		if !regexp.MustCompile(re).MatchString(list) {
			t.Errorf("token list does not match %s:\n%s", re, list)
		}
	}

	gate := g.serve(t)
	env := gittest.Env(t)
	tmp := t.TempDir()
	bare := map[string]string{}
	scratch := map[string]string{} // a working clone per repository, for fetch and push
	for _, repo := range []string{"project", "public"} {
		bare[repo] = filepath.Join(g.data, "repositories", repo+".git")
		scratch[repo] = filepath.Join(tmp, "scratch-"+repo)
		gittest.MustGit(t, env, tmp, "clone", "-q", gate.url("root", rootTok, repo), scratch[repo])
	}

	users := []authUser{
		{"admin", "root", rootTok, "project", wantOK, wantOK, wantMaintenance},
		{"writer", "writer", writerTok, "project", wantOK, wantOK, wantMaintenance},
		{"reader", "reader", readerTok, "project", wantOK, wantForbidden, wantMaintenance},
		{"user without a rule", "stranger", strangerTok, "project", wantNotFound, wantNotFound, wantNotFound},
		{"anonymous", "", "", "project", wantNoCreds, wantNoCreds, wantNoCreds},
		{"revoked token", "revoked", revokedTok, "project", wantAuthFailed, wantAuthFailed, wantAuthFailed},
		{"expired token", "expired", expiredTok, "project", wantAuthFailed, wantAuthFailed, wantAuthFailed},
		{"wrong password", "writer", "not-the-token", "project", wantAuthFailed, wantAuthFailed, wantAuthFailed},
		{"anonymous on anonymous-read repo", "", "", "public", wantOK, wantNoCreds, wantNoCreds},
	}
	// The failures of one operation (three 401s) stay below the sign-in
	// limiter's threshold, and the next operation's admin resets it.
	clones := 0
	runMatrix := func(t *testing.T, maintenance bool) {
		t.Run("clone", func(t *testing.T) {
			for _, u := range users {
				t.Run(u.kind, func(t *testing.T) {
					clones++
					dir := filepath.Join(tmp, fmt.Sprintf("clone-%d", clones))
					r := gittest.Git(t, env, tmp, "clone", "-q", gate.url(u.user, u.token, u.repo), dir)
					checkGit(t, r, u.read, gate.httpHost, u.repo)
					if u.read != wantOK {
						if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
							t.Errorf("failed clone left %s behind (%v)", dir, err)
						}
						return
					}
					if got, want := gittest.MustGit(t, env, dir, "rev-parse", "HEAD"), gittest.MustGit(t, env, bare[u.repo], "rev-parse", "main"); got != want {
						t.Errorf("cloned HEAD %s, repository main %s", got, want)
					}
					os.RemoveAll(dir)
				})
			}
		})
		t.Run("fetch", func(t *testing.T) {
			for _, u := range users {
				t.Run(u.kind, func(t *testing.T) {
					work := scratch[u.repo]
					os.Remove(filepath.Join(work, ".git", "FETCH_HEAD"))
					r := gittest.Git(t, env, work, "fetch", "-q", gate.url(u.user, u.token, u.repo), "main")
					checkGit(t, r, u.read, gate.httpHost, u.repo)
					if u.read == wantOK {
						if got, want := gittest.MustGit(t, env, work, "rev-parse", "FETCH_HEAD"), gittest.MustGit(t, env, bare[u.repo], "rev-parse", "main"); got != want {
							t.Errorf("fetched %s, repository main %s", got, want)
						}
					}
				})
			}
		})
		t.Run("push", func(t *testing.T) {
			for _, u := range users {
				t.Run(u.kind, func(t *testing.T) {
					w := u.push
					if maintenance {
						w = u.pushMaint
					}
					work := scratch[u.repo]
					gittest.MustGit(t, env, work, "commit", "-q", "--allow-empty", "-m", "push by "+u.kind)
					before := refs(t, env, bare[u.repo])
					r := gittest.Git(t, env, work, "push", "-q", gate.url(u.user, u.token, u.repo), "HEAD:refs/heads/main")
					checkGit(t, r, w, gate.httpHost, u.repo)
					after := refs(t, env, bare[u.repo])
					if w != wantOK {
						if after != before {
							t.Errorf("refused push changed refs:\nbefore %s\nafter  %s", before, after)
						}
						return
					}
					if got, want := gittest.MustGit(t, env, bare[u.repo], "rev-parse", "main"), gittest.MustGit(t, env, work, "rev-parse", "HEAD"); got != want {
						t.Errorf("after the push main is %s, pushed %s", got, want)
					}
				})
			}
		})
	}

	t.Run("maintenance off", func(t *testing.T) { runMatrix(t, false) })

	// A missing repository looks exactly like one the user may not see.
	t.Run("missing repository", func(t *testing.T) {
		r := gittest.Git(t, env, tmp, "clone", "-q", gate.url("writer", writerTok, "missing"), filepath.Join(tmp, "missing"))
		checkGit(t, r, wantNotFound, gate.httpHost, "missing")
	})

	g.must(t, "maintenance", "enable")
	gate.awaitPush(t, "writer", writerTok, "project", http.StatusForbidden)
	t.Run("maintenance on", func(t *testing.T) { runMatrix(t, true) })

	g.must(t, "maintenance", "disable")
	gate.awaitPush(t, "writer", writerTok, "project", http.StatusOK)
	t.Run("maintenance off again", func(t *testing.T) {
		work := scratch["project"]
		gittest.MustGit(t, env, work, "commit", "-q", "--allow-empty", "-m", "after maintenance")
		r := gittest.Git(t, env, work, "push", "-q", gate.url("writer", writerTok, "project"), "HEAD:refs/heads/main")
		checkGit(t, r, wantOK, gate.httpHost, "project")
	})
}

// saveAccessFile replaces the access file the way editors that write a new
// file and rename it over the old one (vim, emacs) save it.
func saveAccessFile(t *testing.T, data string, content []byte) {
	t.Helper()
	path := access.FilePath(data)
	tmp := path + ".edit"
	if err := os.WriteFile(tmp, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func testAccessFileReload(t *testing.T, bin string) {
	g := newE2ETool(t, bin)
	g.must(t, "repo", "create", "project", "--readme")
	g.must(t, "user", "add", "writer")
	g.must(t, "user", "add", "reader")
	g.must(t, "access", "grant", "project", "--user", "writer", "--level", "write")
	g.must(t, "access", "grant", "project", "--user", "reader", "--level", "read")
	writerTok, writerID := g.token(t, "writer")
	readerTok, _ := g.token(t, "reader")
	good, err := os.ReadFile(access.FilePath(g.data))
	if err != nil {
		t.Fatal(err)
	}

	gate := g.serve(t)
	env := gittest.Env(t)
	work := filepath.Join(t.TempDir(), "work")
	gittest.MustGit(t, env, filepath.Dir(work), "clone", "-q", gate.url("writer", writerTok, "project"), work)
	bare := filepath.Join(g.data, "repositories", "project.git")
	push := func(t *testing.T, user, token string, w want) {
		t.Helper()
		gittest.MustGit(t, env, work, "commit", "-q", "--allow-empty", "-m", "push by "+user)
		before := refs(t, env, bare)
		r := gittest.Git(t, env, work, "push", "-q", gate.url(user, token, "project"), "HEAD:refs/heads/main")
		checkGit(t, r, w, gate.httpHost, "project")
		if w != wantOK && refs(t, env, bare) != before {
			t.Errorf("refused push by %s changed refs", user)
		}
	}
	push(t, "writer", writerTok, wantOK)
	push(t, "reader", readerTok, wantForbidden)

	invalid := regexp.MustCompile(`(?m)^.*level=ERROR msg="access file is invalid; keeping the last good version" .*$`)

	// Valid YAML, invalid file: had it been applied, reader could push,
	// writer would be unknown.
	t.Run("unknown field", func(t *testing.T) {
		saveAccessFile(t, g.data, []byte("users:\n  - name: reader\n"+
			"rules:\n  - pattern: project\n    write: [reader]\n    colour: blue\n"))
		line := gate.awaitLog(t, invalid)
		if want := `access.yaml:6: unknown field \"colour\" in a rule"`; !strings.Contains(line, want) {
			t.Errorf("log line lacks %s:\n%s", want, line)
		}
		push(t, "writer", writerTok, wantOK)
		push(t, "reader", readerTok, wantForbidden)
	})

	// Not YAML at all. Only the form file:line is checked: for syntax
	// errors yaml.v3 gives the 0-based line of the construct it was parsing,
	// one less than the line an editor shows.
	t.Run("garbage", func(t *testing.T) {
		saveAccessFile(t, g.data, []byte("users:\n  - name: reader\nrules: [\n  {pattern: project, write: [reader]\n"))
		re := regexp.MustCompile(`(?m)^.*level=ERROR msg="access file is invalid; keeping the last good version" .*err=".*access\.yaml:\d+: [^"]*".*$`)
		for range 1000 { // wait for the second error
			if len(re.FindAll(mustRead(t, gate.logPath), -1)) == 2 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if n := len(re.FindAll(mustRead(t, gate.logPath), -1)); n != 2 {
			t.Fatalf("want 2 errors naming access.yaml:<line> in the log, got %d:\n%s", n, mustRead(t, gate.logPath))
		}
		push(t, "writer", writerTok, wantOK)
		push(t, "reader", readerTok, wantForbidden)
	})

	// Back to a valid file, then changes by the CLI take effect without a
	// restart.
	t.Run("valid edits", func(t *testing.T) {
		saveAccessFile(t, g.data, good)
		g.must(t, "user", "add", "newbie")
		newbieTok, _ := g.token(t, "newbie")
		// Wait for the reload through the log, not by polling with a token
		// the gate does not know yet: failed sign-ins are throttled.
		gate.awaitLog(t, regexp.MustCompile(`msg="access file loaded" .* users=3 tokens=3`))
		gate.awaitPush(t, "newbie", newbieTok, "project", http.StatusNotFound)
		push(t, "newbie", newbieTok, wantNotFound)
		g.must(t, "access", "grant", "project", "--user", "newbie", "--level", "write")
		gate.awaitPush(t, "newbie", newbieTok, "project", http.StatusOK)
		push(t, "newbie", newbieTok, wantOK)

		g.must(t, "token", "revoke", "writer", writerID)
		gate.awaitPush(t, "writer", writerTok, "project", http.StatusUnauthorized)
		push(t, "writer", writerTok, wantAuthFailed)
	})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
