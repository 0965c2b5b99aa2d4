package hooks_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/hooks"
)

// BenchmarkPreReceive runs the built gitgate binary as git runs the hook, one
// process per run, and reports the median wall time of a run: "binary" execs
// gitgate directly, "script" goes through the installed sh wrapper in a
// repository. The state is read from a data dir, not in maintenance. One op
// is runsPerOp runs, so that even "-benchtime 3x" gives a useful median.
func BenchmarkPreReceive(b *testing.B) {
	const runsPerOp = 50
	bin := gitgateBinary(b)
	dataDir := b.TempDir()
	gitDir := filepath.Join(b.TempDir(), "project.git")
	in, err := hooks.NewInstaller(hooks.Script{Binary: bin, DataDir: dataDir})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := in.Install(gitDir); err != nil {
		b.Fatal(err)
	}
	const refLine = "0000000000000000000000000000000000000000 1111111111111111111111111111111111111111 refs/heads/main\n"
	for _, bc := range []struct {
		name string
		argv []string
	}{
		{"binary", []string{bin, "hook", hooks.HookName, "--data-dir", dataDir}},
		{"script", []string{filepath.Join("hooks", hooks.HookName)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			times := make([]time.Duration, 0, b.N*runsPerOp)
			b.ResetTimer()
			for range b.N * runsPerOp {
				cmd := exec.Command(bc.argv[0], bc.argv[1:]...)
				cmd.Dir = gitDir
				cmd.Env = os.Environ()
				cmd.Stdin = strings.NewReader(refLine)
				start := time.Now()
				out, err := cmd.CombinedOutput()
				times = append(times, time.Since(start))
				if err != nil {
					b.Fatalf("%v: %v\n%s", bc.argv, err, out)
				}
			}
			b.StopTimer()
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2])/float64(time.Millisecond), "ms/median")
		})
	}
}

// BenchmarkPushOverhead measures what the installed hooks cost a real push:
// one commit pushed with git over the local transport (git runs
// receive-pack, its hooks and the ref transaction as for any server) to a
// bare repository with gitgate's hooks (pre-receive, and
// reference-transaction in "prepared" and "committed") and to one without,
// alternating. It reports the median push time of each and their
// difference, the hooks' cost per push ("hooks-ms/push").
func BenchmarkPushOverhead(b *testing.B) {
	const pushesPerOp = 20
	bin := gitgateBinary(b)
	home := b.TempDir()
	env := append(gitEnv(home), "GIT_AUTHOR_NAME=Bench", "GIT_AUTHOR_EMAIL=bench@example.com",
		"GIT_COMMITTER_NAME=Bench", "GIT_COMMITTER_EMAIL=bench@example.com")
	git := func(dir string, args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	dataDir := b.TempDir()
	root := b.TempDir()
	hooked, plain := filepath.Join(root, "hooked.git"), filepath.Join(root, "plain.git")
	git(root, "init", "-q", "--bare", hooked)
	git(root, "init", "-q", "--bare", plain)
	in, err := hooks.NewInstaller(hooks.Script{Binary: bin, DataDir: dataDir})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := in.Install(hooked); err != nil {
		b.Fatal(err)
	}
	work := filepath.Join(root, "work")
	git(root, "init", "-q", "-b", "main", work)
	times := map[string][]time.Duration{}
	b.ResetTimer()
	for i := range b.N * pushesPerOp {
		git(work, "commit", "-q", "--allow-empty", "-m", fmt.Sprint("commit ", i))
		for j := range 2 {
			target := []string{hooked, plain}[(i+j)%2]
			start := time.Now()
			git(work, "push", "-q", target, "main")
			times[target] = append(times[target], time.Since(start))
		}
	}
	b.StopTimer()
	median := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)/2]) / float64(time.Millisecond)
	}
	h, p := median(times[hooked]), median(times[plain])
	b.ReportMetric(h, "hooked-ms/push")
	b.ReportMetric(p, "plain-ms/push")
	b.ReportMetric(h-p, "hooks-ms/push")
	b.ReportMetric(0, "ns/op") // the time per iteration says nothing here
}
