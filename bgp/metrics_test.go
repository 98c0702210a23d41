package bgp

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetricsFollowStatus: the state gauge has exactly one 1 per peer and follows the
// refreshed status, flaps count the record's increments across a restart of the record,
// and a removed peer leaves no series.
func TestMetricsFollowStatus(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.addPeer("r1")
	state := func() string {
		t.Helper()
		var in []string
		for _, st := range sessionStateValues {
			if testutil.ToFloat64(m.sessionState.WithLabelValues("r1", st)) == 1 {
				in = append(in, st)
			}
		}
		return strings.Join(in, ",")
	}
	flaps := func() float64 { return testutil.ToFloat64(m.flaps.WithLabelValues("r1")) }
	if got := state(); got != StateIdle {
		t.Errorf("state after addPeer = %q, want %q", got, StateIdle)
	}

	steps := []struct {
		status    PeerStatus
		wantState string
		wantUp    float64
		wantFlaps float64
	}{
		{PeerStatus{Name: "r1", State: StateActive}, StateActive, 0, 0},
		{PeerStatus{Name: "r1", State: StateEstablished, Advertised: 3}, StateEstablished, 1, 0},
		{PeerStatus{Name: "r1", State: StateIdle, Flaps: 1}, StateIdle, 0, 1},
		{PeerStatus{Name: "r1", State: StateEstablished, Flaps: 1}, StateEstablished, 1, 1},
		{PeerStatus{Name: "r1", State: StateConnect, Flaps: 3}, StateConnect, 0, 3}, // two flaps between refreshes
		{PeerStatus{Name: "r1", State: StateActive, Flaps: 1}, StateActive, 0, 4},   // the record restarted
	}
	for i, s := range steps {
		m.set(s.status, 0)
		if got := state(); got != s.wantState {
			t.Errorf("step %d: state = %q, want %q", i, got, s.wantState)
		}
		if got := testutil.ToFloat64(m.sessionUp.WithLabelValues("r1")); got != s.wantUp {
			t.Errorf("step %d: berth_bgp_session_up = %v, want %v", i, got, s.wantUp)
		}
		if got := flaps(); got != s.wantFlaps {
			t.Errorf("step %d: berth_bgp_session_flaps_total = %v, want %v", i, got, s.wantFlaps)
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	m.removePeer("r1")
	if n := testutil.CollectAndCount(reg); n != 0 {
		t.Errorf("%d series after removePeer, want 0", n)
	}
}
