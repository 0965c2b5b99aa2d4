package e2e

import (
	"path/filepath"
	"testing"

	"github.com/gitgate/gitgate/internal/gittest"
)

// With --pack-objects-cache-min-occurrences 1, the first clone of a
// commit is served by a plain pack-objects and the second is written into
// the cache, over both transports alike; every clone is the repository.
func TestMinOccurrencesThroughTheGate(t *testing.T) {
	t.Parallel()
	g := startGate(t, "--pack-objects-cache-min-occurrences", "1")
	work := t.TempDir()
	bare := filepath.Join(g.data, "repositories", "example.git")
	gittest.MustGit(t, g.env, work, "clone", "-q", "--bare", "--no-local", bare, "direct.git")
	want := refs(t, g, filepath.Join(work, "direct.git"))
	urls := []string{g.url + "/example.git", "ssh://git@" + g.sshAddr + "/example.git", g.url + "/example.git"}
	for i, name := range []string{"first.git", "second.git", "third.git"} {
		if r := g.git(t, work, "clone", "-q", "--bare", urls[i], name); r.Err != nil {
			t.Fatalf("clone %s: %v\n%s", name, r.Err, r.Stderr)
		}
		if got := refs(t, g, filepath.Join(work, name)); got != want {
			t.Fatalf("%s refs:\n%s\nwant:\n%s", name, got, want)
		}
	}
	for name, want := range map[string]float64{
		"gitgate_pack_objects_cache_uncached_total": 1,
		"gitgate_pack_objects_cache_misses_total":   1,
		"gitgate_pack_objects_cache_hits_total":     1,
		"gitgate_pack_objects_generations_total":    2,
	} {
		if got := g.metric(t, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}
