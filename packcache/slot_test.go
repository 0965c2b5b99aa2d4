package packcache

import (
	"context"
	"strings"
	"testing"
)

// A generation gives its slot back before its readers learn that the pack
// is complete: a client that has its pack can fetch again at once, even
// with one slot per repository and no queue (it used to be refused as busy
// while the finished generation still renamed its file).
func TestSlotIsFreeWhenThePackIsServed(t *testing.T) {
	f := repoFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newTestCache(t, ctx, Config{Limits: Limits{PerRepo: 1, Queue: -1}})
	for i := range 50 {
		req := fullRequest(f)
		req.Stdin = []byte(strings.Repeat(f.head+"\n", i+1)) // a new key each time
		if _, stderr, code, err := serve(t, c, req); err != nil || code != 0 {
			t.Fatalf("request %d: code %d, %v\n%s", i, code, err, stderr)
		}
		if running, waiting := c.Limiter().InUse(f.repo); running != 0 || waiting != 0 {
			t.Fatalf("request %d served: %d generations hold a slot, %d wait; want none", i, running, waiting)
		}
	}
}
