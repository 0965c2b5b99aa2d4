package lfs

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gitgate/gitgate/gitgate"
)

// Metrics counts LFS objects and bytes served and stored, and refusals.
type Metrics struct {
	objects  *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	refusals *prometheus.CounterVec
}

// NewMetrics returns unregistered counters; register Collectors.
func NewMetrics() *Metrics {
	return &Metrics{
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitgate_lfs_objects_total", Help: "LFS objects served (direction=served) and stored (direction=stored).",
		}, []string{"direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitgate_lfs_bytes_total", Help: "LFS object bytes served and stored.",
		}, []string{"direction"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitgate_lfs_refusals_total", Help: "LFS requests refused, by operation and reason (maintenance, not_found, forbidden, busy, bad_object).",
		}, []string{"operation", "reason"}),
	}
}

// Collectors returns the counters, for registration.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.objects, m.bytes, m.refusals}
}

func (m *Metrics) served(n int64) {
	m.objects.WithLabelValues("served").Inc()
	m.bytes.WithLabelValues("served").Add(float64(n))
}

func (m *Metrics) stored(n int64) {
	m.objects.WithLabelValues("stored").Inc()
	m.bytes.WithLabelValues("stored").Add(float64(n))
}

func (m *Metrics) refused(svc gitgate.Service, reason string) {
	m.refusals.WithLabelValues(string(svc), reason).Inc()
}
