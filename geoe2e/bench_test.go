package geoe2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/internal/gittest"
)

// sites is a primary with secondaries, for the benchmarks.
type sites struct {
	env       []string
	work      string
	primary   *gate
	secs      []*gate
	dev       string
	secondary func(name string) *gate // starts one more secondary
}

// startSites starts a primary with n secondaries; the primary holds
// group/project with one commit and a user dev who may write.
func startSites(b testing.TB, n int) *sites {
	work := b.TempDir()
	env := append(gittest.Env(b), "GITGATE_LOG_LEVEL=warn")
	P := filepath.Join(work, "primary")
	os.MkdirAll(filepath.Join(P, "secrets"), 0o750)
	s := &sites{env: env, work: work}
	var yaml strings.Builder
	yaml.WriteString("secondaries:\n")
	names := []string{"eu", "us", "asia", "late"}
	for _, node := range names {
		raw := make([]byte, 32)
		rand.Read(raw)
		secret := []byte(hex.EncodeToString(raw))
		for _, f := range []string{filepath.Join(P, "secrets", node+".key"), filepath.Join(work, node+".key")} {
			if err := os.WriteFile(f, secret, 0o600); err != nil {
				b.Fatal(err)
			}
		}
		fmt.Fprintf(&yaml, "  - name: %s\n    secret_file: secrets/%s.key\n", node, node)
	}
	os.WriteFile(filepath.Join(P, "geo.yaml"), []byte(yaml.String()), 0o644)
	mustCLI(b, env, P, "repo", "create", "group/project", "--readme")
	mustCLI(b, env, P, "user", "add", "dev")
	mustCLI(b, env, P, "access", "grant", "*", "--user", "dev", "--level", "write")
	mustCLI(b, env, P, "access", "grant", "group/*", "--user", "dev", "--level", "write")
	s.dev = mustCLI(b, env, P, "token", "create", "dev")
	s.primary = &gate{t: b, name: "primary", data: P, env: env, logPath: filepath.Join(work, "primary.log"),
		args: []string{"--geo-role", "primary"}}
	startGate(b, s.primary)
	b.Cleanup(s.primary.stop)
	s.secondary = func(node string) *gate {
		g := &gate{t: b, name: node, data: filepath.Join(work, node), env: env, logPath: filepath.Join(work, node+".log"),
			args: []string{"--geo-role", "secondary", "--geo-primary-url", s.primary.url(), "--geo-node-name", node,
				"--geo-secret-file", filepath.Join(work, node+".key")}}
		startGate(b, g)
		b.Cleanup(g.stop)
		return g
	}
	for i := range n {
		s.secs = append(s.secs, s.secondary(names[i]))
	}
	return s
}

func (s *sites) url(g *gate, repo string) string {
	return "http://dev:" + s.dev + "@" + g.http + "/" + repo + ".git"
}

// BenchmarkPushVisible measures, over GEO_BENCH_PUSHES (default 200) small
// pushes per iteration, the time from "git push" returning on the primary
// until "git ls-remote" on each of 2 secondaries shows the new commit, and
// reports its median and 99th percentile (one sample per push and
// secondary).
func BenchmarkPushVisible(b *testing.B) {
	pushes := envInt("GEO_BENCH_PUSHES", 200)
	s := startSites(b, 2)
	for _, g := range s.secs {
		await(b, "initial sync", func() bool { return lsRemote(b, s.env, s.url(g, "group/project")) != "" })
	}
	clone := filepath.Join(s.work, "clone")
	gittest.MustGit(b, s.env, s.work, "clone", "-q", s.url(s.primary, "group/project"), clone)
	var samples []time.Duration
	b.ResetTimer()
	for range b.N {
		for i := range pushes {
			gittest.MustGit(b, s.env, clone, "commit", "-q", "--allow-empty", "-m", "push "+strconv.Itoa(i))
			head := gittest.MustGit(b, s.env, clone, "rev-parse", "HEAD")
			gittest.MustGit(b, s.env, clone, "push", "-q", "origin", "main")
			start := time.Now()
			pending := slices.Clone(s.secs)
			for n := 0; len(pending) > 0; n++ {
				if n == 10000 {
					b.Fatalf("push %d never became visible", i)
				}
				for j := 0; j < len(pending); j++ {
					r := gittest.Git(b, s.env, "", "ls-remote", s.url(pending[j], "group/project"), "refs/heads/main")
					if strings.HasPrefix(r.Stdout, head) {
						samples = append(samples, time.Since(start))
						pending = slices.Delete(pending, j, j+1)
						j--
					}
				}
			}
		}
	}
	b.StopTimer()
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(samples[len(samples)*99/100].Milliseconds()), "p99-ms")
	b.ReportMetric(float64(len(samples)), "samples")
}

// BenchmarkInitialSync measures the full initial sync of a generated
// repository of GEO_BENCH_MB (default 300) MB of incompressible data by a
// new secondary, against a plain "git clone --mirror" of it from the
// primary, each from a cold pack-objects cache, and reports both and their
// ratio.
func BenchmarkInitialSync(b *testing.B) {
	mb := envInt("GEO_BENCH_MB", 300)
	s := startSites(b, 0)
	work := filepath.Join(s.work, "gen")
	gittest.MustGit(b, s.env, s.work, "clone", "-q", s.url(s.primary, "group/project"), work)
	const files = 10
	for c := range 3 {
		for f := range files {
			data := make([]byte, mb<<20/(3*files))
			rand.Read(data)
			if err := os.WriteFile(filepath.Join(work, fmt.Sprintf("blob-%d-%d.bin", c, f)), data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		gittest.MustGit(b, s.env, work, "add", ".")
		gittest.MustGit(b, s.env, work, "commit", "-q", "-m", "data "+strconv.Itoa(c))
	}
	gittest.MustGit(b, s.env, work, "push", "-q", "origin", "main")
	want := lsRemote(b, s.env, s.url(s.primary, "group/project"))
	var mirror, sync time.Duration
	b.ResetTimer()
	for i := range b.N {
		dest := filepath.Join(s.work, "mirror"+strconv.Itoa(i)+".git")
		start := time.Now()
		cmd := exec.Command("git", "clone", "-q", "--mirror", s.url(s.primary, "group/project"), dest)
		cmd.Env = s.env
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("clone --mirror: %v %s", err, out)
		}
		mirror += time.Since(start)
		os.RemoveAll(dest)
		// A restart empties the primary's pack-objects cache: the
		// secondary's fetch asks for the same pack as the mirror clone
		// and would otherwise be served it from the cache.
		s.primary.stop()
		startGate(b, s.primary)

		start = time.Now()
		g := s.secondary("late")
		path := filepath.Join(g.data, "repositories", "group", "project.git")
		for n := 0; ; n++ {
			if n == 1_000_000 {
				b.Fatal("the secondary never synced")
			}
			if _, err := os.Stat(path); err == nil && lsRemote(b, s.env, s.url(g, "group/project")) == want {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		sync += time.Since(start)
		g.stop()
		os.RemoveAll(g.data)
		g.http, g.ssh = "", ""
	}
	b.StopTimer()
	b.ReportMetric(mirror.Seconds()/float64(b.N), "mirror-s")
	b.ReportMetric(sync.Seconds()/float64(b.N), "sync-s")
	b.ReportMetric(sync.Seconds()/mirror.Seconds(), "ratio")
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
