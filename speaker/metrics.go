package speaker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the speaker's Prometheus metrics. Labels are pools, protocols and results,
// never Services or IPs, so their number stays bounded at any scale.
type Metrics struct {
	passes       *prometheus.HistogramVec
	statusWrites *prometheus.CounterVec
	announced    *prometheus.Desc
	state        *State
}

// NewMetrics returns the speaker's metrics; register them with Register.
func NewMetrics() *Metrics {
	return &Metrics{
		passes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "berth_speaker_decision_duration_seconds",
			Help: "Time to re-decide after a change: pass=full after config, node or member changes, incremental after Service or endpoint changes.",
			// From 10 µs (one Service) to 1 s (every Service at 100k).
			Buckets: prometheus.ExponentialBuckets(1e-5, 4, 9),
		}, []string{"pass"}),
		statusWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_speaker_status_writes_total",
			Help: "Writes of this node's NodeAnnouncement, by result.",
		}, []string{"result"}),
		announced: prometheus.NewDesc("berth_speaker_announced_ips",
			"IPs this node announces, by pool and protocol.", []string{"pool", "protocol"}, nil),
	}
}

// Register adds the metrics to r.
func (m *Metrics) Register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.passes, m.statusWrites, m} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *Metrics) observePass(full bool, d time.Duration) {
	pass := "incremental"
	if full {
		pass = "full"
	}
	m.passes.WithLabelValues(pass).Observe(d.Seconds())
}

func (m *Metrics) statusWrite(err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.statusWrites.WithLabelValues(result).Inc()
}

// Describe implements prometheus.Collector for the announced-IP gauge.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.announced }

// Collect reads the counts the State keeps current, at scrape time.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	if m.state == nil {
		return
	}
	for k, n := range m.state.Counts() {
		ch <- prometheus.MustNewConstMetric(m.announced, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
}
