package clienttest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/gitgate"
)

// msg is GitLab's maintenance refusal, which every client must show.
const msg = gitgate.MaintenanceMessage

// Where the client programs are, and where npm installs isomorphic-git.
var (
	clientsDir = filepath.Join("..", "testdata", "clients")
	npmDir     = filepath.Join(clientsDir, ".npm")
)

// isomorphicGitVersion is the isomorphic-git release the test installs.
const isomorphicGitVersion = "1.44.19"

// clientTimeout bounds each client program's run (a hang bound: they take
// a second or two).
const clientTimeout = 3 * time.Minute

// run is one client over one transport: its repository (the same name on
// both gates) and the URLs it uses.
type run struct {
	name      string // "<client>-<transport>", also the repository's name
	transport string // "http" or "ssh"
	clone     string // on the open gate
	open      string // on the open gate
	maint     string // on the gate in maintenance
	work      string // the client's working directory
}

// env is what every client run shares: the two gates and the SSH key.
type env struct {
	open, maint *gate
	key         string // private key file (RSA, PEM: JSch 0.1.54 reads no other)
	home        string // HOME for the clients
}

// sshCommand is the ssh command line for clients that run ssh (git, dulwich).
func (e *env) sshCommand() string {
	return "ssh -F /dev/null -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null" +
		" -o BatchMode=yes -o LogLevel=ERROR -i " + e.key
}

// processEnv is the environment of a client program.
func (e *env) processEnv(extra ...string) []string {
	env := []string{"HOME=" + e.home, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0", "LC_ALL=C", "GIT_SSH_COMMAND=" + e.sshCommand()}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "TMPDIR=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// client is one Git client under test.
type client struct {
	name       string
	transports []string
	// drive runs the client for every run and returns its report lines,
	// each "<run name> ok <step>" or "<run name> error <step>: <what the
	// client reported>", for the steps clone, push-open, push-maintenance.
	drive func(t *testing.T, e *env, runs []run) string
	// refusal is what the client must report for the refused push (a part
	// of its "error push-maintenance" line).
	refusal func(r run) string
}

var clients = []client{
	{
		name:       "git",
		transports: []string{"http", "ssh"},
		drive:      driveGit,
		refusal:    func(r run) string { return oneLine(gitRefusal(r)) },
	},
	{
		name:       "pygit2",
		transports: []string{"http", "ssh"},
		drive:      drivePython("pygit2"),
		refusal:    func(run) string { return "remote error: " + msg },
	},
	{
		name:       "dulwich",
		transports: []string{"http", "ssh"},
		drive:      drivePython("dulwich"),
		refusal: func(r run) string {
			if r.transport == "ssh" {
				return "remote: " + msg // OpenSSH: the box on stderr, which dulwich shows
			}
			return ": " + msg
		},
	},
	{
		name:       "jgit",
		transports: []string{"http", "ssh"},
		drive:      driveJGit,
		refusal: func(r run) string {
			u, _ := url.Parse(r.maint)
			if u.User != nil {
				u.User = url.User(u.User.Username())
			}
			return ": " + u.String() + ": " + msg
		},
	},
	{
		name:       "go-git",
		transports: []string{"http", "ssh"},
		drive:      driveGoGit,
		refusal:    func(run) string { return ": " + msg },
	},
	{
		name:       "isomorphic-git",
		transports: []string{"http"}, // isomorphic-git has no SSH
		drive:      driveIsomorphicGit,
		refusal:    func(run) string { return `but received "ERR ` + msg + `"` },
	},
}

// TestClients runs every client against the gates: clone and push work
// while open; a push in maintenance fails with GitLab's message in what
// the client reports, and no ref moves.
func TestClients(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Fatal("ssh-keygen (openssh-client, installed by .ci/run) is missing")
	}
	var repos []string
	for _, c := range clients {
		for _, tr := range c.transports {
			repos = append(repos, c.name+"-"+tr)
		}
	}
	e := &env{home: t.TempDir(), key: filepath.Join(t.TempDir(), "id_rsa")}
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-C", "dev", "-f", e.key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	cfg := "[init]\n\tdefaultBranch = main\n[user]\n\tname = Test Author\n\temail = author@example.com\n"
	if err := os.WriteFile(filepath.Join(e.home, ".gitconfig"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	e.open = startGate(t, false, repos, e.key+".pub")
	e.maint = startGate(t, true, repos, e.key+".pub")
	initial := map[string]string{}
	for _, r := range repos {
		initial[r] = e.maint.head(t, r)
	}

	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var runs []run
			for _, tr := range c.transports {
				name := c.name + "-" + tr
				r := run{name: name, transport: tr, work: filepath.Join(t.TempDir(), "work")}
				if tr == "http" {
					r.clone, r.open, r.maint = e.open.httpURL(name), e.open.httpURL(name), e.maint.httpURL(name)
				} else {
					r.clone, r.open, r.maint = e.open.sshURL(name), e.open.sshURL(name), e.maint.sshURL(name)
				}
				runs = append(runs, r)
			}
			report := c.drive(t, e, runs) // skips the test if the client is missing
			for _, r := range runs {
				steps := parseReport(report, r.name)
				for _, s := range []string{"clone", "push-open"} {
					if got, ok := steps[s]; !ok || got != "" {
						t.Errorf("%s: %s failed or did not run: %q\nreport:\n%s", r.name, s, got, report)
					}
				}
				got, ok := steps["push-maintenance"]
				switch {
				case !ok:
					t.Errorf("%s: no push in maintenance\nreport:\n%s", r.name, report)
				case got == "":
					t.Errorf("%s: push in maintenance succeeded", r.name)
				case !strings.Contains(got, c.refusal(r)):
					t.Errorf("%s: push in maintenance reported\n%s\nwant it to contain\n%s", r.name, got, c.refusal(r))
				default:
					t.Logf("%s: the user sees: %s", r.name, got)
				}
				if head := e.open.head(t, r.name); head == initial[r.name] {
					t.Errorf("%s: the open push did not move main", r.name)
				}
				if head := e.maint.head(t, r.name); head != initial[r.name] {
					t.Errorf("%s: main moved to %s in maintenance", r.name, head)
				}
			}
		})
	}
}

// parseReport picks run's steps from a client's report: step → "" when it
// went well, else what the client reported.
func parseReport(report, runName string) map[string]string {
	steps := map[string]string{}
	for _, line := range strings.Split(report, "\n") {
		rest, ok := strings.CutPrefix(line, runName+" ")
		if !ok {
			continue
		}
		if step, ok := strings.CutPrefix(rest, "ok "); ok {
			steps[step] = ""
		} else if rest, ok := strings.CutPrefix(rest, "error "); ok {
			step, what, _ := strings.Cut(rest, ": ")
			steps[step] = step + ": " + what
		}
	}
	return steps
}

// skipLoudly skips a client whose package is missing, saying so on the
// test's stderr too, so that the skip shows without -v.
func skipLoudly(t *testing.T, format string, args ...any) {
	t.Helper()
	m := fmt.Sprintf(format, args...)
	fmt.Fprintf(os.Stderr, "\n!!! clienttest: SKIPPING %s: %s\n\n", t.Name(), m)
	t.Skip("SKIPPING: " + m)
}

// command runs a client program with a hang bound and returns its stdout.
// A program that fails is reported as it is; its report says why.
func command(t *testing.T, e *env, name string, args []string, extraEnv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = e.processEnv(extraEnv...)
	cmd.WaitDelay = 10 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Logf("%s %s: %v\nstderr:\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// gitRefusal is git's whole stderr for a push refused in maintenance:
// byte for byte what GitLab shows.
func gitRefusal(r run) string {
	if r.transport == "http" {
		u, _ := url.Parse(r.maint)
		u.User = nil
		return "remote: " + msg + "\nfatal: unable to access '" + u.String() + "/': The requested URL returned error: 403\n"
	}
	return "remote: \nremote: " + strings.Repeat("=", 72) + "\nremote: \nremote: " + msg + "\nremote: \nremote: " +
		strings.Repeat("=", 72) + "\nremote: \nfatal: Could not read from remote repository.\n\n" +
		"Please make sure you have the correct access rights\nand the repository exists.\n"
}

// driveGit runs git itself. Its refusal is checked whole: it must stay
// byte for byte what it was (and what GitLab shows).
func driveGit(t *testing.T, e *env, runs []run) string {
	var report strings.Builder
	for _, r := range runs {
		git := func(dir string, args ...string) (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, "git", args...)
			cmd.Dir, cmd.Env = dir, e.processEnv()
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			return stderr.String(), err
		}
		step := func(name, stderr string, err error) bool {
			if err != nil {
				fmt.Fprintf(&report, "%s error %s: %s\n", r.name, name, oneLine(stderr))
				return false
			}
			fmt.Fprintf(&report, "%s ok %s\n", r.name, name)
			return true
		}
		if out, err := git(filepath.Dir(r.work), "clone", "-q", r.clone, r.work); !step("clone", out, err) {
			continue
		}
		git(r.work, "commit", "-q", "--allow-empty", "-m", "while open")
		if out, err := git(r.work, "push", "-q", r.open, "main"); !step("push-open", out, err) {
			continue
		}
		git(r.work, "commit", "-q", "--allow-empty", "-m", "during maintenance")
		// With protocol v2 asked for too: receive-pack speaks v0 either way.
		for _, v := range []string{"0", "2"} {
			out, err := git(r.work, "-c", "protocol.version="+v, "push", r.maint, "main")
			if err == nil || out != gitRefusal(r) {
				t.Errorf("%s, protocol.version=%s: git's stderr changed (err %v):\n%s\nwant\n%s", r.name, v, err, out, gitRefusal(r))
			}
		}
		out, err := git(r.work, "push", r.maint, "main")
		step("push-maintenance", out, err)
	}
	return report.String()
}

// oneLine joins lines with " | ", as the reports do.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " | ") }

// drivePython returns the driver of testdata/clients/<module>_client.py,
// run once per run on Debian's Python, which has the module.
func drivePython(module string) func(t *testing.T, e *env, runs []run) string {
	return func(t *testing.T, e *env, runs []run) string {
		const python = "/usr/bin/python3"
		if out, err := exec.Command(python, "-c", "import "+module).CombinedOutput(); err != nil {
			skipLoudly(t, "%s cannot import %s (install the Debian package python3-%s, as .ci/run does): %v %s", python, module, module, err, out)
		}
		script := filepath.Join(clientsDir, module+"_client.py")
		var report strings.Builder
		for _, r := range runs {
			args := []string{script, r.clone, r.open, r.maint, r.work}
			if module == "pygit2" && r.transport == "ssh" {
				args = append(args, e.key+".pub", e.key)
			}
			for _, line := range strings.Split(strings.TrimSpace(command(t, e, python, args)), "\n") {
				fmt.Fprintf(&report, "%s %s\n", r.name, line)
			}
		}
		return report.String()
	}
}

// driveJGit compiles testdata/clients/JGitClient.java against Debian's
// JGit and JSch and runs every run in one JVM.
func driveJGit(t *testing.T, e *env, runs []run) string {
	var cp []string
	for _, jar := range []string{"org.eclipse.jgit.jar", "jsch.jar", "javaewah.jar", "slf4j-api.jar", "slf4j-nop.jar"} {
		p := filepath.Join("/usr/share/java", jar)
		if _, err := os.Stat(p); err != nil {
			skipLoudly(t, "%s is missing (install the Debian packages libjgit-java and libslf4j-java, as .ci/run does)", p)
		}
		cp = append(cp, p)
	}
	for _, tool := range []string{"javac", "java"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipLoudly(t, "%s is missing (install default-jdk-headless, as .ci/run does)", tool)
		}
	}
	classes := t.TempDir()
	if out, err := exec.Command("javac", "-nowarn", "-cp", strings.Join(cp, ":"), "-d", classes, filepath.Join(clientsDir, "JGitClient.java")).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	// Fast start: JGit runs for seconds, the JIT and GC defaults are tuned for hours.
	args := []string{"-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Duser.home=" + e.home, "-cp", strings.Join(append([]string{classes}, cp...), ":"), "JGitClient", e.key}
	for _, r := range runs {
		args = append(args, r.name, r.clone, r.open, r.maint, r.work)
	}
	return command(t, e, "java", args)
}

// driveIsomorphicGit installs isomorphic-git with npm (once; the install
// is kept, ignored by git) and runs testdata/clients/isogit_client.cjs.
func driveIsomorphicGit(t *testing.T, e *env, runs []run) string {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipLoudly(t, "%s is missing (install the Debian packages nodejs and npm, as .ci/run does)", tool)
		}
	}
	modules, err := filepath.Abs(filepath.Join(npmDir, "node_modules"))
	if err != nil {
		t.Fatal(err)
	}
	pkg, _ := os.ReadFile(filepath.Join(modules, "isomorphic-git", "package.json"))
	if !strings.Contains(string(pkg), `"version": "`+isomorphicGitVersion+`"`) {
		ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "install", "--prefix", npmDir, "--cache", filepath.Join(npmDir, "cache"),
			"--no-audit", "--no-fund", "--no-save", "--loglevel=error", "isomorphic-git@"+isomorphicGitVersion)
		if out, err := cmd.CombinedOutput(); err != nil {
			skipLoudly(t, "npm install isomorphic-git@%s failed (is the npm registry reachable?): %v\n%s", isomorphicGitVersion, err, out)
		}
	}
	var report strings.Builder
	for _, r := range runs {
		out := command(t, e, "node", []string{filepath.Join(clientsDir, "isogit_client.cjs"), r.clone, r.open, r.maint, r.work}, "NODE_PATH="+modules)
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			fmt.Fprintf(&report, "%s %s\n", r.name, line)
		}
	}
	return report.String()
}

// driveGoGit drives go-git in this process.
func driveGoGit(t *testing.T, e *env, runs []run) string {
	var report strings.Builder
	for _, r := range runs {
		step := func(name string, err error) bool {
			if err != nil {
				fmt.Fprintf(&report, "%s error %s: %s\n", r.name, name, oneLine(err.Error()))
				return false
			}
			fmt.Fprintf(&report, "%s ok %s\n", r.name, name)
			return true
		}
		ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
		defer cancel()
		u, auth := goGitEndpoint(t, e, r.clone)
		repo, err := git.PlainCloneContext(ctx, r.work, false, &git.CloneOptions{
			URL: u, Auth: auth, ReferenceName: plumbing.NewBranchReferenceName("main"), SingleBranch: true,
		})
		if !step("clone", err) {
			continue
		}
		push := func(text, to string) error {
			if err := goGitCommit(repo, r.work, text); err != nil {
				return fmt.Errorf("commit: %w", err)
			}
			u, auth := goGitEndpoint(t, e, to)
			return repo.PushContext(ctx, &git.PushOptions{
				RemoteURL: u, Auth: auth, RefSpecs: []config.RefSpec{"refs/heads/main:refs/heads/main"},
			})
		}
		if !step("push-open", push("while open", r.open)) {
			continue
		}
		step("push-maintenance", push("during maintenance", r.maint))
	}
	return report.String()
}

// goGitEndpoint is rawURL for go-git, without credentials, and the auth
// that carries them (SSH: the test's key).
func goGitEndpoint(t *testing.T, e *env, rawURL string) (string, transport.AuthMethod) {
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme == "ssh" {
		keys, err := gitssh.NewPublicKeysFromFile("git", e.key, "")
		if err != nil {
			t.Fatal(err)
		}
		keys.HostKeyCallback = gossh.InsecureIgnoreHostKey() // a test gate's host key, on 127.0.0.1
		return rawURL, keys
	}
	pass, _ := u.User.Password()
	auth := &githttp.BasicAuth{Username: u.User.Username(), Password: pass}
	u.User = nil
	return u.String(), auth
}

// goGitCommit appends a line to file.txt and commits it.
func goGitCommit(repo *git.Repository, work, text string) error {
	f, err := os.OpenFile(filepath.Join(work, "file.txt"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return err
	}
	if _, err := wt.Add("file.txt"); err != nil {
		return err
	}
	sig := &object.Signature{Name: "Test Author", Email: "author@example.com", When: time.Unix(1700000000, 0)}
	_, err = wt.Commit(text, &git.CommitOptions{Author: sig, Committer: sig})
	return err
}
