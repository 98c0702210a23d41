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
	m := &Metrics{
		passes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "berth_speaker_decision_duration_seconds",
			Help: "Time to re-decide after a change: pass=full after config, node or member changes, incremental after Service or endpoint changes.",
			// From 10 µs (one Service) to 1 s (every Service at 100k).
			Buckets: prometheus.ExponentialBuckets(1e-5, 4, 9),
		}, []string{"pass"}),
		statusWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_speaker_status_writes_total",
			Help: "Writes of this node's NodeAnnouncement (the Services it announces, its live members, L2 conflicts), by result (ok or error).",
		}, []string{"result"}),
		announced: prometheus.NewDesc("berth_speaker_announced_ips",
			"LB IPs this node announces, by pool and protocol (L2 or BGP).", []string{"pool", "protocol"}, nil),
	}
	for _, pass := range []string{"full", "incremental"} { // series start at 0
		m.passes.WithLabelValues(pass)
	}
	for _, result := range []string{"ok", "error"} {
		m.statusWrites.WithLabelValues(result)
	}
	return m
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

// RegisterExampleMetrics registers on reg the collectors Metrics.Register registers, with
// an example pool announced over each protocol, so that every metric can be listed with its
// type, labels and help (docs/metrics.md, the checks of deploy/observability). Never serve reg.
func RegisterExampleMetrics(reg prometheus.Registerer) error {
	m := NewMetrics()
	m.state = &State{counts: map[countKey]int{{"example", "L2"}: 1, {"example", "BGP"}: 1}}
	return m.Register(reg)
}
