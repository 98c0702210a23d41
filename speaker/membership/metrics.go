package membership

import "github.com/prometheus/client_golang/prometheus"

// Member event label values.
const (
	eventJoin   = "join"
	eventLeave  = "leave"
	eventUpdate = "update"
)

// metrics are the List's collectors. They carry no node labels: one series per event
// kind whatever the cluster size.
type metrics struct {
	members    prometheus.GaugeFunc
	health     prometheus.GaugeFunc
	events     *prometheus.CounterVec
	metaErrors prometheus.Counter
}

var _ prometheus.Collector = (*metrics)(nil)

func newMetrics(members, health func() float64) *metrics {
	m := &metrics{
		members: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "berth_memberlist_members",
			Help: "Live memberlist members this speaker sees, itself included; suspect members count until declared dead.",
		}, members),
		health: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "berth_memberlist_health_score",
			Help: "memberlist's awareness of this speaker's own health: it rises when a failed probe's indirect " +
				"helpers do not answer either, or when this speaker must refute a suspicion of itself, and falls with " +
				"each successful probe; 0 is healthy, higher slows its probing.",
		}, health),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_memberlist_events_total",
			Help: "Member joins, leaves (including deaths) and metadata updates this speaker saw.",
		}, []string{"event"}),
		metaErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_memberlist_meta_errors_total",
			Help: "Member metadata this speaker could not decode; such a member counts with no L2 interfaces.",
		}),
	}
	for _, e := range []string{eventJoin, eventLeave, eventUpdate} {
		m.events.WithLabelValues(e) // series start at 0
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.all() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.all() {
		c.Collect(ch)
	}
}

func (m *metrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.members, m.health, m.events, m.metaErrors}
}

// RegisterExampleMetrics registers on reg the collectors a List's Collector holds, so that
// every metric can be listed with its type, labels and help (docs/metrics.md, the checks of
// deploy/observability). Never serve reg.
func RegisterExampleMetrics(reg prometheus.Registerer) error {
	return reg.Register(newMetrics(func() float64 { return 1 }, func() float64 { return 0 }))
}
