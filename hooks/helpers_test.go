package hooks_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/hooks"
	"github.com/gitgate/gitgate/internal/syncbuf"
)

// binDir holds the gitgate binary built for the end-to-end tests.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gitgate-hooks-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// gitgateBinary builds ./cmd/gitgate once per test binary and returns its
// path. Tests that run git end to end need it as the hook.
func gitgateBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("the go command is needed to build gitgate: %w", err)
			return
		}
		out, err := exec.Command(goBin, "env", "GOMOD").Output()
		if err != nil {
			buildErr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		gomod := strings.TrimSpace(string(out))
		if gomod == "" || gomod == os.DevNull {
			buildErr = errors.New("not inside the gitgate module")
			return
		}
		buildPath = filepath.Join(binDir, "gitgate")
		cmd := exec.Command(goBin, "build", "-o", buildPath, "./cmd/gitgate")
		cmd.Dir = filepath.Dir(gomod)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/gitgate: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return buildPath
}

// gitEnv is a clean environment for git: no system or user configuration
// from this machine, and none of the gate's variables.
func gitEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GIT_") || strings.HasPrefix(kv, "GITGATE_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0")
}

// fixture is a repository root with one bare repository, a work clone with a
// commit that the bare repository does not have yet, and a data dir.
type fixture struct {
	t       *testing.T
	env     []string
	root    string // repository root
	bare    string // root/group/project.git
	work    string // clone with a commit to push
	dataDir string
}

const repoName = "group/project"

func newFixture(t *testing.T) *fixture {
	t.Helper()
	base := t.TempDir()
	f := &fixture{
		t:       t,
		env:     gitEnv(filepath.Join(base, "home")),
		root:    filepath.Join(base, "repos"),
		dataDir: filepath.Join(base, "data"),
		work:    filepath.Join(base, "work"),
	}
	f.bare = filepath.Join(f.root, filepath.FromSlash(repoName)+".git")
	for _, d := range []string{filepath.Join(base, "home"), f.dataDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f.git("", "init", "--quiet", "--bare", f.bare)
	f.git("", "init", "--quiet", f.work)
	f.commit("first")
	return f
}

// git runs git in dir and fails the test if it fails.
func (f *fixture) git(dir string, args ...string) string {
	f.t.Helper()
	out, stderr, err := f.run(dir, nil, args...)
	if err != nil {
		f.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(out)
}

// run runs git in dir with extra environment variables.
func (f *fixture) run(dir string, extraEnv []string, args ...string) (stdout, stderr string, err error) {
	cmd := f.command(dir, args...)
	cmd.Env = append(cmd.Env, extraEnv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// command is git with the test's identity and default branch.
func (f *fixture) command(dir string, args ...string) *exec.Cmd {
	args = append([]string{"-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"}, args...)
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = f.env[:len(f.env):len(f.env)]
	return cmd
}

func (f *fixture) commit(msg string) string {
	f.t.Helper()
	f.git(f.work, "commit", "--quiet", "--allow-empty", "-m", msg)
	return f.git(f.work, "rev-parse", "HEAD")
}

// push pushes main from the work clone to url and returns git's stderr.
func (f *fixture) push(url string, extraEnv ...string) (string, error) {
	f.t.Helper()
	_, stderr, err := f.run(f.work, extraEnv, "push", url, "main")
	return stderr, err
}

// head is the bare repository's main, or "" when it has none.
func (f *fixture) head() string {
	f.t.Helper()
	out, _, err := f.run(f.bare, nil, "rev-parse", "--verify", "--quiet", "refs/heads/main")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

// install puts the hook, running the built binary, into the bare repository.
func (f *fixture) install(s hooks.Script) hooks.Outcome {
	f.t.Helper()
	if s.Binary == "" {
		s.Binary = gitgateBinary(f.t)
	}
	if s.DataDir == "" && s.StatusURL == "" {
		s.DataDir = f.dataDir
	}
	in, err := hooks.NewInstaller(s)
	if err != nil {
		f.t.Fatal(err)
	}
	outcome, err := in.Install(f.bare)
	if err != nil {
		f.t.Fatal(err)
	}
	return outcome
}

func (f *fixture) setMaintenance(on bool) {
	f.t.Helper()
	if _, err := gitgate.NewFileStore(f.dataDir).Apply(context.Background(), gitgate.Change{Enabled: &on, By: "test"}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) hookPath() string { return filepath.Join(f.bare, "hooks", hooks.HookName) }

// writeOwnHook writes a pre-receive hook that is not gitgate's: it saves its
// stdin to a file, says so on stderr, and exits with the status read from a
// file (0 when that file is missing). It returns the script and the paths
// of the stdin copy and of the exit status file.
func (f *fixture) writeOwnHook() (script []byte, stdinCopy, exitFile string) {
	f.t.Helper()
	dir := f.t.TempDir()
	stdinCopy = filepath.Join(dir, "stdin")
	exitFile = filepath.Join(dir, "exit")
	script = fmt.Appendf(nil, "#!/bin/sh\ncat > '%s'\necho 'own hook ran' >&2\nexit $(cat '%s' 2>/dev/null || echo 0)\n", stdinCopy, exitFile)
	if err := os.WriteFile(f.hookPath(), script, 0o755); err != nil {
		f.t.Fatal(err)
	}
	return script, stdinCopy, exitFile
}

// stderrLines returns git's stderr as lines without the padding git adds
// after "remote:" lines.
func stderrLines(stderr string) []string {
	var lines []string
	for _, l := range strings.Split(stderr, "\n") {
		lines = append(lines, strings.TrimSpace(l))
	}
	return lines
}

func hasLine(stderr, want string) bool {
	for _, l := range stderrLines(stderr) {
		if l == want {
			return true
		}
	}
	return false
}

const (
	remoteMaintenance = "remote: " + gitgate.MaintenanceMessage
	rejectedMain      = "! [remote rejected] main -> main (pre-receive hook declined)"
)

// assertRefused checks that a push was declined by the hook with want on
// the "remote:" line and that the ref did not move.
func (f *fixture) assertRefused(stderr string, err error, want, before string) {
	f.t.Helper()
	if err == nil {
		f.t.Fatalf("push succeeded, want it refused; stderr:\n%s", stderr)
	}
	if !hasLine(stderr, want) {
		f.t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
	if !hasLine(stderr, rejectedMain) {
		f.t.Errorf("stderr lacks %q:\n%s", rejectedMain, stderr)
	}
	if got := f.head(); got != before {
		f.t.Errorf("main moved from %q to %q", before, got)
	}
}

func (f *fixture) assertAccepted(stderr string, err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatalf("push refused: %v\n%s", err, stderr)
	}
	if got, want := f.head(), f.git(f.work, "rev-parse", "HEAD"); got != want {
		f.t.Errorf("main is %q after the push, want %q", got, want)
	}
}

// startDaemon serves the fixture's root with git daemon, pushes enabled,
// and returns the repository's git:// URL. The daemon runs without the
// gate's environment: the hook script alone must find the state. It is
// stopped and reaped when the test ends.
func (f *fixture) startDaemon() string {
	f.t.Helper()
	var lastErr error
	for range 3 { // the free port may be taken before the daemon binds it
		port, err := freePort()
		if err != nil {
			f.t.Fatal(err)
		}
		if err := f.tryDaemon(port); err != nil {
			lastErr = err
			continue
		}
		return fmt.Sprintf("git://127.0.0.1:%d/%s.git", port, repoName)
	}
	f.t.Fatalf("git daemon: %v", lastErr)
	return ""
}

func (f *fixture) tryDaemon(port int) error {
	var logs syncbuf.Buffer
	cmd := exec.Command("git", "daemon", "--listen=127.0.0.1", "--port="+strconv.Itoa(port),
		"--reuseaddr", "--export-all", "--enable=receive-pack", "--informative-errors",
		"--base-path="+f.root, f.root)
	cmd.Env = f.env
	cmd.Stdout, cmd.Stderr = &logs, &logs
	// The daemon forks a child per connection: signal the whole group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// A bounded wait for the daemon to listen; not an assertion on time.
	for range 500 {
		select {
		case err := <-done:
			return fmt.Errorf("exited before listening (%v):\n%s", err, logs.String())
		default:
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			f.t.Cleanup(func() {
				stop()
				if f.t.Failed() {
					f.t.Logf("git daemon log:\n%s", logs.String())
				}
			})
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	return fmt.Errorf("not listening on %s:\n%s", addr, logs.String())
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
