package hooks_test

import (
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
