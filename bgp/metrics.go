package bgp

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are per peer name: bounded by the configured peers, never an address.
type metrics struct {
	sessionUp   *prometheus.GaugeVec
	advertised  *prometheus.GaugeVec
	updatesSent *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sessionUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_speaker_bgp_session_up",
			Help: "1 while the BGP session with the peer is established, else 0.",
		}, []string{"peer"}),
		advertised: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_speaker_bgp_prefixes_advertised",
			Help: "Prefixes the established BGP session carries to the peer.",
		}, []string{"peer"}),
		updatesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_speaker_bgp_updates_sent_total",
			Help: "BGP UPDATE messages sent to the peer.",
		}, []string{"peer"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.sessionUp, m.advertised, m.updatesSent} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("bgp metrics: %w", err)
			}
		}
	}
	return m, nil
}

// addPeer starts the peer's series at 0.
func (m *metrics) addPeer(name string) {
	m.sessionUp.WithLabelValues(name).Set(0)
	m.advertised.WithLabelValues(name).Set(0)
	m.updatesSent.WithLabelValues(name).Add(0)
}

func (m *metrics) removePeer(name string) {
	m.sessionUp.DeleteLabelValues(name)
	m.advertised.DeleteLabelValues(name)
	m.updatesSent.DeleteLabelValues(name)
}

func (m *metrics) set(s PeerStatus, newUpdates uint64) {
	up := 0.0
	if s.State == StateEstablished {
		up = 1
	}
	m.sessionUp.WithLabelValues(s.Name).Set(up)
	m.advertised.WithLabelValues(s.Name).Set(float64(s.Advertised))
	if newUpdates > 0 {
		m.updatesSent.WithLabelValues(s.Name).Add(float64(newUpdates))
	}
}
