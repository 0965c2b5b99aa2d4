package geo

import (
	"testing"
	"time"
)

func TestBackoffIsBoundedFullJitter(t *testing.T) {
	f := &Follower{opts: SecondaryOptions{MinBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second}}
	if d := f.backoff(1); d != 100*time.Millisecond {
		t.Errorf("first retry after %s, want the minimum", d)
	}
	for n := 1; n <= 100; n++ {
		ceil := min(10*time.Second, 100*time.Millisecond<<min(n-1, 20))
		var lowest, highest time.Duration = time.Hour, 0
		for range 200 {
			d := f.backoff(n)
			if d < 100*time.Millisecond || d > ceil {
				t.Fatalf("retry %d: %s, want within [100ms, %s]", n, d, ceil)
			}
			lowest, highest = min(lowest, d), max(highest, d)
		}
		// Jitter spreads the retries of many secondaries.
		if n >= 4 && highest-lowest < (ceil-100*time.Millisecond)/4 {
			t.Errorf("retry %d: all 200 delays within [%s, %s]: no jitter", n, lowest, highest)
		}
	}
}
