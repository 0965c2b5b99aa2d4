package geo_test

// End-to-end tests: two gates on loopback ports, each with its own data dir
// and repositories, driven by the real git client. The primary is an
// httpgit.Server with the Geo status endpoint and the push authenticator;
// the secondary is an httpgit.Server behind a small front handler that
// proxies the pushes its policy allows to the primary (the branch the lead
// moves into httpgit). SSH is played by the git client's ext:: transport,
// which runs this test binary as the "remote" command with the same byte
// stream an SSH exec channel carries; the binary then does what sshd will:
// ask the secondary's policy, and run ProxySSHPush or show the refusal.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/httpgit"
	"github.com/gitgate/gitgate/internal/gittest"
)

const (
	testRepo     = "group/project"
	testUser     = "alice"
	testPassword = "alice-password"
)

// users is the test's authenticator: HTTP Basic alice:alice-password, or
// anonymous.
type users struct{}

func (users) Authenticate(r *http.Request) (*gitgate.User, error) {
	name, pw, ok := r.BasicAuth()
	switch {
	case !ok:
		return nil, nil
	case name == testUser && pw == testPassword:
		return &gitgate.User{Name: testUser}, nil
	}
	return nil, errors.New("bad credentials")
}

// writers lets alice write; everyone else may read.
type writers struct{}

func (writers) Permission(u *gitgate.User, _ string) gitgate.Permission {
	if u != nil && u.Name == testUser {
		return gitgate.PermissionWrite
	}
	return gitgate.PermissionRead
}

// gitPrimary is a primary gate: smart HTTP, the Geo status endpoint, and
// pushes authenticated by Geo tokens.
type gitPrimary struct {
	*site
	root, repo string // repositories root; path of group/project.git
	addr, url  string
	primary    *geo.Primary
	srv        *httpgit.Server

	mu   sync.Mutex
	stop func()
}

func startGitPrimary(t *testing.T, env []string) *gitPrimary {
	t.Helper()
	s := newSite(t)
	p := &gitPrimary{site: s, root: filepath.Join(s.dataDir, "repositories")}
	if err := os.MkdirAll(filepath.Join(p.root, "group"), 0o755); err != nil {
		t.Fatal(err)
	}
	p.repo, _ = gittest.BareRepoWithCommit(t, env, p.root, testRepo)
	verifier := geo.NewVerifier(map[string][]byte{"eu": secretEU})
	p.primary = geo.NewPrimary(s.live, verifier, testLog())
	p.srv = newGitServer(t, s, p.root, verifier.Authenticator(users{}))
	p.srv.Handle("GET "+geo.StatusPath, p.primary.StatusHandler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.url = "http://" + p.addr
	p.serve(ln)
	t.Cleanup(p.shutdown)
	return p
}

func newGitServer(t testing.TB, s *site, root string, auth httpgit.Authenticator) *httpgit.Server {
	t.Helper()
	resolver, err := gitgate.NewResolver(root)
	if err != nil {
		t.Fatal(err)
	}
	runner, err := gitgate.NewRunner("git", s.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpgit.New(httpgit.Config{
		Policy:   &gitgate.Policy{State: s.live, Access: writers{}},
		Resolver: resolver,
		Runner:   runner,
		Auth:     auth,
		Ready:    func(context.Context) error { return s.live.Current().Err },
		Log:      testLog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func (p *gitPrimary) serve(ln net.Listener) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.srv.Serve(ctx, ln, time.Second)
	}()
	p.mu.Lock()
	p.stop = func() { cancel(); <-done }
	p.mu.Unlock()
}

// shutdown stops the primary's server (a no-op if it is stopped).
func (p *gitPrimary) shutdown() {
	p.mu.Lock()
	stop := p.stop
	p.stop = nil
	p.mu.Unlock()
	if stop != nil {
		stop()
	}
}

func (p *gitPrimary) restart(t *testing.T) {
	t.Helper()
	var ln net.Listener
	mustWaitFor(t, "the port to be free again", func() bool {
		var err error
		ln, err = net.Listen("tcp", p.addr)
		return err == nil
	})
	p.serve(ln)
}

func (p *gitPrimary) head(t *testing.T, env []string) string {
	t.Helper()
	return gittest.MustGit(t, env, p.repo, "rev-parse", "main")
}

// gitSecondary is a secondary gate following a gitPrimary.
type gitSecondary struct {
	*site
	root, url string
	opts      geo.SecondaryOptions
	follower  *runningFollower
}

func startGitSecondary(t *testing.T, env []string, p *gitPrimary) *gitSecondary {
	t.Helper()
	s := newSite(t)
	sec := &gitSecondary{site: s, root: filepath.Join(s.dataDir, "repositories")}
	// The repositories are replicated from the primary.
	if err := os.MkdirAll(filepath.Join(sec.root, "group"), 0o755); err != nil {
		t.Fatal(err)
	}
	gittest.MustGit(t, env, "", "clone", "-q", "--bare", p.repo, filepath.Join(sec.root, testRepo+".git"))
	sec.opts = followerOptions(t, p.url, secretEU)
	sec.follower = startFollower(t, sec.opts, s)

	resolver, err := gitgate.NewResolver(sec.root)
	if err != nil {
		t.Fatal(err)
	}
	git := newGitServer(t, s, sec.root, users{})
	git.Handle("GET "+geo.NodesPath, sec.follower.SelfHandler())
	front := &secondaryFront{
		git: git, follower: sec.follower.Follower, resolver: resolver, auth: users{},
		policy: &gitgate.Policy{State: s.live, Access: writers{}},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sec.url = "http://" + ln.Addr().String()
	srv := &http.Server{Handler: front, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	mustWaitFor(t, "the secondary to follow the primary", func() bool { return sec.follower.Status().Connected })
	return sec
}

// secondaryFront is the secondary's HTTP front: a push its own policy
// allows goes to the primary, everything else (reads, refusals, the API)
// to its own smart HTTP server. In gitgate this branch lives in httpgit.
type secondaryFront struct {
	git      *httpgit.Server
	follower *geo.Follower
	resolver *gitgate.Resolver
	auth     httpgit.Authenticator
	policy   *gitgate.Policy
}

func (s *secondaryFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if repo, ok := receivePackRepo(r); ok {
		user, err := s.auth.Authenticate(r)
		if err == nil && user == nil { // pushes need a user, as on GitLab
			w.Header().Set("WWW-Authenticate", `Basic realm="gitgate"`)
			http.Error(w, "HTTP Basic: Access denied", http.StatusUnauthorized)
			return
		}
		op := gitgate.Operation{Service: gitgate.ReceivePack, Repo: repo, User: user, Transport: gitgate.TransportHTTP}
		if _, d := s.policy.Open(r.Context(), s.resolver, &op); err == nil && d.Allowed() {
			s.follower.ProxyHTTPPush(w, r, user, op.Repo)
			return
		}
	}
	s.git.ServeHTTP(w, r)
}

func receivePackRepo(r *http.Request) (string, bool) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	if repo, ok := strings.CutSuffix(path, "/info/refs"); ok && r.URL.Query().Get("service") == "git-receive-pack" {
		return repo, true
	}
	return strings.CutSuffix(path, "/git-receive-pack")
}

// The SSH helper: this test binary run by git's ext:: transport.
const (
	envSSHHelper     = "GEO_TEST_SSH_HELPER"
	envHelperData    = "GEO_TEST_DATA_DIR"
	envHelperPrimary = "GEO_TEST_PRIMARY_URL"
	envHelperSecret  = "GEO_TEST_SECRET_FILE"
)

// sshEnv is the environment for git pushing over "SSH" to sec.
func (sec *gitSecondary) sshEnv(env []string) []string {
	return append(env[:len(env):len(env)],
		envSSHHelper+"=1",
		envHelperData+"="+sec.dataDir,
		envHelperPrimary+"="+sec.opts.PrimaryURL,
		envHelperSecret+"="+sec.opts.SecretFile,
		"GORACE=atexit_sleep_ms=0", // a race-enabled helper would wait a second at exit
	)
}

// sshURL is the ext:: remote that runs the helper for repo.
func sshURL(t *testing.T, repo string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return "ext::" + exe + " %S " + repo
}

// sshHelper is an SSH session of user alice on the secondary: it asks the
// secondary's policy, as sshd does, then proxies the push or shows the
// refusal as gitlab-shell does.
func sshHelper() int {
	if len(os.Args) != 3 || os.Args[1] != "git-receive-pack" {
		fmt.Fprintln(os.Stderr, "remote: ERROR: Disallowed command.")
		return 128
	}
	dataDir := os.Getenv(envHelperData)
	store := gitgate.NewFileStore(dataDir)
	live := gitgate.NewLiveState(store, slog.New(slog.DiscardHandler))
	live.Reload()
	resolver, err := gitgate.NewResolver(filepath.Join(dataDir, "repositories"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "remote: ERROR:", err)
		return 1
	}
	user := &gitgate.User{Name: testUser}
	policy := &gitgate.Policy{State: live, Access: writers{}}
	op := gitgate.Operation{Service: gitgate.ReceivePack, Repo: os.Args[2], User: user, Transport: gitgate.TransportSSH}
	repo, d := policy.Open(context.Background(), resolver, &op)
	if r := d.Refusal(); r != nil {
		return showRefusal(r)
	}
	f, err := geo.NewFollower(geo.SecondaryOptions{
		PrimaryURL: os.Getenv(envHelperPrimary), NodeName: "eu", SecretFile: os.Getenv(envHelperSecret),
	}, store, live, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintln(os.Stderr, "remote: ERROR:", err)
		return 1
	}
	err = f.ProxySSHPush(context.Background(), user, repo.Name, os.Getenv("GIT_PROTOCOL"), os.Stdin, os.Stdout)
	var r *gitgate.Refusal
	switch {
	case errors.As(err, &r):
		return showRefusal(r)
	case err != nil:
		fmt.Fprintln(os.Stderr, "remote: ERROR:", err)
		return 1
	}
	return 0
}

// showRefusal prints a refusal as sshd does: GitLab's box for maintenance,
// one line for the rest.
func showRefusal(r *gitgate.Refusal) int {
	if r.Kind == gitgate.RefusedMaintenance || r.Kind == gitgate.RefusedStateUnavailable {
		fmt.Fprint(os.Stderr, maintenanceBox(r.Message))
	} else {
		fmt.Fprintln(os.Stderr, "remote: ERROR: "+r.Message)
	}
	return 1
}

func maintenanceBox(msg string) string {
	rule := strings.Repeat("=", 72)
	var b strings.Builder
	for _, line := range []string{"", rule, "", msg, "", rule, ""} {
		b.WriteString("remote: " + line + "\n")
	}
	return b.String()
}

// workClone clones the repository from the secondary (reads are served
// there) and adds a commit.
func workClone(t *testing.T, env []string, sec *gitSecondary) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "work")
	gittest.MustGit(t, env, "", "clone", "-q", sec.url+"/"+testRepo+".git", dir)
	commit(t, env, dir, "first change")
	return dir
}

func commit(t *testing.T, env []string, dir, msg string) string {
	t.Helper()
	gittest.MustGit(t, env, dir, "commit", "-q", "--allow-empty", "-m", msg)
	return gittest.MustGit(t, env, dir, "rev-parse", "HEAD")
}

// httpPushURL is the secondary's URL with alice's credentials.
func (sec *gitSecondary) httpPushURL() string {
	return strings.Replace(sec.url, "http://", "http://"+testUser+":"+testPassword+"@", 1) + "/" + testRepo + ".git"
}

func push(t *testing.T, env []string, dir, url string, args ...string) gittest.Result {
	t.Helper()
	return gittest.Git(t, env, dir, append([]string{"-c", "protocol.ext.allow=always", "push", url}, args...)...)
}

func TestPushToSecondaryRefusedWhilePrimaryInMaintenance(t *testing.T) {
	env := gittest.Env(t)
	p := startGitPrimary(t, env)
	sec := startGitSecondary(t, env, p)
	work := workClone(t, env, sec)
	before := p.head(t, env)

	on := p.set(t, true)
	sec.waitVersion(t, on.Version)

	r := push(t, env, work, sec.httpPushURL(), "main")
	if r.Err == nil || !strings.Contains(r.Stderr, "remote: "+gitgate.MaintenanceMessage+"\n") ||
		!strings.Contains(r.Stderr, "The requested URL returned error: 403") {
		t.Errorf("HTTP push to the secondary in maintenance: %v\n%s", r.Err, r.Stderr)
	}
	r = push(t, sec.sshEnv(env), work, sshURL(t, testRepo), "main")
	if r.Err == nil || !strings.Contains(r.Stderr, maintenanceBox(gitgate.MaintenanceMessage)) ||
		!strings.Contains(r.Stderr, "fatal: Could not read from remote repository.") {
		t.Errorf("SSH push to the secondary in maintenance: %v\n%s", r.Err, r.Stderr)
	}
	if got := p.head(t, env); got != before {
		t.Errorf("the primary's main moved to %s", got)
	}
	// Reads go on on the secondary.
	gittest.MustGit(t, env, work, "fetch", "-q", sec.url+"/"+testRepo+".git")
}

func TestPushThroughSecondaryLandsOnPrimary(t *testing.T) {
	env := gittest.Env(t)
	p := startGitPrimary(t, env)
	sec := startGitSecondary(t, env, p)
	work := workClone(t, env, sec)

	// Maintenance on and off again: the secondary follows both ways.
	sec.waitVersion(t, p.set(t, true).Version)
	sec.waitVersion(t, p.set(t, false).Version)

	head := gittest.MustGit(t, env, work, "rev-parse", "HEAD")
	if r := push(t, env, work, sec.httpPushURL(), "main"); r.Err != nil {
		t.Fatalf("HTTP push through the secondary: %v\n%s", r.Err, r.Stderr)
	}
	if got := p.head(t, env); got != head {
		t.Fatalf("primary's main is %s after the HTTP push, want %s", got, head)
	}

	sshEnv, url := sec.sshEnv(env), sshURL(t, testRepo)
	head = commit(t, env, work, "over ssh")
	if r := push(t, sshEnv, work, url, "main"); r.Err != nil {
		t.Fatalf("SSH push through the secondary: %v\n%s", r.Err, r.Stderr)
	}
	if got := p.head(t, env); got != head {
		t.Fatalf("primary's main is %s after the SSH push, want %s", got, head)
	}

	// A bigger push with push options and a new branch, then nothing to
	// push, then a delete: every shape of the stream ends where it should.
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(work, fmt.Sprintf("file%d.txt", i)), []byte(strings.Repeat(fmt.Sprintf("%d\n", i), 5000)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gittest.MustGit(t, env, work, "add", ".")
	head = commit(t, env, work, "files")
	if r := push(t, sshEnv, work, url, "-o", "ci.skip", "main", "main:refs/heads/topic"); r.Err != nil {
		t.Fatalf("SSH push with options: %v\n%s", r.Err, r.Stderr)
	}
	if got := gittest.MustGit(t, env, p.repo, "rev-parse", "topic"); got != head {
		t.Fatalf("primary's topic is %s, want %s", got, head)
	}
	// Packs larger than git's HTTP post buffer (1 MiB) go chunked, after a
	// probe request: both doors stream them.
	for i, door := range []string{sec.httpPushURL(), url} {
		big := make([]byte, 3<<20)
		rand.Read(big)
		if err := os.WriteFile(filepath.Join(work, "big.bin"), big, 0o644); err != nil {
			t.Fatal(err)
		}
		gittest.MustGit(t, env, work, "add", "big.bin")
		head = commit(t, env, work, fmt.Sprintf("big %d", i))
		if r := push(t, sshEnv, work, door, "main"); r.Err != nil {
			t.Fatalf("big push to %s: %v\n%s", door, r.Err, r.Stderr)
		}
		if got := p.head(t, env); got != head {
			t.Fatalf("primary's main is %s after the big push to %s, want %s", got, door, head)
		}
	}
	if r := push(t, sshEnv, work, url, "main"); r.Err != nil || !strings.Contains(r.Stderr, "Everything up-to-date") {
		t.Fatalf("SSH push with nothing to push: %v\n%s", r.Err, r.Stderr)
	}
	if r := push(t, sshEnv, work, url, ":refs/heads/topic"); r.Err != nil {
		t.Fatalf("SSH push deleting a branch: %v\n%s", r.Err, r.Stderr)
	}
	if r := gittest.Git(t, env, p.repo, "rev-parse", "--verify", "-q", "topic"); r.Err == nil {
		t.Fatal("topic still exists on the primary")
	}
}

func TestStaleSecondaryCannotLetAPushThrough(t *testing.T) {
	env := gittest.Env(t)
	p := startGitPrimary(t, env)
	sec := startGitSecondary(t, env, p)
	work := workClone(t, env, sec)
	before := p.head(t, env)

	// The secondary stops following; the primary enters maintenance.
	sec.follower.stop()
	p.set(t, true)
	if sec.live.Current().State.Enabled {
		t.Fatal("the secondary learnt the change without following")
	}

	r := push(t, env, work, sec.httpPushURL(), "main")
	if r.Err == nil || !strings.Contains(r.Stderr, "remote: "+gitgate.MaintenanceMessage+"\n") {
		t.Errorf("HTTP push through a stale secondary: %v\n%s", r.Err, r.Stderr)
	}
	r = push(t, sec.sshEnv(env), work, sshURL(t, testRepo), "main")
	if r.Err == nil || !strings.Contains(r.Stderr, maintenanceBox(gitgate.MaintenanceMessage)) {
		t.Errorf("SSH push through a stale secondary: %v\n%s", r.Err, r.Stderr)
	}
	if got := p.head(t, env); got != before {
		t.Errorf("the primary's main moved to %s", got)
	}
}

func TestSecondaryWithPrimaryDown(t *testing.T) {
	env := gittest.Env(t)
	p := startGitPrimary(t, env)
	sec := startGitSecondary(t, env, p)
	work := workClone(t, env, sec)
	f := sec.follower

	p.shutdown()
	mustWaitFor(t, "the secondary to notice", func() bool { s := f.Status(); return !s.Connected && s.Stale > 0 })

	// Not in maintenance as far as the secondary knows: the push is tried
	// on the primary, which cannot be reached.
	r := push(t, env, work, sec.httpPushURL(), "main")
	if r.Err == nil || !strings.Contains(r.Stderr, "remote: "+geo.PrimaryUnreachableMessage+"\n") {
		t.Errorf("HTTP push with the primary down: %v\n%s", r.Err, r.Stderr)
	}
	r = push(t, sec.sshEnv(env), work, sshURL(t, testRepo), "main")
	if r.Err == nil || !strings.Contains(r.Stderr, "remote: ERROR: "+geo.PrimaryUnreachableMessage+"\n") {
		t.Errorf("SSH push with the primary down: %v\n%s", r.Err, r.Stderr)
	}

	// The admin enters maintenance on the primary while it is unreachable
	// for the secondary (the CLI writes the state file); it comes back.
	on := p.set(t, true)
	p.restart(t)
	sec.waitVersion(t, on.Version)
	mustWaitFor(t, "the secondary to report it is connected", func() bool { return f.Status().Connected })
	if r := push(t, env, work, sec.httpPushURL(), "main"); r.Err == nil || !strings.Contains(r.Stderr, gitgate.MaintenanceMessage) {
		t.Errorf("HTTP push after the primary came back in maintenance: %v\n%s", r.Err, r.Stderr)
	}
}

func TestPrimaryRefusesBadPushTokens(t *testing.T) {
	env := gittest.Env(t)
	p := startGitPrimary(t, env)
	infoRefs := p.url + "/" + testRepo + ".git/info/refs?service=git-receive-pack"
	sign := func(c geo.Claims) string {
		h, err := geo.Sign(secretEU, "eu", c, 0)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	now := time.Now()
	expired, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"node": "eu", "scope": "push", "repo": testRepo,
		"user": testUser, "iat": now.Add(-5 * time.Minute).Unix(), "exp": now.Add(-4 * time.Minute).Unix()}).SignedString(secretEU)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"node": "eu", "scope": "push", "repo": testRepo,
		"user": testUser, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}).SignedString([]byte("forged-" + testSecret))
	if err != nil {
		t.Fatal(err)
	}
	for name, auth := range map[string]string{
		"forged":           "GL-Geo eu:" + forged,
		"expired":          "GL-Geo eu:" + expired,
		"status scope":     sign(geo.Claims{Scope: geo.ScopeStatus}),
		"other repository": sign(geo.Claims{Scope: geo.ScopePush, Repo: "group/other", User: testUser}),
	} {
		if code, body := get(t, infoRefs, auth); code != http.StatusUnauthorized {
			t.Errorf("%s token: %d %s, want 401", name, code, body)
		}
	}
	// A good token, for alice: the primary's own rules apply to her.
	code, body := get(t, infoRefs, sign(geo.Claims{Scope: geo.ScopePush, Repo: testRepo, User: testUser}))
	if code != 200 || !strings.Contains(body, "report-status") {
		t.Errorf("good token: %d %.200s", code, body)
	}
	p.set(t, true)
	code, body = get(t, infoRefs, sign(geo.Claims{Scope: geo.ScopePush, Repo: testRepo, User: testUser}))
	if code != 403 || body != gitgate.MaintenanceMessage+"\n" {
		t.Errorf("good token in maintenance: %d %q", code, body)
	}
	// A push token does not open reads or the API.
	if code, _ := get(t, p.url+"/"+testRepo+".git/info/refs?service=git-upload-pack",
		sign(geo.Claims{Scope: geo.ScopePush, Repo: testRepo, User: testUser})); code != http.StatusUnauthorized {
		t.Errorf("push token on upload-pack: %d, want 401", code)
	}
}
