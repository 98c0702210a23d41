package speaker

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/bgp"
	"github.com/berthlb/berth/config/v1alpha1"
)

func TestSessionEvents(t *testing.T) {
	a := netip.MustParseAddr("198.18.0.1")
	st := func(name, state string, edit func(*bgp.PeerStatus)) bgp.PeerStatus {
		s := bgp.PeerStatus{Name: name, Address: a, State: state, HoldTime: 9 * time.Second}
		if edit != nil {
			edit(&s)
		}
		return s
	}
	up := func(name string) bgp.PeerStatus { return st(name, bgp.StateEstablished, nil) }
	tests := []struct {
		name          string
		before, after []bgp.PeerStatus
		want          []sessionEvent
	}{
		{"nothing changed", []bgp.PeerStatus{up("frr")}, []bgp.PeerStatus{up("frr")}, nil},
		{"comes up", []bgp.PeerStatus{st("frr", bgp.StateActive, nil)}, []bgp.PeerStatus{up("frr")},
			[]sessionEvent{{"frr", "Normal", EventBGPSessionEstablished, "Node n1: session with 198.18.0.1 established, hold time 9s"}}},
		{"first reading, up", nil, []bgp.PeerStatus{up("frr")},
			[]sessionEvent{{"frr", "Normal", EventBGPSessionEstablished, "Node n1: session with 198.18.0.1 established, hold time 9s"}}},
		{"first reading, connecting: quiet", nil, []bgp.PeerStatus{st("frr", bgp.StateActive, nil)}, nil},
		{"goes down with a reason", []bgp.PeerStatus{up("frr")},
			[]bgp.PeerStatus{st("frr", bgp.StateIdle, func(s *bgp.PeerStatus) { s.LastError = "hold timer expired" })},
			[]sessionEvent{{"frr", "Warning", EventBGPSessionDown, "Node n1: session with 198.18.0.1 down: hold timer expired"}}},
		{"goes down without one", []bgp.PeerStatus{up("frr")}, []bgp.PeerStatus{st("frr", bgp.StateActive, nil)},
			[]sessionEvent{{"frr", "Warning", EventBGPSessionDown, "Node n1: session with 198.18.0.1 down: state active"}}},
		{"removed from the config: quiet", []bgp.PeerStatus{up("frr"), up("bird")}, []bgp.PeerStatus{up("bird")}, nil},
		{"auth mismatch once", []bgp.PeerStatus{st("frr", bgp.StateActive, nil)},
			[]bgp.PeerStatus{st("frr", bgp.StateActive, func(s *bgp.PeerStatus) { s.AuthMismatchLikely = true })},
			[]sessionEvent{{"frr", "Warning", EventBGPSessionAuthMismatchLikely,
				"Node n1: session with 198.18.0.1 fails as a TCP-MD5 password mismatch does (or the peer is down)"}}},
		{"auth mismatch still", []bgp.PeerStatus{st("frr", bgp.StateActive, func(s *bgp.PeerStatus) { s.AuthMismatchLikely = true })},
			[]bgp.PeerStatus{st("frr", bgp.StateConnect, func(s *bgp.PeerStatus) { s.AuthMismatchLikely = true })}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, sessionEvents("n1", tt.before, tt.after)); d != "" {
				t.Errorf("sessionEvents() (-want +got):\n%s", d)
			}
		})
	}
}

func TestPeerNodeStatus(t *testing.T) {
	a := netip.MustParseAddr("198.18.0.1")
	since := time.Date(2026, 11, 26, 1, 2, 3, 456e6, time.UTC)
	whole := metav1.NewTime(since.Truncate(time.Second))
	tests := []struct {
		name string
		in   bgp.PeerStatus
		want v1alpha1.PeerNodeStatus
	}{
		{"established: no reason, no retry",
			bgp.PeerStatus{Name: "frr", Address: a, State: bgp.StateEstablished, Since: since, Advertised: 7, ConnectRetry: 5 * time.Second},
			v1alpha1.PeerNodeStatus{Node: "n1", State: v1alpha1.SessionEstablished, Since: &whole, PrefixesSent: 7}},
		{"first attempt",
			bgp.PeerStatus{Name: "frr", Address: a, State: bgp.StateActive, Since: since, ConnectRetry: 5 * time.Second},
			v1alpha1.PeerNodeStatus{Node: "n1", State: v1alpha1.SessionActive, Since: &whole, Reason: PeerReasonConnecting,
				RetryInterval: &metav1.Duration{Duration: 5 * time.Second}}},
		{"backing off",
			bgp.PeerStatus{Name: "frr", Address: a, State: bgp.StateActive, Since: since, ConnectRetry: 20 * time.Second,
				ConsecutiveFailures: 3, LastError: "connection refused"},
			v1alpha1.PeerNodeStatus{Node: "n1", State: v1alpha1.SessionActive, Since: &whole, Reason: PeerReasonConnectFailed,
				Message: "connection refused", Failures: 3, RetryInterval: &metav1.Duration{Duration: 20 * time.Second}}},
		{"auth mismatch",
			bgp.PeerStatus{Name: "frr", Address: a, State: bgp.StateConnect, Since: since, ConnectRetry: 10 * time.Second,
				ConsecutiveFailures: 2, AuthMismatchLikely: true},
			v1alpha1.PeerNodeStatus{Node: "n1", State: v1alpha1.SessionConnect, Since: &whole, Reason: PeerReasonAuthMismatchLikely,
				Message: "fails as a TCP-MD5 password mismatch does (or the peer is down)", Failures: 2,
				RetryInterval: &metav1.Duration{Duration: 10 * time.Second}}},
		{"unknown state",
			bgp.PeerStatus{Name: "frr", Address: a, State: "weird"},
			v1alpha1.PeerNodeStatus{Node: "n1", State: v1alpha1.SessionUnknown, Reason: PeerReasonConnecting}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, peerNodeStatus("n1", tt.in)); d != "" {
				t.Errorf("peerNodeStatus() (-want +got):\n%s", d)
			}
		})
	}
}
