package bench

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/gitgate/gitgate/internal/gittest"
)

// BenchmarkColdClone measures the cold-clone target: the server
// CPU of one full HTTP clone of sourceRepo (128 MiB) whose pack is not in
// any cache, through three gates on copies of the repository, in turn in
// every iteration (the order rotates): the gate as shipped (every pack
// written into its cache), the gate with --pack-objects-cache-min-occurrences 1
// (a first fetch served by a plain pack-objects), and the gate without the
// cache (--pack-objects-cache=false: the hook and the limits, no file). It
// reports each gate's CPU per clone and the two ratios to the cache-less
// gate; run it with -count and compare the spread, since one clone's CPU
// varies by ±15% on a shared machine.
func BenchmarkColdClone(b *testing.B) {
	env := gittest.Env(b)
	src := sourceRepo(b, env)
	key := newClientKey(b, b.TempDir())
	type server struct {
		name string
		gate *gateProcess
	}
	var servers []server
	for _, s := range []struct {
		name string
		args []string
	}{
		{"cache", []string{"--pack-objects-cache-max-age", cacheMaxAge.String()}},
		{"minocc1", []string{"--pack-objects-cache-max-age", cacheMaxAge.String(), "--pack-objects-cache-min-occurrences", "1"}},
		{"nocache", []string{"--pack-objects-cache=false"}},
	} {
		dir := b.TempDir()
		copyRepo(b, src, filepath.Join(dir, "data", "repositories", "bench.git"))
		servers = append(servers, server{s.name, startGate(b, dir, key.public, s.args...)})
	}
	cpu := make([]time.Duration, len(servers))
	// The cache's entry and the key's sighting are older than the max age
	// at each clone: every clone is cold.
	load := eachInTurn(b, len(servers), func(k int) {
		cpu[k] += cloneCPU(b, env, servers[k].gate.httpURL+"/bench.git", []int{servers[k].gate.pid})
	})
	n := float64(b.N)
	for k, s := range servers {
		b.ReportMetric(cpu[k].Seconds()/n, s.name+"-cpu-s/clone")
	}
	b.ReportMetric(cpu[0].Seconds()/cpu[2].Seconds(), "cache/nocache")
	b.ReportMetric(cpu[1].Seconds()/cpu[2].Seconds(), "minocc1/nocache")
	b.ReportMetric(load, "load1")
}
