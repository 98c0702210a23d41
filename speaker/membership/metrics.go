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
			Name: "berth_speaker_members",
			Help: "Live memberlist members this speaker sees, itself included; suspect members count until declared dead.",
		}, members),
		health: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "berth_speaker_memberlist_health_score",
			Help: "memberlist's view of how well this speaker keeps up with the protocol; 0 is healthy, higher slows its probing.",
		}, health),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_speaker_member_events_total",
			Help: "Member joins, leaves (including deaths) and metadata updates this speaker saw.",
		}, []string{"event"}),
		metaErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_speaker_member_meta_errors_total",
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
