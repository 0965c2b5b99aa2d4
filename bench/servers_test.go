package bench

import (
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/internal/gittest"
)

// How long a server gets to start listening, and to exit after SIGTERM
// before its process group is killed.
const (
	startTimeout = 30 * time.Second
	stopGrace    = 5 * time.Second
)

// gateProcess is a running "gitgate serve".
type gateProcess struct {
	httpURL string // http://127.0.0.1:PORT
	sshAddr string // 127.0.0.1:PORT
	pid     int
}

var (
	gateHTTPLine = regexp.MustCompile(`(?m)^http: listening on (\S+)`)
	gateSSHLine  = regexp.MustCompile(`(?m)^ssh: listening on ssh://git@(\S+)`)
)

// startGate builds gitgate and runs "gitgate serve" as its own process on
// the data dir dir/data, with anonymous read access to the repository
// "bench" and a user "bench" who signs in over SSH with the key in pubKey.
// serveArgs are added to "gitgate serve".
func startGate(b *testing.B, dir, pubKey string, serveArgs ...string) *gateProcess {
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(dir, "gitgate")
	build := exec.Command("go", "build", "-o", bin, "./cmd/gitgate")
	build.Dir = filepath.Join(filepath.Dir(file), "..")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "data")
	for _, args := range [][]string{
		{"user", "add", "bench"},
		{"user", "key", "add", "bench", "--file", pubKey},
		{"access", "grant", "bench", "--user", "bench", "--level", "read"},
		{"access", "grant", "bench", "--anonymous", "--level", "read"},
	} {
		cmd := exec.Command(bin, append([]string{"--data-dir", data}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("gitgate %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	argv := append([]string{"--data-dir", data, "--log-level", "warn",
		"serve", "--http-listen", "127.0.0.1:0", "--ssh-listen", "127.0.0.1:0"}, serveArgs...)
	d := startDaemon(b, "gitgate", filepath.Join(dir, "gitgate.log"), exec.Command(bin, argv...))
	g := &gateProcess{pid: d.cmd.Process.Pid}
	d.waitUntil(b, "its listening lines", func() bool {
		out := d.output()
		h, s := gateHTTPLine.FindStringSubmatch(out), gateSSHLine.FindStringSubmatch(out)
		if h == nil || s == nil {
			return false
		}
		g.httpURL, g.sshAddr = h[1], s[1]
		return true
	})
	return g
}

// startCGI serves root with git-http-backend through net/http/cgi.
func startCGI(b *testing.B, env []string, root string) string {
	h := &cgi.Handler{
		Path: httpBackend(b, env),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// nginxConf is nginx's configuration: git-http-backend behind fcgiwrap, as
// common guides set it up (nginx's default response buffering), with every
// file nginx writes inside the prefix (the benchmark's temporary directory)
// and its error log on stderr (the daemon's log file).
// fastcgi_pass_request_headers (on by default) passes
// Git-Protocol and Content-Encoding on as HTTP_* parameters.
const nginxConf = `daemon off;
{{user}}worker_processes 1;
pid {{dir}}/nginx.pid;
error_log stderr warn;
events { worker_connections 64; }
http {
	access_log {{dir}}/access.log;
	client_body_temp_path {{dir}}/client_body;
	fastcgi_temp_path {{dir}}/fastcgi;
	proxy_temp_path {{dir}}/proxy;
	scgi_temp_path {{dir}}/scgi;
	uwsgi_temp_path {{dir}}/uwsgi;
	server {
		listen {{addr}};
		location / {
			client_max_body_size 0;
			fastcgi_param SCRIPT_FILENAME {{backend}};
			fastcgi_param PATH_INFO $uri;
			fastcgi_param QUERY_STRING $query_string;
			fastcgi_param REQUEST_METHOD $request_method;
			fastcgi_param CONTENT_TYPE $content_type;
			fastcgi_param CONTENT_LENGTH $content_length;
			fastcgi_param REMOTE_ADDR $remote_addr;
			fastcgi_param REMOTE_USER $remote_user;
			fastcgi_param SERVER_PROTOCOL $server_protocol;
			fastcgi_param GATEWAY_INTERFACE CGI/1.1;
			fastcgi_param GIT_PROJECT_ROOT {{root}};
			fastcgi_param GIT_HTTP_EXPORT_ALL 1;
			fastcgi_pass unix:{{dir}}/fcgi.sock;
		}
	}
}
`

// startNginx serves root with nginx + fcgiwrap + git-http-backend on a
// loopback port and returns its base URL. It skips the benchmark when nginx
// or fcgiwrap is not installed.
func startNginx(b *testing.B, env []string, root string) string {
	nginx, fcgiwrap := program(b, "nginx"), program(b, "fcgiwrap")
	backend := httpBackend(b, env)
	dir := b.TempDir()

	sock := filepath.Join(dir, "fcgi.sock")
	fcgi := startDaemon(b, "fcgiwrap", filepath.Join(dir, "fcgiwrap.log"),
		exec.Command(fcgiwrap, "-c", "2", "-s", "unix:"+sock))
	fcgi.waitUntil(b, "its socket", canDial("unix", sock))

	addr := freeAddr(b)
	user := ""
	if os.Geteuid() == 0 {
		// Workers would run as nobody, who cannot read the temporary
		// directories; nginx ignores the directive when not root.
		user = "user root;\n"
	}
	conf := strings.NewReplacer("{{user}}", user, "{{dir}}", dir, "{{addr}}", addr,
		"{{backend}}", backend, "{{root}}", root).Replace(nginxConf)
	confPath := filepath.Join(dir, "nginx.conf")
	writeFile(b, confPath, conf, 0o644)
	web := startDaemon(b, "nginx", filepath.Join(dir, "nginx.log"),
		exec.Command(nginx, "-p", dir, "-c", confPath, "-e", "stderr"))
	web.waitUntil(b, "its port", canDial("tcp", addr))
	return "http://" + addr
}

// sshdConf is the configuration of OpenSSH's sshd: public keys only, from
// the authorized_keys file in the benchmark's temporary directory, each
// forced to git-shell. Port and host key are on the command line.
const sshdConf = `ListenAddress 127.0.0.1
PidFile none
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile {{dir}}/authorized_keys
AcceptEnv GIT_PROTOCOL
PrintMotd no
PrintLastLog no
UseDNS no
X11Forwarding no
AllowTcpForwarding no
LogLevel ERROR
`

// sshdAccount is the account OpenSSH's side signs in as when the
// benchmarks run as root: made by bench/setup.sh, its login shell is
// git-shell, as in git-shell(1)'s own set-up of a git account.
const sshdAccount = "gitgate-bench"

// startSSHD runs OpenSSH's sshd on a loopback port, letting the key in
// pubKey in with git-shell as the only command, and serves a copy of the
// repository at repo. It returns the address, the user name to sign in
// with and the copy's absolute path (a repository over OpenSSH is named by
// its path). As root, with the account of bench/setup.sh, the user is
// that account, whose login shell is git-shell, and the copy is its own;
// otherwise the user is the current one, whose login shell (and whatever
// its start-up files run: sshd makes bash read ~/.bashrc) is then counted
// in every OpenSSH connection, which the benchmark says on stderr. It
// skips the benchmark when sshd, git-shell or the ssh client is not
// installed.
func startSSHD(b *testing.B, pubKey, repo string) (addr, login, path string) {
	sshd, gitShell := program(b, "sshd"), program(b, "git-shell")
	program(b, "ssh")
	if os.Geteuid() == 0 {
		// sshd's privilege separation directory, as its package creates it.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			b.Fatal(err)
		}
	}
	login, path = sshdLogin(b, repo)
	dir := b.TempDir()
	// sshd reads the keys as the signing-in user: next to the account's
	// copy, or here for the current user.
	keysDir := dir
	if path != repo {
		keysDir = filepath.Dir(path)
	}
	key, err := os.ReadFile(pubKey)
	if err != nil {
		b.Fatal(err)
	}
	// git-shell is the account's login shell (sshd runs the client's
	// command with it); the current user's key forces it as the command.
	line := fmt.Sprintf("restrict,command=\"%s -c \\\"$SSH_ORIGINAL_COMMAND\\\"\" %s", gitShell, key)
	if login == sshdAccount {
		line = "restrict " + string(key)
	}
	writeFile(b, filepath.Join(keysDir, "authorized_keys"), line, 0o644)
	hostKey := writeKey(b, filepath.Join(dir, "host_ed25519"))
	confPath := filepath.Join(dir, "sshd_config")
	writeFile(b, confPath, strings.ReplaceAll(sshdConf, "{{dir}}", keysDir), 0o644)

	addr = freeAddr(b)
	_, port, _ := net.SplitHostPort(addr)
	d := startDaemon(b, "sshd", filepath.Join(dir, "sshd.log"),
		exec.Command(sshd, "-D", "-e", "-f", confPath, "-p", port, "-h", hostKey))
	d.waitUntil(b, "its port", canDial("tcp", addr))
	return addr, login, path
}

// sshdLogin picks OpenSSH's account (see startSSHD) and the path of the
// repository it serves: as sshdAccount, a copy of repo that the account
// owns (git refuses repositories of other owners) in a directory it can
// reach, removed when the benchmark ends.
func sshdLogin(b *testing.B, repo string) (login, path string) {
	me, err := user.Current()
	if err != nil {
		b.Fatal(err)
	}
	account, err := user.Lookup(sshdAccount)
	if os.Geteuid() != 0 || err != nil {
		fmt.Fprintf(os.Stderr, "%s: OpenSSH signs in as %s, whose login shell's start-up is counted (as root, bash bench/setup.sh makes the %s account)\n",
			b.Name(), me.Username, sshdAccount)
		return me.Username, repo
	}
	uid, _ := strconv.Atoi(account.Uid)
	gid, _ := strconv.Atoi(account.Gid)
	top, err := os.MkdirTemp("", "gitgate-bench-sshd-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(top) })
	if err := os.Chmod(top, 0o755); err != nil {
		b.Fatal(err)
	}
	path = filepath.Join(top, "bench.git")
	copyRepo(b, repo, path)
	err = filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		b.Fatal(err)
	}
	return sshdAccount, path
}

// httpBackend is the path of git-http-backend.
func httpBackend(b *testing.B, env []string) string {
	return filepath.Join(gittest.MustGit(b, env, "", "--exec-path"), "git-http-backend")
}

// program returns the absolute path of a command, looked up in PATH and
// then in /usr/sbin (not in every user's PATH), or skips the benchmark. The
// skip is also written to stderr: go test shows skips only with -v, and a
// comparator's line missing from "make bench" should not go unexplained.
func program(b *testing.B, name string) string {
	path, err := exec.LookPath(name)
	if err != nil {
		path = filepath.Join("/usr/sbin", name)
		if st, serr := os.Stat(path); serr != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			msg := fmt.Sprintf("%s skipped: %s is not installed (run: bash bench/setup.sh)", b.Name(), name)
			fmt.Fprintln(os.Stderr, msg)
			b.Skip(msg)
		}
	}
	abs, err := filepath.Abs(path) // sshd must be started by its absolute path
	if err != nil {
		b.Fatal(err)
	}
	return abs
}

// clientKey names the files of an SSH key pair.
type clientKey struct {
	private string // OpenSSH private key, mode 0600
	public  string // authorized_keys line
}

// newClientKey makes the ed25519 key the git client signs in with.
func newClientKey(b *testing.B, dir string) clientKey {
	path := writeKey(b, filepath.Join(dir, "id_ed25519"))
	return clientKey{private: path, public: path + ".pub"}
}

// writeKey writes a new ed25519 key pair to path and path.pub, as
// ssh-keygen would, and returns path.
func writeKey(b *testing.B, path string) string {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		b.Fatal(err)
	}
	sshPub, err := gossh.NewPublicKey(pub)
	if err != nil {
		b.Fatal(err)
	}
	writeFile(b, path, string(pem.EncodeToMemory(block)), 0o600)
	writeFile(b, path+".pub", string(gossh.MarshalAuthorizedKey(sshPub)), 0o644)
	return path
}

func writeFile(b testing.TB, path, content string, mode os.FileMode) {
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		b.Fatal(err)
	}
}

// freeAddr returns a loopback address with a port free a moment ago, for
// servers that cannot pick their own and report it.
func freeAddr(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// canDial reports whether something accepts connections at addr.
func canDial(network, addr string) func() bool {
	return func() bool {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
}

// daemon is a server process started for a benchmark: in a process group
// of its own, with its output in a log file. It is stopped, with all its
// group, and reaped when the benchmark ends.
type daemon struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{} // closed once the process is reaped
}

// startDaemon starts cmd with stdout and stderr in the file logPath.
func startDaemon(b *testing.B, name, logPath string, cmd *exec.Cmd) *daemon {
	logFile, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer logFile.Close() // the child has its own descriptor
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Its own cgroup, entered before it runs its first instruction, so
	// that everything it starts is counted (see cgroup_test.go).
	group := newCPUGroup(name)
	var groupFD *os.File
	if group != nil {
		if groupFD, err = os.Open(group.dir); err == nil {
			cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(groupFD.Fd())
		}
	}
	err = cmd.Start()
	if groupFD != nil {
		groupFD.Close()
	}
	if err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	d := &daemon{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	if group != nil {
		if err := group.enter(cmd.Process.Pid); err != nil { // already in: registers it
			b.Fatalf("%s's cgroup: %v", name, err)
		}
	}
	go func() {
		cmd.Wait()
		close(d.exited)
	}()
	b.Cleanup(func() {
		d.stop()
		if group != nil {
			group.remove(cmd.Process.Pid)
		}
	})
	return d
}

// stop sends SIGTERM to the daemon's process group, gives it stopGrace to
// exit, then kills whatever is left of the group and waits for the reaping.
func (d *daemon) stop() {
	group := -d.cmd.Process.Pid
	if err := syscall.Kill(group, syscall.SIGTERM); errors.Is(err, syscall.ESRCH) {
		<-d.exited
		return
	}
	select {
	case <-d.exited:
	case <-time.After(stopGrace):
	}
	syscall.Kill(group, syscall.SIGKILL) // workers or children left behind
	<-d.exited
}

// output is what the daemon has written so far.
func (d *daemon) output() string {
	out, _ := os.ReadFile(d.log)
	return string(out)
}

// waitUntil polls ready until it holds, failing the benchmark with the
// daemon's output if the daemon exits first or startTimeout passes.
func (d *daemon) waitUntil(b *testing.B, what string, ready func() bool) {
	deadline := time.Now().Add(startTimeout)
	for !ready() {
		if time.Now().After(deadline) {
			b.Fatalf("%s: no %s after %v; its output:\n%s", d.name, what, startTimeout, d.output())
		}
		select {
		case <-d.exited:
			b.Fatalf("%s exited (%v) before %s; its output:\n%s", d.name, d.cmd.ProcessState, what, d.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
