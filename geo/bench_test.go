package geo_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkPropagation measures how long a maintenance toggle on the
// primary takes to be in force on a secondary: an in-process primary (file
// store, live state, status long-poll on a loopback HTTP server) and an
// in-process secondary following it with its own data dir. Each iteration
// makes 200 toggles the way the settings API does (write the state file,
// reload, answer) and times, for each, from the API's answer until the
// secondary's live state, which its policy reads for every push, has the
// new version. It reports the 50th, 90th and 99th percentiles and the
// maximum in milliseconds ("api-*"), the same from the start of the toggle
// request ("req-p99"), and logs the distribution.
func BenchmarkPropagation(b *testing.B) {
	const toggles = 200
	p := startPrimaryAPI(b)
	sec := newSite(b)
	f := startFollower(b, followerOptions(b, p.url, secretEU), sec)
	mustWaitFor(b, "the follower to connect", func() bool { return f.Status().Connected })

	var fromAnswer, fromRequest []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < toggles; j++ {
			start := time.Now()
			st := p.set(b, j%2 == 0) // as the API does: write, reload, answer
			answered := time.Now()
			sec.waitVersion(b, st.Version)
			done := time.Now()
			fromAnswer = append(fromAnswer, done.Sub(answered))
			fromRequest = append(fromRequest, done.Sub(start))
		}
	}
	b.StopTimer()

	slices.Sort(fromAnswer)
	slices.Sort(fromRequest)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(quantile(fromAnswer, 0.50)), "api-p50-ms")
	b.ReportMetric(ms(quantile(fromAnswer, 0.90)), "api-p90-ms")
	b.ReportMetric(ms(quantile(fromAnswer, 0.99)), "api-p99-ms")
	b.ReportMetric(ms(fromAnswer[len(fromAnswer)-1]), "api-max-ms")
	b.ReportMetric(ms(quantile(fromRequest, 0.99)), "req-p99-ms")
	b.ReportMetric(0, "ns/op") // the time per iteration says nothing here
	b.Logf("%d toggles, from the API's answer until the secondary refuses pushes:\n%s", len(fromAnswer), histogram(fromAnswer))
}

// quantile returns the q-quantile of sorted durations (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// histogram summarises sorted durations on two lines: quantiles, and
// counts per bucket.
func histogram(sorted []time.Duration) string {
	bounds := []time.Duration{time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
		20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond}
	var b strings.Builder
	fmt.Fprintf(&b, "  p50 %v  p90 %v  p99 %v  p99.9 %v  max %v\n  ", quantile(sorted, .5), quantile(sorted, .9),
		quantile(sorted, .99), quantile(sorted, .999), sorted[len(sorted)-1])
	lo, prev := 0, time.Duration(0)
	for i := 0; i <= len(bounds); i++ {
		hi, label := len(sorted), fmt.Sprintf(">=%v", prev)
		if i < len(bounds) {
			hi, _ = slices.BinarySearch(sorted, bounds[i])
			label = fmt.Sprintf("<%v", bounds[i])
			prev = bounds[i]
		}
		if i > 0 {
			b.WriteString(" | ")
		}
		fmt.Fprintf(&b, "%s: %d", label, hi-lo)
		lo = hi
	}
	return b.String()
}
