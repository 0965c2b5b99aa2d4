package geoe2e

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// stepDone matches the failover's "step N/5 done in D" lines.
var stepDone = regexp.MustCompile(`(?m)^step (\d)/5 done in (\S+)$`)

// BenchmarkPlannedFailover measures "gitgate geo failover" end to end on a
// primary with 50 repositories and two secondaries in sync: the whole wall
// time and each step's (from the command's own output), on fresh sites per
// iteration (a failover changes the roles).
func BenchmarkPlannedFailover(b *testing.B) {
	const repos = 50
	for range b.N {
		b.StopTimer()
		s := newFailoverSites(b)
		for i := range repos - 1 {
			mustCLI(b, s.env, s.P, "repo", "create", fmt.Sprintf("group/r%02d", i), "--readme")
		}
		startGate(b, s.primary)
		s.eu = &gate{t: b, name: "eu", data: s.EU, env: s.env, logPath: filepath.Join(s.work, "eu.log"), args: s.secondaryArgs("eu", s.primary.url())}
		s.us = &gate{t: b, name: "us", data: s.US, env: s.env, logPath: filepath.Join(s.work, "us.log"), args: s.secondaryArgs("us", s.primary.url())}
		startGate(b, s.eu)
		startGate(b, s.us)
		s.urls["eu"], s.urls["us"] = s.eu.url(), s.us.url()
		s.geoYAML(s.P, "eu", "us")
		s.geoYAML(s.EU, "old", "us")
		var plan string
		for i := 0; ; i++ {
			out, errs, err := cli(b, s.env, s.P, "geo", "failover", "--to", "eu", "--dry-run")
			plan = out + errs
			if err == nil && !strings.Contains(out, "  blocks ") {
				break
			}
			if i == 60 {
				b.Fatalf("eu not in sync with %d repositories:\n%s", repos, plan)
			}
			time.Sleep(500 * time.Millisecond)
		}
		b.StartTimer()
		start := time.Now()
		out := mustCLI(b, s.env, s.P, "geo", "failover", "--to", "eu", "--timeout", "60s")
		total := time.Since(start)
		b.StopTimer()
		for _, m := range stepDone.FindAllStringSubmatch(out, -1) {
			if d, err := time.ParseDuration(m[2]); err == nil {
				b.ReportMetric(d.Seconds()/float64(b.N), "step"+m[1]+"-s/op")
			}
		}
		b.ReportMetric(total.Seconds()/float64(b.N), "failover-s/op")
		b.Logf("geo failover with %d repositories, 2 secondaries (%s total):\n%s", repos, total.Round(time.Millisecond), out)
		for _, g := range []*gate{s.primary, s.eu, s.us} {
			g.stop()
		}
	}
}
