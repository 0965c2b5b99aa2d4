package bench

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
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
// some large files) through one gitgate process and through the servers
// users would otherwise run, in the same run. Each sub-benchmark clones
// through the gate and its comparators in turn in every iteration and
// reports the mean time per clone of each, the ratios gate/comparator, and
// the gate process's peak resident memory so far (VmHWM):
//
//   - cgi: gate over smart HTTP vs git clone --no-local file:// (git alone,
//     no HTTP at all) and vs git-http-backend as a CGI under Go's
//     net/http/cgi;
//   - nginx: gate over smart HTTP vs nginx + fcgiwrap + git-http-backend;
//   - ssh: gate over SSH vs OpenSSH's sshd + git-shell.
//
// A comparator whose programs are not installed (see bench/setup.sh) is
// skipped; the cgi sub-benchmark needs only git.
func BenchmarkClone(b *testing.B) {
	f := newFixture(b)

	b.Run("cgi", func(b *testing.B) {
		cgiURL := startCGI(b, f.env, f.root)
		f.benchClones(b,
			target{name: "gate", url: f.gate.httpURL + "/bench.git", env: f.env},
			target{name: "file", url: "file://" + f.repo, env: f.env},
			target{name: "cgi", url: cgiURL + "/bench.git", env: f.env},
		)
	})
	b.Run("nginx", func(b *testing.B) {
		nginxURL := startNginx(b, f.env, f.root)
		f.benchClones(b,
			target{name: "gate", url: f.gate.httpURL + "/bench.git", env: f.env},
			target{name: "nginx", url: nginxURL + "/bench.git", env: f.env},
		)
	})
	b.Run("ssh", func(b *testing.B) {
		sshdAddr, login, path := startSSHD(b, f.key.public, f.repo)
		env := f.sshEnv()
		f.benchClones(b,
			target{name: "gate-ssh", url: "ssh://git@" + f.gate.sshAddr + "/bench.git", env: env},
			target{name: "openssh", url: "ssh://" + login + "@" + sshdAddr + path, env: env},
		)
	})
}

// fixture is what the sub-benchmarks of BenchmarkClone share: the
// generated repository, a running gate serving it, and a client key the
// gate knows.
type fixture struct {
	dir  string   // the benchmark's temporary directory
	env  []string // environment of the git client
	root string   // directory of the served repositories
	repo string   // absolute path of the generated repository
	key  clientKey
	gate *gateProcess
}

// newFixture generates the repository and starts the gate with user
// "bench" (the fixture's key) and anonymous read access to it.
func newFixture(b *testing.B) *fixture {
	f := &fixture{env: gittest.Env(b), dir: b.TempDir()}
	f.root = filepath.Join(f.dir, "data", "repositories")
	f.repo = generateRepo(b, f.env, f.root, "bench")
	f.key = newClientKey(b, f.dir)
	f.gate = startGate(b, f.dir, f.key.public)
	return f
}

// sshEnv is the client environment for cloning over SSH: the same ssh
// options for every server, with the fixture's key and no known_hosts, plus
// the given -o options.
func (f *fixture) sshEnv(options ...string) []string {
	ssh := "ssh -F /dev/null -i " + f.key.private +
		" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null" +
		" -o BatchMode=yes -o LogLevel=ERROR"
	for _, o := range options {
		ssh += " -o " + o
	}
	return append(f.env[:len(f.env):len(f.env)], "GIT_SSH_COMMAND="+ssh)
}

// target is one way to clone the generated repository.
type target struct {
	name string // metric prefix: "gate" reports gate-s/clone
	url  string
	env  []string // the git client's environment
}

// benchClones clones from every target once per iteration, rotating which
// goes first so that none always runs on a cache warmed by another. It
// reports each target's mean wall time per clone, the ratio of the first
// target's total time to each other's, and the gate's peak memory.
func (f *fixture) benchClones(b *testing.B, targets ...target) {
	total := make([]time.Duration, len(targets))
	for i := 0; b.Loop(); i++ {
		for j := range targets {
			k := (i + j) % len(targets)
			total[k] += timeClone(b, targets[k])
		}
	}
	n := float64(b.N)
	for k, t := range targets {
		b.ReportMetric(total[k].Seconds()/n, t.name+"-s/clone")
		if k > 0 {
			b.ReportMetric(total[0].Seconds()/total[k].Seconds(), targets[0].name+"/"+t.name)
		}
	}
	b.ReportMetric(float64(peakRSS(b, f.gate.pid))/(1<<20), "gate-peak-MiB")
}

// timeClone makes a bare clone of t and returns how long git took.
func timeClone(b *testing.B, t target) time.Duration {
	dst := filepath.Join(b.TempDir(), "clone")
	start := time.Now()
	gittest.MustGit(b, t.env, "", "clone", "-q", "--no-local", "--bare", t.url, dst)
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
