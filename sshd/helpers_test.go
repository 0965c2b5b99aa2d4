package sshd_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/leakcheck"
	"github.com/gitgate/gitgate/internal/syncbuf"
	"github.com/gitgate/gitgate/sshd"
)

// hostKeyTemplate holds host keys generated once for the whole package (RSA
// generation is slow); each gate gets a copy in its own data dir.
var hostKeyTemplate string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gitgate-sshd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := sshd.LoadOrCreateHostKeys(dir, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hostKeyTemplate = dir
	code := m.Run()
	os.RemoveAll(dir)
	// Every test closed its server: none of its goroutines may be left.
	if code == 0 {
		if err := leakcheck.Check(serverMarkers...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// serverMarkers pick out the goroutines running the server's code (package
// sshd or gliderlabs/ssh).
var serverMarkers = []string{"gitgate/gitgate/sshd.", "github.com/gliderlabs/ssh."}

// keyring is a KeyLookup backed by a map, as the access file will be.
type keyring struct {
	mu    sync.Mutex
	users map[string]*gitgate.User // by marshalled public key
}

func (k *keyring) UserByKey(key gossh.PublicKey) (*gitgate.User, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	u, ok := k.users[string(key.Marshal())]
	return u, ok
}

func (k *keyring) add(key gossh.PublicKey, u *gitgate.User) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.users[string(key.Marshal())] = u
}

func (k *keyring) remove(key gossh.PublicKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.users, string(key.Marshal()))
}

// grants is an Authorizer: a permission per user and repository, or per user
// for every repository ("*").
type grants struct {
	mu    sync.Mutex
	perms map[string]gitgate.Permission
}

func (g *grants) Permission(u *gitgate.User, repo string) gitgate.Permission {
	if u == nil {
		return gitgate.PermissionNone
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if p, ok := g.perms[u.Name+" "+repo]; ok {
		return p
	}
	return g.perms[u.Name+" *"]
}

func (g *grants) set(user, repo string, p gitgate.Permission) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.perms[user+" "+repo] = p
}

// gate is a running sshd.Server over a temporary data dir and repository
// root, with the real policy, resolver and runner.
type gate struct {
	t        *testing.T
	srv      *sshd.Server
	port     string
	dataDir  string
	root     string
	home     string
	keys     *keyring
	grants   *grants
	live     *gitgate.LiveState
	logs     *syncbuf.Buffer
	serveErr chan error
	stopped  bool
}

// startGate starts a server; opts adjust its configuration (limits).
func startGate(t *testing.T, opts ...func(*sshd.Config)) *gate {
	t.Helper()
	g := &gate{
		t:       t,
		dataDir: t.TempDir(),
		root:    t.TempDir(),
		home:    t.TempDir(),
		keys:    &keyring{users: map[string]*gitgate.User{}},
		grants:  &grants{perms: map[string]gitgate.Permission{}},
		logs:    &syncbuf.Buffer{},
	}
	copyHostKeys(t, g.dataDir)
	// The git processes the server starts inherit its environment.
	t.Setenv("HOME", g.home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(g.home, ".config"))

	log := slog.New(slog.NewTextHandler(g.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	g.live = gitgate.NewLiveState(gitgate.NewFileStore(g.dataDir), log)
	g.live.Run(ctx, 0)
	resolver, err := gitgate.NewResolver(g.root)
	if err != nil {
		t.Fatal(err)
	}
	runner, err := gitgate.NewRunner("git", g.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := sshd.Config{
		HostKeyDir: g.dataDir,
		Keys:       g.keys,
		Policy:     &gitgate.Policy{State: g.live, Access: g.grants},
		Resolver:   resolver,
		Runner:     runner,
		Log:        log,
	}
	for _, o := range opts {
		o(&cfg)
	}
	g.srv, err = sshd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, g.port, _ = net.SplitHostPort(ln.Addr().String())
	g.serveErr = make(chan error, 1)
	go func() { g.serveErr <- g.srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		g.stop()
		cancel()
		if t.Failed() {
			t.Logf("server log:\n%s", g.logs.String())
		}
	})
	return g
}

// stop closes the server and checks that Serve returned cleanly.
func (g *gate) stop() {
	if g.stopped {
		return
	}
	g.stopped = true
	if err := g.srv.Close(); err != nil {
		g.t.Errorf("Close: %v", err)
	}
	if err := <-g.serveErr; err != nil {
		g.t.Errorf("Serve: %v", err)
	}
}

func copyHostKeys(t *testing.T, dir string) {
	t.Helper()
	for _, name := range []string{sshd.HostKeyFileEd25519, sshd.HostKeyFileRSA} {
		for _, suffix := range []string{"", ".pub"} {
			data, err := os.ReadFile(filepath.Join(hostKeyTemplate, name+suffix))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name+suffix), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// clientKey is a user's key pair, with the private half in a file for ssh.
type clientKey struct {
	path   string
	pub    gossh.PublicKey
	signer gossh.Signer
}

func newClientKey(t *testing.T, name string) clientKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, name)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_"+name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return clientKey{path: path, pub: sshPub, signer: signer}
}

// addUser registers a user with a new key and a permission on every
// repository.
func (g *gate) addUser(name string, p gitgate.Permission) clientKey {
	g.t.Helper()
	k := newClientKey(g.t, name)
	g.keys.add(k.pub, &gitgate.User{Name: name})
	g.grants.set(name, "*", p)
	return k
}

func (g *gate) url(repo string) string {
	return "ssh://git@127.0.0.1:" + g.port + "/" + repo
}

// sshOptions are the options of every ssh client run: no user or system
// configuration, no prompts, the test's port. Options given before them win.
func (g *gate) sshOptions() []string {
	return []string{
		"-F", "/dev/null",
		"-o", "IdentitiesOnly=yes",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes",
		"-o", "LogLevel=ERROR",
		"-p", g.port,
	}
}

// ssh returns an ssh client command for git@127.0.0.1 with the given keys,
// extra options and remote command.
func (g *gate) ssh(keys []clientKey, opts []string, remote ...string) *exec.Cmd {
	var args []string
	for _, k := range keys {
		args = append(args, "-i", k.path)
	}
	args = append(args, opts...)
	args = append(args, g.sshOptions()...)
	args = append(args, "git@127.0.0.1")
	args = append(args, remote...)
	cmd := exec.Command("ssh", args...)
	cmd.Env = g.env()
	return cmd
}

// env is an isolated environment for ssh and git clients.
func (g *gate) env() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + g.home,
		"XDG_CONFIG_HOME=" + filepath.Join(g.home, ".config"),
		"LANG=C",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
	}
}

// git returns a git command run in dir; with a key, it reaches the server
// through ssh with that key.
func (g *gate) git(key *clientKey, dir string, args ...string) *exec.Cmd {
	args = append([]string{"-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"}, args...)
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = g.env()
	if key != nil {
		cmd.Env = append(cmd.Env, "GIT_SSH_COMMAND=ssh -i "+key.path+" "+strings.Join(g.sshOptions(), " "))
	}
	return cmd
}

// result is what a finished command printed and its exit status.
type result struct {
	stdout, stderr string
	status         int
}

// run runs cmd to completion; a start failure ends the test.
func run(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &stdout
	}
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("%s: %v", cmd, err)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), status: cmd.ProcessState.ExitCode()}
}

// ok runs cmd and ends the test unless it succeeds.
func ok(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	r := run(t, cmd)
	if r.status != 0 {
		t.Fatalf("%s: exit status %d\nstdout: %s\nstderr: %s", cmd, r.status, r.stdout, r.stderr)
	}
	return r
}

// createRepo makes the bare repository <root>/<name>.git with one commit
// holding files, and returns the commit id.
func (g *gate) createRepo(name string, files map[string][]byte) string {
	t := g.t
	t.Helper()
	bare := filepath.Join(g.root, name+".git")
	ok(t, g.git(nil, "", "init", "-q", "--bare", "-b", "main", bare))
	work := t.TempDir()
	ok(t, g.git(nil, work, "init", "-q", "-b", "main"))
	for path, data := range files {
		if err := os.WriteFile(filepath.Join(work, path), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ok(t, g.git(nil, work, "add", "-A"))
	ok(t, g.git(nil, work, "commit", "-q", "-m", "initial"))
	ok(t, g.git(nil, work, "push", "-q", bare, "main"))
	return g.head(name)
}

// head returns the commit refs/heads/main of the bare repository points to.
func (g *gate) head(name string) string {
	g.t.Helper()
	r := ok(g.t, g.git(nil, "", "--git-dir", filepath.Join(g.root, name+".git"), "rev-parse", "refs/heads/main"))
	return strings.TrimSpace(r.stdout)
}

// setMaintenance switches maintenance mode through the state file, as the
// CLI does, and waits until the server has seen it.
func (g *gate) setMaintenance(on bool) {
	g.t.Helper()
	if _, err := gitgate.NewFileStore(g.dataDir).Apply(context.Background(), gitgate.Change{Enabled: &on, By: "test"}); err != nil {
		g.t.Fatal(err)
	}
	for i := 0; i < 1000 && g.live.Current().State.Enabled != on; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if g.live.Current().State.Enabled != on {
		g.t.Fatalf("the server did not see maintenance=%v", on)
	}
}

// dial opens an SSH connection with the Go client.
func (g *gate) dial(k clientKey) *gossh.Client {
	g.t.Helper()
	c, err := gossh.Dial("tcp", "127.0.0.1:"+g.port, &gossh.ClientConfig{
		User:            "git",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(k.signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(),
	})
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { c.Close() })
	return c
}

// gitProcesses lists the processes working on a repository: git started
// with its path, or a helper (pack-objects) running in it.
func gitProcesses(t *testing.T, repoPath string) []string {
	t.Helper()
	real, err := filepath.EvalSymlinks(repoPath)
	if err != nil {
		t.Fatal(err)
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var found []string
	for _, dir := range dirs {
		cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue // gone, or a zombie
		}
		cwd, _ := os.Readlink(filepath.Join(dir, "cwd"))
		if bytes.Contains(cmdline, []byte(real)) || cwd == real {
			found = append(found, filepath.Base(dir)+": "+strings.ReplaceAll(string(bytes.TrimRight(cmdline, "\x00")), "\x00", " "))
		}
	}
	return found
}

// waitFor polls cond, bounded; it reports whether cond became true.
func waitFor(cond func() bool) bool {
	for i := 0; i < 2000; i++ {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

// readUntilClosed reads from r until it fails and returns the error; it
// fails the test if the read hangs (a safety bound, not a timing check).
func readUntilClosed(t *testing.T, r io.Reader) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, r)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the server never closed the connection")
	}
}
