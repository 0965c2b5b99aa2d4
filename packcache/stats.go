package packcache

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats counts what the cache and the limiter do. The zero value is ready;
// [Stats.Collectors] exposes it as Prometheus metrics.
type Stats struct {
	Hits         atomic.Int64 // requests served from a complete entry
	Misses       atomic.Int64 // requests that started a generation
	Joins        atomic.Int64 // requests that streamed an entry being generated
	BytesServed  atomic.Int64 // bytes sent from cache files to hits and joins
	Generations  atomic.Int64 // git pack-objects processes started
	Running      atomic.Int64 // git pack-objects processes running now
	Queued       atomic.Int64 // generations waiting for a slot now
	Fallbacks    atomic.Int64 // requests served without the cache (cache unwritable or full)
	Uncached     atomic.Int64 // requests served without the cache: their key was not asked for MinOccurrences times before
	Spliced      atomic.Int64 // requests whose pack the gate wrote straight into upload-pack's pipe
	Failures     atomic.Int64 // generations that failed
	Evictions    atomic.Int64 // entries removed (expired, over the size cap)
	CacheBytes   atomic.Int64 // bytes of the complete entries on disk
	RefusedFull  atomic.Int64 // refused: the repository's queue was full
	RefusedTime  atomic.Int64 // refused: no slot within the queue timeout
	RefusedUser  atomic.Int64 // refused: the user's share was used up
	waitCount    atomic.Int64
	waitNanos    atomic.Int64
	genNanos     atomic.Int64
	histOnce     sync.Once
	waitHist     prometheus.Histogram
	generateHist prometheus.Histogram
}

func (s *Stats) hists() {
	s.histOnce.Do(func() {
		s.waitHist = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gitgate_pack_objects_queue_wait_seconds",
			Help:    "Time pack-objects generations waited for a slot (granted or refused).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		})
		s.generateHist = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gitgate_pack_objects_generation_seconds",
			Help:    "Run time of the git pack-objects processes the gate started.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 9),
		})
	})
}

func (s *Stats) observeWait(d time.Duration) {
	s.hists()
	s.waitCount.Add(1)
	s.waitNanos.Add(int64(d))
	s.waitHist.Observe(d.Seconds())
}

func (s *Stats) observeGeneration(d time.Duration) {
	s.hists()
	s.genNanos.Add(int64(d))
	s.generateHist.Observe(d.Seconds())
}

func (s *Stats) refused(reason string) {
	switch reason {
	case "queue_full":
		s.RefusedFull.Add(1)
	case "queue_timeout":
		s.RefusedTime.Add(1)
	default:
		s.RefusedUser.Add(1)
	}
}

// Waits returns how many generations waited in a queue.
func (s *Stats) Waits() int64 { return s.waitCount.Load() }

// Collectors returns the Prometheus collectors of s, to register once.
func (s *Stats) Collectors() []prometheus.Collector {
	s.hists()
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	gauge := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	refused := func(reason string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "gitgate_pack_objects_refused_total", Help: "Pack requests refused for want of a generation slot, by reason.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(v.Load()) })
	}
	return []prometheus.Collector{
		counter("gitgate_pack_objects_cache_hits_total", "Pack requests served from a complete cache entry.", &s.Hits),
		counter("gitgate_pack_objects_cache_misses_total", "Pack requests that started a generation.", &s.Misses),
		counter("gitgate_pack_objects_cache_joins_total", "Pack requests that streamed a pack still being generated.", &s.Joins),
		counter("gitgate_pack_objects_cache_served_bytes_total", "Bytes sent from the cache to hits and joins.", &s.BytesServed),
		counter("gitgate_pack_objects_cache_fallbacks_total", "Pack requests served by a plain pack-objects because the cache could not be written.", &s.Fallbacks),
		counter("gitgate_pack_objects_cache_uncached_total", "Pack requests served by a plain pack-objects because their key had not been asked for --pack-objects-cache-min-occurrences times before.", &s.Uncached),
		counter("gitgate_pack_objects_direct_pipe_total", "Pack requests whose pack the gate wrote straight into upload-pack's pipe (passed by the hook), not through the hook.", &s.Spliced),
		counter("gitgate_pack_objects_cache_evictions_total", "Cache entries removed (expired or over the size cap).", &s.Evictions),
		gauge("gitgate_pack_objects_cache_bytes", "Bytes of the complete cache entries on disk.", &s.CacheBytes),
		counter("gitgate_pack_objects_generations_total", "git pack-objects processes started by the gate.", &s.Generations),
		counter("gitgate_pack_objects_generation_failures_total", "git pack-objects generations that failed.", &s.Failures),
		gauge("gitgate_pack_objects_running", "git pack-objects processes running now.", &s.Running),
		gauge("gitgate_pack_objects_queue_length", "Generations waiting for a slot now.", &s.Queued),
		refused("queue_full", &s.RefusedFull),
		refused("queue_timeout", &s.RefusedTime),
		refused("user_limit", &s.RefusedUser),
		s.waitHist,
		s.generateHist,
	}
}
