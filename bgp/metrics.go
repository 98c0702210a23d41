package bgp

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// sessionStateValues lists the values of the state label, in the order a session opens.
var sessionStateValues = []string{StateIdle, StateConnect, StateActive, StateOpenSent, StateOpenConfirm, StateEstablished}

// metrics are per peer name: bounded by the configured peers, never an address.
type metrics struct {
	sessionUp    *prometheus.GaugeVec
	sessionState *prometheus.GaugeVec
	flaps        *prometheus.CounterVec
	advertised   *prometheus.GaugeVec
	updatesSent  *prometheus.CounterVec

	mu        sync.Mutex
	lastFlaps map[string]int // PeerStatus.Flaps when last counted, per peer
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sessionUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_bgp_session_up",
			Help: "1 while this node's BGP session with the peer is established, else 0.",
		}, []string{"peer"}),
		sessionState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_bgp_session_state",
			Help: "1 for the state this node's BGP session with the peer is in (idle, connect, active, opensent, " +
				"openconfirm, established), 0 for the others.",
		}, []string{"peer", "state"}),
		flaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_bgp_session_flaps_total",
			Help: "Times this node's BGP session with the peer left the established state.",
		}, []string{"peer"}),
		advertised: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_bgp_prefixes_advertised",
			Help: "Prefixes (LB IPs and aggregates) the established BGP session carries to the peer; 0 while it is down.",
		}, []string{"peer"}),
		updatesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_bgp_updates_sent_total",
			Help: "BGP UPDATE messages this node sent to the peer.",
		}, []string{"peer"}),
		lastFlaps: map[string]int{},
	}
	if reg != nil {
		for _, c := range m.all() {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("bgp metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.sessionUp, m.sessionState, m.flaps, m.advertised, m.updatesSent}
}

// addPeer starts the peer's series at 0, idle. A peer re-added after a change of its
// configuration keeps its counters; its flap count starts again from the new record.
func (m *metrics) addPeer(name string) {
	m.sessionUp.WithLabelValues(name).Set(0)
	m.setState(name, StateIdle)
	m.flaps.WithLabelValues(name).Add(0)
	m.advertised.WithLabelValues(name).Set(0)
	m.updatesSent.WithLabelValues(name).Add(0)
	m.mu.Lock()
	m.lastFlaps[name] = 0
	m.mu.Unlock()
}

func (m *metrics) removePeer(name string) {
	m.sessionUp.DeleteLabelValues(name)
	for _, st := range sessionStateValues {
		m.sessionState.DeleteLabelValues(name, st)
	}
	m.flaps.DeleteLabelValues(name)
	m.advertised.DeleteLabelValues(name)
	m.updatesSent.DeleteLabelValues(name)
	m.mu.Lock()
	delete(m.lastFlaps, name)
	m.mu.Unlock()
}

func (m *metrics) setState(name, state string) {
	for _, st := range sessionStateValues {
		v := 0.0
		if st == state {
			v = 1
		}
		m.sessionState.WithLabelValues(name, st).Set(v)
	}
}

// set records a refreshed status. newUpdates is the number of UPDATEs sent since the last
// call; s.Flaps is the peer record's running count, which restarts when the peer is re-added.
func (m *metrics) set(s PeerStatus, newUpdates uint64) {
	up := 0.0
	if s.State == StateEstablished {
		up = 1
	}
	m.sessionUp.WithLabelValues(s.Name).Set(up)
	m.setState(s.Name, s.State)
	m.advertised.WithLabelValues(s.Name).Set(float64(s.Advertised))
	if newUpdates > 0 {
		m.updatesSent.WithLabelValues(s.Name).Add(float64(newUpdates))
	}
	m.mu.Lock()
	flaps := s.Flaps - m.lastFlaps[s.Name]
	if flaps < 0 { // the record restarted
		flaps = s.Flaps
	}
	m.lastFlaps[s.Name] = s.Flaps
	m.mu.Unlock()
	if flaps > 0 {
		m.flaps.WithLabelValues(s.Name).Add(float64(flaps))
	}
}

// RegisterExampleMetrics registers on reg the collectors a Server registers, holding the
// series of one example peer, so that every metric can be listed with its type, labels and
// help (docs/metrics.md, the checks of deploy/observability). Never serve reg.
func RegisterExampleMetrics(reg prometheus.Registerer) error {
	m, err := newMetrics(reg)
	if err != nil {
		return err
	}
	m.addPeer("example")
	return nil
}
