package l2

import (
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
)

// Address family label values.
const (
	familyIPv4 = "ipv4"
	familyIPv6 = "ipv6"
)

func family(ip netip.Addr) string {
	if ip.Is4() {
		return familyIPv4
	}
	return familyIPv6
}

// metrics are the Announcer's collectors. Their only label is the address family: never
// an IP or a Service, so the series count stays fixed however many IPs a node owns.
type metrics struct {
	owned      *prometheus.GaugeVec
	takeovers  *prometheus.CounterVec
	answers    *prometheus.CounterVec
	gratuitous *prometheus.CounterVec
	conflicts  *prometheus.CounterVec
}

var _ prometheus.Collector = (*metrics)(nil)

func newMetrics() *metrics {
	m := &metrics{
		owned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_l2_owned_ips",
			Help: "LB IPs this node answers ARP or NDP for, on at least one interface.",
		}, []string{"family"}),
		takeovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_l2_takeovers_total",
			Help: "Times this node started answering for an LB IP on an interface: a failover from another node, " +
				"a new Service, an interface coming up or the speaker starting.",
		}, []string{"family"}),
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_l2_answers_total",
			Help: "ARP replies and solicited neighbour advertisements sent for owned LB IPs.",
		}, []string{"family"}),
		gratuitous: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_l2_gratuitous_sent_total",
			Help: "Announcements of an owned LB IP on one interface: for IPv4 a gratuitous ARP request " +
				"and reply, for IPv6 an unsolicited neighbour advertisement. Taking an IP sends 1 + Burst.",
		}, []string{"family"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_l2_conflicts_total",
			Help: "ARP packets and neighbour advertisements in which a machine that is not a berth node " +
				"claimed an LB IP this node owns; every such packet counts, the log is rate-limited per IP.",
		}, []string{"family"}),
	}
	for _, f := range []string{familyIPv4, familyIPv6} { // series start at 0
		m.owned.WithLabelValues(f)
		m.takeovers.WithLabelValues(f)
		m.answers.WithLabelValues(f)
		m.gratuitous.WithLabelValues(f)
		m.conflicts.WithLabelValues(f)
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
	return []prometheus.Collector{m.owned, m.takeovers, m.answers, m.gratuitous, m.conflicts}
}

// setOwned sets the owned-IP gauges from the IPs answered anywhere.
func (m *metrics) setOwned(all ipSet) {
	n4 := len(all.only(true))
	m.owned.WithLabelValues(familyIPv4).Set(float64(n4))
	m.owned.WithLabelValues(familyIPv6).Set(float64(len(all) - n4))
}

// RegisterExampleMetrics registers on reg the collectors an Announcer registers, so that
// every metric can be listed with its type, labels and help (docs/metrics.md, the checks of
// deploy/observability). Never serve reg.
func RegisterExampleMetrics(reg prometheus.Registerer) error { return reg.Register(newMetrics()) }
