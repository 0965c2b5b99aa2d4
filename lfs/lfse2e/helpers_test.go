package lfse2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/internal/gittest"
)

var binPath string // the gitgate binary, built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gitgate-lfs-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "gitgate")
	cmd := exec.Command("go", "build", "-o", binPath, "../../cmd/gitgate")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireTools skips the test, loudly, when a client it drives is missing.
func requireTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"git", "git-lfs", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED LOUDLY: %s is not installed (.ci/run installs it): the Git LFS end-to-end tests did not run", tool)
		}
	}
}

// world is one data dir, one running gate, and a HOME for the clients.
type world struct {
	t        *testing.T
	root     string
	data     string
	home     string
	httpHost string
	sshPort  string
	logPath  string
	tokens   map[string]string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	root := t.TempDir()
	w := &world{t: t, root: root, data: filepath.Join(root, "data"), home: filepath.Join(root, "home"), tokens: map[string]string{}}
	if err := os.Mkdir(w.home, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := "[init]\n\tdefaultBranch = main\n[user]\n\tname = Test Author\n\temail = author@example.com\n"
	if err := os.WriteFile(filepath.Join(w.home, ".gitconfig"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	w.mustRun("", "git", "lfs", "install", "--skip-repo")
	w.mustRun("", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(w.home, "id"))
	return w
}

func (w *world) env() []string {
	env := []string{"HOME=" + w.home, "GITGATE_DATA_DIR=" + w.data, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0", "LC_ALL=C", "GIT_LFS_SKIP_PUSH_LOCK_VERIFY=0",
		"GIT_SSH_COMMAND=ssh -i " + filepath.Join(w.home, "id") + " -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -p " + w.sshPort,
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "TMPDIR=") {
			env = append(env, kv)
		}
	}
	return env
}

// run runs a program in dir ("" for the root) and returns its output.
func (w *world) run(dir string, extraEnv []string, name string, args ...string) (stdout, stderr string, err error) {
	if dir == "" {
		dir = w.root
	}
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, append(w.env(), extraEnv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

func (w *world) mustRun(dir, name string, args ...string) string {
	w.t.Helper()
	out, errOut, err := w.run(dir, nil, name, args...)
	if err != nil {
		w.t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), err, out, errOut)
	}
	return strings.TrimSpace(out)
}

func (w *world) gitgate(args ...string) string {
	w.t.Helper()
	return w.mustRun("", binPath, args...)
}

// token creates an access token for user.
func (w *world) token(user string) string {
	w.t.Helper()
	w.tokens[user] = w.gitgate("token", "create", user)
	return w.tokens[user]
}

// serve starts "gitgate serve" on free loopback ports; it is stopped and
// reaped when the test ends.
func (w *world) serve() {
	t := w.t
	t.Helper()
	w.logPath = filepath.Join(w.root, "gate.log")
	gate := gittest.Serve(t, binPath, append(w.env(), "GITGATE_SIGNIN_MAX_FAILURES=1000"), w.logPath)
	w.httpHost = gate.HTTPHost
	_, w.sshPort, _ = strings.Cut(gate.SSHHost, ":")
}

// httpURL is repo's clone URL with user's token ("" user: anonymous).
func (w *world) httpURL(user, repo string) string {
	if user == "" {
		return "http://" + w.httpHost + "/" + repo + ".git"
	}
	return "http://" + user + ":" + w.tokens[user] + "@" + w.httpHost + "/" + repo + ".git"
}

// sshURL is repo's SSH URL; the key is alice's (GIT_SSH_COMMAND).
func (w *world) sshURL(repo string) string { return "ssh://git@127.0.0.1/" + repo + ".git" }

// workTree makes a repository that tracks *.bin with LFS.
func (w *world) workTree() string {
	dir := filepath.Join(w.root, fmt.Sprintf("work%d", time.Now().UnixNano()))
	w.mustRun("", "git", "init", "-q", dir)
	w.mustRun(dir, "git", "lfs", "track", "*.bin")
	w.mustRun(dir, "git", "add", ".gitattributes")
	w.mustRun(dir, "git", "commit", "-q", "-m", "track *.bin")
	return dir
}

// addFiles writes n .bin files of distinct content (prefix names them)
// and commits them; it returns their oids by file name.
func (w *world) addFiles(dir, prefix string, n int) map[string]string {
	oids := map[string]string{}
	for i := range n {
		name := fmt.Sprintf("%s%d.bin", prefix, i)
		content := bytes.Repeat([]byte(fmt.Sprintf("%s %s %d\n", w.t.Name(), name, i)), 100+i)
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			w.t.Fatal(err)
		}
		sum := sha256.Sum256(content)
		oids[name] = hex.EncodeToString(sum[:])
	}
	w.mustRun(dir, "git", "add", ".")
	w.mustRun(dir, "git", "commit", "-q", "-m", "add "+prefix)
	return oids
}

// objectCount counts the files in the gate's object store and in its
// temporary directory.
func (w *world) objectCount() (objects, tmp int) {
	filepath.WalkDir(filepath.Join(w.data, "lfs", "objects"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			objects++
		}
		return nil
	})
	entries, _ := os.ReadDir(filepath.Join(w.data, "lfs", "tmp"))
	return objects, len(entries)
}

// hasObject reports whether the store holds oid.
func (w *world) hasObject(oid string) bool {
	_, err := os.Stat(filepath.Join(w.data, "lfs", "objects", oid[:2], oid[2:4], oid))
	return err == nil
}

// sameContent fails unless every file in want has the same bytes in dir.
func (w *world) sameContent(dir, src string, names ...string) {
	w.t.Helper()
	for _, n := range names {
		got, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			w.t.Fatal(err)
		}
		want, _ := os.ReadFile(filepath.Join(src, n))
		if !bytes.Equal(got, want) {
			w.t.Fatalf("%s in %s: got %d bytes starting %q, want the real content (%d bytes)", n, dir, len(got), firstLine(got), len(want))
		}
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

// step runs f as the subtest name, with the world's helpers failing that
// subtest rather than its parent. Steps run one after another.
func (w *world) step(t *testing.T, name string, f func(t *testing.T)) {
	t.Run(name, func(st *testing.T) {
		parent := w.t
		w.t = st
		defer func() { w.t = parent }()
		f(st)
	})
}
