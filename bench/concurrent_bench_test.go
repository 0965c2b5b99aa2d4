package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitgate/gitgate/internal/gittest"
)

// The repository of BenchmarkConcurrentClones: bigFiles paths of 1 MiB of
// random bytes, rewritten by bigRewrites commits (so the history holds
// about 125 MiB that cannot be compressed, the tip a fifth of it), and
// textCommits small commits for pack-objects to count and delta.
const (
	bigFiles    = 25
	bigRewrites = 100
	bigSize     = 1 << 20
	textCommits = 2000
	// concurrentRepoName is the generated repository's directory under
	// bench/out, kept between runs (generation is deterministic).
	concurrentRepoName = "concurrent-v1.git"
	// cacheMaxAge is the cache's max age in BenchmarkSSHCosts, which clones
	// one at a time: each clone starts cold once the previous pack expired.
	cacheMaxAge = time.Second
)

// BenchmarkConcurrentClones starts N clones of the same commit at once,
// full and --depth 1, through the gate with its pack-objects cache, the gate
// without it (git runs pack-objects itself, --pack-objects-hook=false) and
// nginx + fcgiwrap + git-http-backend, on two repositories: repo=source, the
// source-like history of sourceRepo (git's own shape: pack generation is
// CPU work), and repo=random, concurrentRepo's incompressible blobs (the
// cost is in moving bytes). It reports per batch: the servers' CPU seconds
// (the server processes and all their children, from /proc: utime+stime of
// the live ones and cutime+cstime of those they reaped), the wall time
// until the last clone ended, the failed clones, and the 1-minute load
// average when the batch started (the machine may be shared). Every batch
// starts with a cold cache. The gate with the cache runs with the default
// limits (the process limiter queues clones 9 to 32 of one address); the
// gate without it has them lifted, so that it measures git's own cost.
func BenchmarkConcurrentClones(b *testing.B) {
	for _, r := range []struct {
		name string
		make func(testing.TB, []string) string
	}{{"source", sourceRepo}, {"random", concurrentRepo}} {
		b.Run("repo="+r.name, func(b *testing.B) { concurrentClones(b, r.make) })
	}
}

func concurrentClones(b *testing.B, makeRepo func(testing.TB, []string) string) {
	env := gittest.Env(b)
	src := makeRepo(b, env)
	dir := b.TempDir()
	key := newClientKey(b, dir)
	unlimited := []string{"--max-git-per-repo", "-1", "--max-git-per-user", "-1", "--max-git", "-1"}

	type server struct {
		name  string
		url   string
		repo  string // the repository's directory, whose tip each batch moves
		roots func() []int
	}
	var servers []server
	for _, g := range []struct {
		name string
		args []string
	}{
		{"gate-cache", nil}, // the default limits and max age
		{"gate-nocache", append([]string{"--pack-objects-hook=false"}, unlimited...)},
	} {
		gdir := filepath.Join(dir, g.name)
		repo := filepath.Join(gdir, "data", "repositories", "bench.git")
		copyRepo(b, src, repo)
		gp := startGate(b, gdir, key.public, g.args...)
		servers = append(servers, server{g.name, gp.httpURL + "/bench.git", repo, func() []int { return []int{gp.pid} }})
	}
	if _, err := exec.LookPath("nginx"); err == nil || fileExists("/usr/sbin/nginx") {
		root := filepath.Join(dir, "gate-nocache", "data", "repositories")
		self := os.Getpid()
		url := startNginx(b, env, root)
		servers = append(servers, server{"nginx", url + "/bench.git", filepath.Join(root, "bench.git"), func() []int {
			return childrenNamed(self, "nginx", "fcgiwrap")
		}})
	} else {
		b.Log("nginx not installed (bench/setup.sh): no nginx comparison")
	}

	for _, s := range servers {
		for _, depth := range []string{"full", "depth1"} {
			for _, n := range []int{1, 8, 32} {
				b.Run(fmt.Sprintf("%s/%s/n=%d", s.name, depth, n), func(b *testing.B) {
					var cpu, wall time.Duration
					var failed int
					var load float64
					for b.Loop() {
						newTip(b, env, s.repo) // a cold cache: no earlier batch asked for this commit
						load += loadAverage()
						before := treeCPU(b, s.roots())
						start := time.Now()
						failed += cloneBatch(b, env, s.url, depth == "depth1", n)
						wall += time.Since(start)
						cpu += treeCPU(b, s.roots()) - before
					}
					runs := float64(b.N)
					b.ReportMetric(cpu.Seconds()/runs, "server-cpu-s/batch")
					b.ReportMetric(wall.Seconds()/runs, "wall-s/batch")
					b.ReportMetric(float64(failed)/runs, "failed/batch")
					b.ReportMetric(load/runs, "load1")
				})
			}
		}
	}
}

// newTip moves the main branch of the repository at dir to a new commit
// with the same tree, so that the next batch's wants differ from every
// earlier one: its first clone finds the pack-objects cache cold, while the
// batch's clones all ask for one commit and the cache keeps its default
// max age (a short max age would expire the pack while the batch's later
// clones still arrive, and generate it again: earlier runs measured that).
// The gate's hooks are not run: this is the server's own change.
func newTip(b *testing.B, env []string, dir string) {
	b.Helper()
	tip := strings.TrimSpace(gittest.MustGit(b, env, dir, "rev-parse", "refs/heads/main"))
	commit := strings.TrimSpace(gittest.MustGit(b, env, dir, "commit-tree", tip+"^{tree}", "-p", tip,
		"-m", "bench batch "+strconv.FormatInt(time.Now().UnixNano(), 10)))
	gittest.MustGit(b, env, dir, "-c", "core.hooksPath=/dev/null", "update-ref", "refs/heads/main", commit, tip)
}

// loadAverage is the machine's 1-minute load average (0 if unknown).
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// cloneBatch runs n bare clones of url at once and returns how many failed.
func cloneBatch(b *testing.B, env []string, url string, shallow bool, n int) int {
	dir := b.TempDir()
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"clone", "-q", "--bare"}
			if shallow {
				args = append(args, "--depth", "1")
			}
			r := gittest.Git(b, env, dir, append(args, url, "c"+strconv.Itoa(i))...)
			if r.Err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	os.RemoveAll(dir)
	return failed
}

// concurrentRepo returns the generated repository, made once and kept in
// bench/out.
func concurrentRepo(b testing.TB, env []string) string {
	return importedRepo(b, env, concurrentRepoName, func(stdin *bufio.Writer) {
		rng := rand.New(rand.NewChaCha8([32]byte{1}))
		blob := make([]byte, bigSize)
		when := int64(1700000000)
		commit := 0
		write := func(format string, args ...any) { fmt.Fprintf(stdin, format, args...) }
		newCommit := func() {
			msg := fmt.Sprintf("commit %d", commit)
			write("commit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\ndata %d\n%s\n", when+int64(commit), len(msg), msg)
			commit++
		}
		bigBlob := func(path string) {
			for i := range blob {
				blob[i] = byte(rng.Uint32())
			}
			write("M 100644 inline %s\ndata %d\n", path, len(blob))
			stdin.Write(blob)
			write("\n")
		}
		newCommit()
		for i := range bigFiles {
			bigBlob(fmt.Sprintf("big/%02d.bin", i))
		}
		for c := range textCommits {
			newCommit()
			content := fmt.Sprintf("file %d, revision %d\n%s", c%50, c, strings.Repeat(fmt.Sprintf("line %d of commit %d\n", rng.Int(), c), 40))
			write("M 100644 inline src/file%02d.txt\ndata %d\n%s\n", c%50, len(content), content)
			if c%(textCommits/bigRewrites) == 0 {
				bigBlob(fmt.Sprintf("big/%02d.bin", (c/(textCommits/bigRewrites))%bigFiles))
			}
		}
	})
}

// copyRepo copies a repository (the gate installs hooks in it).
func copyRepo(b testing.TB, src, dst string) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		b.Fatalf("copy repository: %v\n%s", err, out)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// procStat is one /proc/PID/stat: parent, name and CPU ticks (own and of
// reaped children).
type procStat struct {
	ppid  int
	comm  string
	ticks int64
}

func readProcs() map[int]procStat {
	procs := map[int]procStat{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
		if open < 0 || end < 0 {
			continue
		}
		f := strings.Fields(string(data[end+1:]))
		// f[0] is field 3 (state); utime..cstime are fields 14..17.
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		var ticks int64
		for _, v := range f[11:15] {
			n, _ := strconv.ParseInt(v, 10, 64)
			ticks += n
		}
		procs[pid] = procStat{ppid: ppid, comm: string(data[open+1 : end]), ticks: ticks}
	}
	return procs
}

// treeCPU is the CPU time of the processes roots and all their
// descendants: for a daemon in a cgroup of its own (cgroup_test.go), its
// cgroup's usage; otherwise, from /proc, the live processes' and what they
// reaped.
func treeCPU(b *testing.B, roots []int) time.Duration {
	procs := readProcs()
	children := map[int][]int{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	var ticks int64
	var grouped time.Duration
	seen := map[int]bool{}
	var queue []int
	for _, pid := range roots {
		if cpu, ok := groupCPU(pid); ok {
			grouped += cpu // the daemon's cgroup counts all it started
		} else {
			queue = append(queue, pid)
		}
	}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		ticks += procs[pid].ticks
		queue = append(queue, children[pid]...)
	}
	const hz = 100 // USER_HZ on Linux
	return grouped + time.Duration(ticks)*time.Second/hz
}

// childrenNamed lists the children of parent whose name is one of names.
func childrenNamed(parent int, names ...string) []int {
	var pids []int
	for pid, p := range readProcs() {
		for _, n := range names {
			if p.ppid == parent && p.comm == n {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}
