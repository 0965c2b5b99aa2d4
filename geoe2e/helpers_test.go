package geoe2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gitgate/gitgate/internal/gittest"
)

// binary is the gitgate binary built once for the package.
var binary string

func TestMain(m *testing.M) {
	if _, err := exec.LookPath("git"); err != nil {
		fmt.Fprintln(os.Stderr, "geoe2e: SKIPPING ALL TESTS: git is not installed")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "geoe2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "gitgate")
	args := []string{"build", "-o", binary}
	if os.Getenv("GEOE2E_RACE") == "1" { // the gates under the race detector
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/gitgate")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "geoe2e: cannot build gitgate:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// await polls cond every 25 ms, at most 1200 times; the test fails if it
// never holds. The bound is a count, not a clock assertion.
func await(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for range 1200 {
		if cond() {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("gave up waiting: %s", what)
}

// gate is one running "gitgate serve".
type gate struct {
	t       testing.TB
	name    string
	data    string
	args    []string
	env     []string
	http    string // host:port
	ssh     string
	logPath string

	cmd  *exec.Cmd
	done chan struct{}
}

func (g *gate) url() string { return "http://" + g.http }

// cli runs a gitgate command on the gate's data dir.
func cli(t testing.TB, env []string, data string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"--data-dir", data}, args...)...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func mustCLI(t testing.TB, env []string, data string, args ...string) string {
	t.Helper()
	out, errs, err := cli(t, env, data, args...)
	if err != nil {
		t.Fatalf("gitgate %s: %v\n%s", strings.Join(args, " "), err, errs)
	}
	return strings.TrimSpace(out)
}

var listening = regexp.MustCompile(`^(\w+): listening on (\S+)`)

// startGate runs "gitgate serve" with args; ports 0 unless the gate ran
// before (a restart keeps its addresses).
func startGate(t testing.TB, g *gate) {
	t.Helper()
	httpAddr, sshAddr := "127.0.0.1:0", "127.0.0.1:0"
	if g.http != "" {
		httpAddr, sshAddr = g.http, g.ssh
	}
	args := append([]string{"--data-dir", g.data, "serve", "--http-listen", httpAddr, "--ssh-listen", sshAddr,
		"--shutdown-grace", "2s"}, g.args...)
	cmd := exec.Command(binary, args...)
	cmd.Env = g.env
	logf, err := os.OpenFile(g.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g.cmd, g.done = cmd, make(chan struct{})
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		n := 0
		// Only the first two lines are read into g: a gate that switches
		// its Geo role restarts in-process on the same addresses and says
		// so again, while the test reads g's addresses.
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil && n < 2 {
				switch m[1] {
				case "http":
					g.http = strings.TrimPrefix(m[2], "http://")
				case "ssh":
					g.ssh = strings.TrimPrefix(m[2], "ssh://git@")
				}
				if n++; n == 2 {
					close(found)
				}
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { cmd.Wait(); close(g.done) }()
	select {
	case <-found:
	case <-g.done:
		t.Fatalf("%s exited at start; log:\n%s", g.name, readFile(g.logPath))
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not start listening; log:\n%s", g.name, readFile(g.logPath))
	}
}

// stop ends the gate with SIGTERM (SIGKILL if it hangs) and waits.
func (g *gate) stop() {
	if g.cmd == nil {
		return
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(20 * time.Second):
		g.cmd.Process.Kill()
		<-g.done
	}
	g.cmd = nil
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// httpGet fetches a URL with optional headers; it returns status and body.
func httpGet(t testing.TB, u string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// lsRemote lists a remote's refs ("" on failure).
func lsRemote(t testing.TB, env []string, remote string) string {
	t.Helper()
	r := gittest.Git(t, env, "", "ls-remote", remote)
	if r.Err != nil {
		return ""
	}
	return r.Stdout
}

// cutProxy forwards to the primary and, when armed, cuts the next
// first git-upload-pack answer longer than a few kilobytes (a pack, not a
// ref listing) off there: a primary that dies in the middle of a pack.
type cutProxy struct {
	armed atomic.Bool
	cuts  atomic.Int32
	srv   *http.Server
	addr  string
}

func startCutProxy(t testing.TB, target string) *cutProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.ErrorLog = log.New(io.Discard, "", 0)
	rp.ModifyResponse = func(resp *http.Response) error {
		if strings.HasSuffix(resp.Request.URL.Path, "/git-upload-pack") && p.armed.Load() {
			resp.Body = &cutBody{ReadCloser: resp.Body, left: 16 << 10, p: p}
		}
		return nil
	}
	ln := listenLoopback(t)
	p.addr = ln.Addr().String()
	p.srv = &http.Server{Handler: rp}
	go p.srv.Serve(ln)
	t.Cleanup(func() { p.srv.Close() })
	return p
}

type cutBody struct {
	io.ReadCloser
	left int
	p    *cutProxy
}

func (b *cutBody) Read(q []byte) (int, error) {
	if b.left <= 0 {
		if b.p.armed.CompareAndSwap(true, false) {
			b.p.cuts.Add(1)
			panic(http.ErrAbortHandler) // the connection drops mid-pack
		}
		return b.ReadCloser.Read(q)
	}
	if len(q) > b.left {
		q = q[:b.left]
	}
	n, err := b.ReadCloser.Read(q)
	b.left -= n
	return n, err
}

func listenLoopback(t testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
