// Package metrics exposes the gate's Prometheus metrics. It implements
// gitgate.Recorder for the operation counters and reads the maintenance
// state at scrape time, so nothing on the request path waits for it.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gitgate/gitgate/gitgate"
)

// Metrics holds the gate's collectors in a registry of its own.
type Metrics struct {
	reg *prometheus.Registry

	operations   *prometheus.CounterVec
	refusedMaint *prometheus.CounterVec
	inFlight     *prometheus.GaugeVec
	bytesServed  *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	authFailures *prometheus.CounterVec
}

// New registers the gate's metrics, the Go runtime's and the process's.
// state is read at scrape time for the maintenance gauges.
func New(state gitgate.StateSource) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitgate_operations_total",
			Help: "Git operations by service, transport and outcome (ok, refused_maintenance, refused, error).",
		}, []string{"service", "transport", "outcome"}),
		refusedMaint: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitgate_push_refused_maintenance_total",
			Help: "Pushes refused because of maintenance mode (or an unreadable maintenance state).",
		}, []string{"transport"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gitgate_operations_in_flight",
			Help: "Git operations running now.",
		}, []string{"service", "transport"}),
		bytesServed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitgate_bytes_served_total",
			Help: "Bytes sent to Git clients.",
		}, []string{"service", "transport"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gitgate_operation_duration_seconds",
			Help:    "Duration of Git operations that ran.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 9), // 5 ms .. ~5.5 min
		}, []string{"service", "transport"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitgate_auth_failures_total",
			Help: "Failed authentications by transport and reason.",
		}, []string{"transport", "reason"}),
	}
	m.reg.MustRegister(m.operations, m.refusedMaint, m.inFlight, m.bytesServed, m.duration, m.authFailures,
		&stateCollector{state: state},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Register adds more collectors (Geo adds its own).
func (m *Metrics) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// OperationStarted implements gitgate.Recorder.
func (m *Metrics) OperationStarted(op gitgate.Operation) {
	m.inFlight.WithLabelValues(string(op.Service), string(op.Transport)).Inc()
}

// OperationFinished implements gitgate.Recorder.
func (m *Metrics) OperationFinished(op gitgate.Operation, outcome gitgate.Outcome, bytesSent int64, d time.Duration) {
	svc, tr := string(op.Service), string(op.Transport)
	m.inFlight.WithLabelValues(svc, tr).Dec()
	m.operations.WithLabelValues(svc, tr, string(outcome)).Inc()
	m.bytesServed.WithLabelValues(svc, tr).Add(float64(bytesSent))
	m.duration.WithLabelValues(svc, tr).Observe(d.Seconds())
}

// OperationRefused implements gitgate.Recorder.
func (m *Metrics) OperationRefused(op gitgate.Operation, outcome gitgate.Outcome) {
	m.operations.WithLabelValues(string(op.Service), string(op.Transport), string(outcome)).Inc()
	if outcome == gitgate.OutcomeRefusedMaintenance && op.Service.IsWrite() {
		m.refusedMaint.WithLabelValues(string(op.Transport)).Inc()
	}
}

// AuthFailed implements gitgate.Recorder.
func (m *Metrics) AuthFailed(transport gitgate.Transport, reason string) {
	m.authFailures.WithLabelValues(string(transport), reason).Inc()
}

// stateCollector reports the maintenance state when scraped.
type stateCollector struct{ state gitgate.StateSource }

var (
	enabledDesc = prometheus.NewDesc("gitgate_maintenance_enabled",
		"1 while read-only maintenance mode is on, else 0.", nil, nil)
	sinceDesc = prometheus.NewDesc("gitgate_maintenance_since_timestamp_seconds",
		"When the maintenance state last changed (Unix time); 0 if never.", nil, nil)
	versionDesc = prometheus.NewDesc("gitgate_maintenance_state_version",
		"Version of the maintenance state; grows with every change.", nil, nil)
	unreadableDesc = prometheus.NewDesc("gitgate_maintenance_state_unreadable",
		"1 while the maintenance state cannot be read (pushes are refused), else 0.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- enabledDesc
	ch <- sinceDesc
	ch <- versionDesc
	ch <- unreadableDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.state.Current()
	since := 0.0
	if !snap.State.Since.IsZero() {
		since = float64(snap.State.Since.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(enabledDesc, prometheus.GaugeValue, boolValue(snap.State.Enabled))
	ch <- prometheus.MustNewConstMetric(sinceDesc, prometheus.GaugeValue, since)
	ch <- prometheus.MustNewConstMetric(versionDesc, prometheus.GaugeValue, float64(snap.State.Version))
	ch <- prometheus.MustNewConstMetric(unreadableDesc, prometheus.GaugeValue, boolValue(snap.Err != nil))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
