package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/internal/gittest"
)

// Size of the generated repository.
const (
	commits    = 3000
	textFiles  = 50
	largeFiles = 3
	largeSize  = 4 << 20 // incompressible bytes each
)

// BenchmarkClone clones one generated repository (thousands of commits,
// some large files) three ways in each iteration, in the same run:
//
//   - gate: git clone over smart HTTP through a gitgate process,
//   - file: git clone --no-local file:// (git alone, no HTTP at all),
//   - cgi:  git clone over smart HTTP through git-http-backend (as a CGI
//     under Go's net/http/cgi, standing in for a web server + CGI).
//
// It reports the wall time of each, the ratios gate/file and gate/cgi, and
// the gate process's peak resident memory (VmHWM).
func BenchmarkClone(b *testing.B) {
	env := gittest.Env(b)
	dir := b.TempDir()
	root := filepath.Join(dir, "data", "repositories")
	repo := generateRepo(b, env, root, "bench")

	gateURL, gatePID := startGate(b, dir)
	cgiURL := startCGI(b, env, root)

	var gate, file, viaCGI time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		gate += timeClone(b, env, gateURL+"/bench.git")
		file += timeClone(b, env, "file://"+repo)
		viaCGI += timeClone(b, env, cgiURL+"/bench.git")
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(gate.Seconds()/n, "gate-s/clone")
	b.ReportMetric(file.Seconds()/n, "file-s/clone")
	b.ReportMetric(viaCGI.Seconds()/n, "cgi-s/clone")
	b.ReportMetric(gate.Seconds()/file.Seconds(), "gate/file")
	b.ReportMetric(gate.Seconds()/viaCGI.Seconds(), "gate/cgi")
	b.ReportMetric(float64(peakRSS(b, gatePID))/(1<<20), "gate-peak-MiB")
}

func timeClone(b *testing.B, env []string, url string) time.Duration {
	dst := filepath.Join(b.TempDir(), "clone")
	start := time.Now()
	gittest.MustGit(b, env, "", "clone", "-q", "--no-local", "--bare", url, dst)
	d := time.Since(start)
	os.RemoveAll(dst)
	return d
}

// generateRepo writes the repository with git fast-import and packs it as a
// server would keep it.
func generateRepo(b *testing.B, env []string, root, name string) string {
	path := filepath.Join(root, name+".git")
	gittest.MustGit(b, env, "", "init", "-q", "--bare", path)
	var stream bytes.Buffer
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < largeFiles; i++ {
		data := make([]byte, largeSize)
		rng.Read(data)
		fmt.Fprintf(&stream, "blob\nmark :%d\ndata %d\n%s\n", i+1, len(data), data)
	}
	when := int64(1700000000)
	for c := 0; c < commits; c++ {
		msg := fmt.Sprintf("commit %d", c)
		fmt.Fprintf(&stream, "commit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\ndata %d\n%s\n", when+int64(c), len(msg), msg)
		if c == 0 {
			for i := 0; i < largeFiles; i++ {
				fmt.Fprintf(&stream, "M 100644 :%d large/%d.bin\n", i+1, i)
			}
		}
		content := fmt.Sprintf("file %d, revision %d\n%s", c%textFiles, c, strings.Repeat(fmt.Sprintf("line %d of commit %d\n", rng.Int(), c), 20))
		fmt.Fprintf(&stream, "M 100644 inline src/file%02d.txt\ndata %d\n%s\n", c%textFiles, len(content), content)
	}
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir, cmd.Env, cmd.Stdin = path, env, &stream
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("fast-import: %v\n%s", err, out)
	}
	gittest.MustGit(b, env, path, "repack", "-adq")
	return path
}

// startGate builds and runs "gitgate serve" as its own process.
func startGate(b *testing.B, dir string) (string, int) {
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(dir, "gitgate")
	build := exec.Command("go", "build", "-o", bin, "./cmd/gitgate")
	build.Dir = filepath.Join(filepath.Dir(file), "..")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "data")
	if out, err := exec.Command(bin, "--data-dir", data, "access", "grant", "bench", "--anonymous", "--level", "read").CombinedOutput(); err != nil {
		b.Fatalf("access grant: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--data-dir", data, "--log-level", "warn",
		"serve", "--http-listen", "127.0.0.1:0", "--ssh-listen", "127.0.0.1:0")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	re := regexp.MustCompile(`^http: listening on (\S+)`)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			go func() {
				for sc.Scan() {
				}
			}()
			return m[1], cmd.Process.Pid
		}
	}
	b.Fatal("gate did not start")
	return "", 0
}

// startCGI serves root with git-http-backend through net/http/cgi.
func startCGI(b *testing.B, env []string, root string) string {
	execPath := strings.TrimSpace(gittest.MustGit(b, env, "", "--exec-path"))
	h := &cgi.Handler{
		Path: filepath.Join(execPath, "git-http-backend"),
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

// peakRSS reads a process's peak resident set size in bytes.
func peakRSS(b *testing.B, pid int) int64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no VmHWM")
	return 0
}
