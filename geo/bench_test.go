package geo_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/gittest"
)

// BenchmarkPropagation measures how long a maintenance toggle on the
// primary takes to bite on a secondary: an in-process primary (file store,
// live state, status long-poll on a loopback HTTP server) and an in-process
// secondary following it, with its own data dir and smart HTTP server.
//
// Each iteration enables and disables maintenance toggles/2 times the way
// the settings API does (write the state file, reload, answer). After an
// enable it times, from the API's answer, one of two things, in turn:
//
//   - "decision": until the secondary's policy refuses a push, the decision
//     every push request goes through (checked at every change of the
//     secondary's live state, so the figure has microsecond resolution);
//   - "push-refused": until a real push request to the secondary is
//     refused: the first GET /group/project.git/info/refs?service=git-receive-pack
//     by a user with write access that answers 403 with the maintenance
//     message, requests sent back to back. Every answer before it is a ref
//     advertisement that starts git, so this figure includes up to one such
//     request (a few milliseconds) of polling delay.
//
// After a disable it waits (untimed) for the secondary to accept pushes
// again. It reports the percentiles of both in milliseconds and logs their
// distributions.
func BenchmarkPropagation(b *testing.B) {
	const toggles = 400
	env := gittest.Env(b)
	p := startPrimaryAPI(b)
	sec := newSite(b)
	root := filepath.Join(sec.dataDir, "repositories")
	if err := os.MkdirAll(filepath.Join(root, "group"), 0o755); err != nil {
		b.Fatal(err)
	}
	gittest.BareRepoWithCommit(b, env, root, testRepo)
	f := startFollower(b, followerOptions(b, p.url, secretEU), sec)
	mustWaitFor(b, "the follower to connect", func() bool { return f.Status().Connected })
	pushURL := serveForBench(b, sec, root) + "/" + testRepo + ".git/info/refs?service=git-receive-pack"
	client := &http.Client{Timeout: testDeadline}

	policy := &gitgate.Policy{State: sec.live, Access: writers{}}
	push := gitgate.Operation{Service: gitgate.ReceivePack, Repo: testRepo, User: &gitgate.User{Name: testUser}}
	var decided, refused []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < toggles; j++ {
			on := j%2 == 0
			st := p.set(b, on) // as the API does: write, reload, answer
			answered := time.Now()
			switch {
			case !on:
				sec.waitVersion(b, st.Version)
			case j%4 == 0:
				waitDecision(b, sec.live, policy, push)
				decided = append(decided, time.Since(answered))
			default:
				waitPushRefused(b, client, pushURL)
				refused = append(refused, time.Since(answered))
			}
		}
	}
	b.StopTimer()

	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for _, m := range []struct {
		name string
		ds   []time.Duration
	}{{"decision", decided}, {"push-refused", refused}} {
		slices.Sort(m.ds)
		b.ReportMetric(ms(quantile(m.ds, 0.50)), m.name+"-p50-ms")
		b.ReportMetric(ms(quantile(m.ds, 0.99)), m.name+"-p99-ms")
		b.ReportMetric(ms(m.ds[len(m.ds)-1]), m.name+"-max-ms")
		b.Logf("%d enables, from the API's answer until %s:\n%s", len(m.ds), m.name, histogram(m.ds))
	}
	b.ReportMetric(0, "ns/op") // the time per iteration says nothing here
}

// waitDecision waits until the secondary's policy refuses op for
// maintenance, checking at every change of its live state (no busy loop to
// take the CPU from the follower being measured).
func waitDecision(b *testing.B, live *gitgate.LiveState, p *gitgate.Policy, op gitgate.Operation) {
	timeout := time.After(testDeadline)
	for {
		changed := live.Changed()
		if errors.Is(p.Decide(op).Err, gitgate.ErrMaintenance) {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			b.Fatal("the secondary's policy never refused the push")
		}
	}
}

// serveForBench serves the secondary's repositories over smart HTTP on a
// loopback port until the benchmark ends, and returns its base URL.
func serveForBench(b *testing.B, s *site, root string) string {
	srv := newGitServer(b, s, root, users{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, ln, time.Second)
	}()
	b.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String()
}

// waitPushRefused asks for the push advertisement as alice until the
// answer is the maintenance refusal.
func waitPushRefused(b *testing.B, client *http.Client, url string) {
	deadline := time.Now().Add(testDeadline)
	for time.Now().Before(deadline) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			b.Fatal(err)
		}
		req.SetBasicAuth(testUser, testPassword)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode == http.StatusForbidden && string(body) == gitgate.MaintenanceMessage+"\n" {
			return
		}
	}
	b.Fatal("the secondary never refused a push")
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
