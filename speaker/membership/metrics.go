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
	// keys and keysRejected show where a key rotation stands on this speaker.
	keys         *prometheus.GaugeVec
	keysRejected prometheus.Gauge
}

// Key role label values.
const (
	rolePrimary  = "primary"
	roleAccepted = "accepted"
)

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
		keys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_memberlist_key_info",
			Help: "The memberlist keys this speaker uses, by fingerprint (first 8 hex digits of the key's SHA-256) and role: " +
				"primary encrypts and decrypts, accepted only decrypts. Always 1; a rotation step has reached every speaker " +
				"when all report the same keys.",
		}, []string{"fingerprint", "role"}),
		keysRejected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_memberlist_keys_rejected",
			Help: "1 when the keys last read from the Secret berth-memberlist (or its mounted files) were invalid and the " +
				"speaker kept the keys it had; 0 otherwise.",
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
	return []prometheus.Collector{m.members, m.health, m.events, m.metaErrors, m.keys, m.keysRejected}
}

// setKeys makes berth_memberlist_key_info show k.
func (m *metrics) setKeys(k Keys) {
	m.keys.Reset()
	m.keys.WithLabelValues(Fingerprint(k.Primary), rolePrimary).Set(1)
	for _, a := range k.Accepted {
		m.keys.WithLabelValues(Fingerprint(a), roleAccepted).Set(1)
	}
}

// RegisterExampleMetrics registers on reg the collectors a List's Collector holds, so that
// every metric can be listed with its type, labels and help (docs/metrics.md, the checks of
// deploy/observability). Never serve reg.
func RegisterExampleMetrics(reg prometheus.Registerer) error {
	m := newMetrics(func() float64 { return 1 }, func() float64 { return 0 })
	m.setKeys(Keys{Primary: make([]byte, 32)})
	return reg.Register(m)
}
