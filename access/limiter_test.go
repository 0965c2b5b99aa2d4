package access

import (
	"fmt"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestLimiter(clock *fakeClock) *Limiter {
	return NewLimiter(LimiterConfig{
		MaxFailures: 3,
		Block:       time.Minute,
		MaxBlock:    4 * time.Minute,
		Forget:      10 * time.Minute,
		MaxClients:  100,
		Now:         clock.Now,
	})
}

func TestLimiterBlocksAndBacksOff(t *testing.T) {
	clock := &fakeClock{t: testNow}
	l := newTestLimiter(clock)
	ip := AddrKey("192.0.2.1")
	allow := func(want bool, wantWait time.Duration) {
		t.Helper()
		ok, wait := l.Allow(ip)
		if ok != want || wait != wantWait {
			t.Fatalf("Allow = %v, %v; want %v, %v", ok, wait, want, wantWait)
		}
	}

	for range 2 {
		allow(true, 0)
		l.Failure(ip)
	}
	allow(true, 0)
	l.Failure(ip) // third failure: blocked for 1m
	allow(false, time.Minute)
	clock.Advance(20 * time.Second)
	allow(false, 40*time.Second)
	clock.Advance(40 * time.Second)
	allow(true, 0)

	// Failing again right after a block doubles it, up to MaxBlock.
	for _, want := range []time.Duration{2 * time.Minute, 4 * time.Minute, 4 * time.Minute} {
		l.Failure(ip)
		allow(false, want)
		clock.Advance(want)
	}

	// Another address is not affected, and IPv4 with a port is the same client.
	if ok, _ := l.Allow(AddrKey("192.0.2.2")); !ok {
		t.Error("another address is blocked")
	}
	l.Failure(ip)
	if ok, _ := l.Allow(AddrKey("192.0.2.1:5555")); ok {
		t.Error("the same address with a port is allowed")
	}

	// Quiet for Forget after the block ends: failures are forgotten.
	clock.Advance(4*time.Minute + 10*time.Minute)
	allow(true, 0)
	l.Failure(ip)
	allow(true, 0)
}

func TestLimiterSuccessForgets(t *testing.T) {
	clock := &fakeClock{t: testNow}
	l := newTestLimiter(clock)
	l.Failure(AddrKey("192.0.2.1"))
	l.Failure(AddrKey("192.0.2.1"))
	l.Success(AddrKey("192.0.2.1"))
	l.Failure(AddrKey("192.0.2.1"))
	l.Failure(AddrKey("192.0.2.1"))
	if ok, _ := l.Allow(AddrKey("192.0.2.1")); !ok {
		t.Error("blocked although a success reset the count")
	}
}

func TestLimiterGroupsIPv6By64(t *testing.T) {
	clock := &fakeClock{t: testNow}
	l := newTestLimiter(clock)
	for i := range 3 {
		l.Failure(AddrKey(fmt.Sprintf("[2001:db8:1:2::%x]:22", i+1)))
	}
	if ok, _ := l.Allow(AddrKey("2001:db8:1:2:ffff::1")); ok {
		t.Error("same /64 is allowed")
	}
	if ok, _ := l.Allow(AddrKey("2001:db8:1:3::1")); !ok {
		t.Error("another /64 is blocked")
	}
	if ok, _ := l.Allow(AddrKey("::ffff:192.0.2.9")); !ok {
		t.Error("an IPv4-mapped address is blocked")
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	clock := &fakeClock{t: testNow}
	l := newTestLimiter(clock)
	for i := range 1000 {
		l.Failure(AddrKey(fmt.Sprintf("10.0.%d.%d", i/256, i%256)))
	}
	if n := len(l.clients); n > 100 || l.lru.Len() != n {
		t.Errorf("%d entries (list %d), want at most 100", n, l.lru.Len())
	}
	// The most recent clients are the ones kept.
	for range 2 {
		l.Failure(AddrKey("10.0.3.231")) // client 999
	}
	if ok, _ := l.Allow(AddrKey("10.0.3.231")); ok {
		t.Error("the most recent client was evicted")
	}
}

func TestLimiterStaleEntriesDropped(t *testing.T) {
	clock := &fakeClock{t: testNow}
	l := newTestLimiter(clock)
	l.Failure(AddrKey("192.0.2.1"))
	clock.Advance(11 * time.Minute)
	l.Allow(AddrKey("192.0.2.1"))
	if len(l.clients) != 0 || l.lru.Len() != 0 {
		t.Errorf("stale entry kept: %d", len(l.clients))
	}
}
