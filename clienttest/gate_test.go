package clienttest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/internal/gittest"
)

// gitgateBin is the gitgate binary built from this module for the package.
var gitgateBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gitgate-clienttest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gitgateBin = filepath.Join(dir, "gitgate")
	if out, err := exec.Command("go", "build", "-o", gitgateBin, "../cmd/gitgate").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// gate is a running "gitgate serve" over its own data dir, with one user
// (dev, who may write everywhere) holding an access token and an SSH key.
type gate struct {
	data     string
	home     string
	httpHost string // 127.0.0.1:PORT
	sshHost  string // 127.0.0.1:PORT
	token    string // dev's access token
	logPath  string
}

// startGate prepares a data dir with repos (each created with a README
// commit on main), the user dev with write access, token and the public
// key pubKey, switches maintenance on if asked, and starts "gitgate serve"
// on free loopback ports. The gate is stopped (SIGTERM, then SIGKILL) and
// reaped when the test ends.
func startGate(t *testing.T, maintenance bool, repos []string, pubKey string) *gate {
	t.Helper()
	root := t.TempDir()
	g := &gate{data: filepath.Join(root, "data"), home: filepath.Join(root, "home"), logPath: filepath.Join(root, "gate.log")}
	if err := os.Mkdir(g.home, 0o755); err != nil {
		t.Fatal(err)
	}
	g.cli(t, "user", "add", "dev")
	for _, r := range repos {
		g.cli(t, "repo", "create", r, "--readme")
	}
	g.cli(t, "access", "grant", "**", "--user", "dev", "--level", "write")
	g.token = g.cli(t, "token", "create", "dev")
	g.cli(t, "user", "key", "add", "dev", "--file", pubKey)
	if maintenance {
		g.cli(t, "maintenance", "enable")
	}

	gate := gittest.Serve(t, gitgateBin, g.env(), g.logPath)
	g.httpHost, g.sshHost = gate.HTTPHost, gate.SSHHost
	return g
}

func (g *gate) env() []string {
	env := []string{"HOME=" + g.home, "GITGATE_DATA_DIR=" + g.data, "GIT_CONFIG_NOSYSTEM=1", "LC_ALL=C"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "TMPDIR=") {
			env = append(env, kv)
		}
	}
	return env
}

// cli runs "gitgate ARGS..." on the gate's data dir and returns its stdout,
// trimmed; a failure ends the test.
func (g *gate) cli(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(gitgateBin, args...)
	cmd.Env = g.env()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("gitgate %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

// httpURL is repo's URL with dev's credentials.
func (g *gate) httpURL(repo string) string {
	return "http://dev:" + g.token + "@" + g.httpHost + "/" + repo + ".git"
}

// sshURL is repo's SSH URL.
func (g *gate) sshURL(repo string) string {
	return "ssh://git@" + g.sshHost + "/" + repo + ".git"
}

// head is the commit main points to in repo, read with git from the bare
// repository itself.
func (g *gate) head(t *testing.T, repo string) string {
	t.Helper()
	out, err := exec.Command("git", "--git-dir", filepath.Join(g.data, "repositories", repo+".git"), "rev-parse", "refs/heads/main").CombinedOutput()
	if err != nil {
		t.Fatalf("rev-parse main of %s: %v\n%s", repo, err, out)
	}
	return strings.TrimSpace(string(out))
}
