package packcache

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// With MinOccurrences 1, a fetch asked for the first time is served by a
// plain pack-objects and writes no cache file; the same fetch again is
// generated into the cache, and the third is a hit. Another fetch starts
// counting on its own, and a key not asked for within MaxAge is forgotten.
func TestMinOccurrencesCachesOnlyRepeatedFetches(t *testing.T) {
	f := repoFixture(t)
	c := newTestCache(t, t.Context(), Config{MinOccurrences: 1, MaxAge: time.Hour})
	s := c.Stats()
	req := fullRequest(f)
	check := func(step string, uncached, misses, hits, generations int64, entries int) {
		t.Helper()
		if u, m, h, g, n := s.Uncached.Load(), s.Misses.Load(), s.Hits.Load(), s.Generations.Load(), c.Len(); u != uncached || m != misses || h != hits || g != generations || n != entries {
			t.Fatalf("%s: uncached=%d misses=%d hits=%d generations=%d entries=%d, want %d %d %d %d %d",
				step, u, m, h, g, n, uncached, misses, hits, generations, entries)
		}
	}
	for i, step := range []string{"first", "second", "third"} {
		pack, stderr, code, err := serve(t, c, req)
		if err != nil || code != 0 {
			t.Fatalf("%s: exit %d, %v, %s", step, code, err, stderr)
		}
		if err := verifyPack(t, f, pack, f.head); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		c.Wait()
		switch i {
		case 0:
			check(step, 1, 0, 0, 1, 0)
			if names, _ := filepath.Glob(filepath.Join(c.cfg.Dir, "*")); len(names) != 0 {
				t.Fatalf("a first fetch wrote %v into the cache", names)
			}
		case 1:
			check(step, 1, 1, 0, 2, 1)
		case 2:
			check(step, 1, 1, 1, 2, 1)
		}
	}

	other := fullRequest(f)
	other.Args = append(other.Args, "--window=5")
	if _, _, code, err := serve(t, c, other); code != 0 || err != nil {
		t.Fatal(code, err)
	}
	check("another fetch", 2, 1, 1, 3, 1)

	// An hour later the entry has expired and both keys are forgotten: the
	// fetch counts from the start again.
	c.Clean(time.Now().Add(time.Hour + time.Second))
	if n := len(c.seen); n != 0 {
		t.Fatalf("%d keys remembered after MaxAge", n)
	}
	if _, _, code, err := serve(t, c, req); code != 0 || err != nil {
		t.Fatal(code, err)
	}
	check("after MaxAge", 3, 1, 1, 4, 0)
}

// The keys remembered for MinOccurrences are bounded: a stream of unique
// fetches never makes the cache hold more than maxSightings of them.
func TestMinOccurrencesMemoryIsBounded(t *testing.T) {
	f := repoFixture(t)
	c := newTestCache(t, t.Context(), Config{MinOccurrences: 1})
	c.maxSightings = 4
	for i := range 11 {
		req := fullRequest(f)
		req.Args = append(req.Args, fmt.Sprintf("--window=%d", i+1))
		if _, _, code, err := serve(t, c, req); code != 0 || err != nil {
			t.Fatal(code, err)
		}
		if n := len(c.seen); n > c.maxSightings {
			t.Fatalf("after %d unique fetches %d keys are remembered, bound %d", i+1, n, c.maxSightings)
		}
	}
	if got := c.Stats().Uncached.Load(); got != 11 {
		t.Fatalf("uncached = %d, want 11", got)
	}
}
