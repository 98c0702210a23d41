package bgp

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/klog/v2"
)

func TestConnectRetry(t *testing.T) {
	for _, tt := range []struct {
		base     time.Duration
		failures int
		want     time.Duration
	}{
		{time.Second, 0, time.Second},
		{time.Second, 1, time.Second},
		{time.Second, 2, 2 * time.Second},
		{time.Second, 3, 4 * time.Second},
		{time.Second, 7, 64 * time.Second},
		{time.Second, 8, MaxConnectRetry},
		{time.Second, 1000, MaxConnectRetry},
		{5 * time.Second, 4, 40 * time.Second},
		{MaxConnectRetry, 5, MaxConnectRetry},
	} {
		if got := connectRetry(tt.base, tt.failures); got != tt.want {
			t.Errorf("connectRetry(%v, %d) = %v, want %v", tt.base, tt.failures, got, tt.want)
		}
	}
}

func TestBackoffStep(t *testing.T) {
	s := time.Second
	for _, tt := range []struct {
		state            string
		have, want, loop time.Duration
		step             backoffAction
	}{
		{StateActive, s, s, 10 * s, backoffWait},
		{StateActive, s, 2 * s, 500 * time.Millisecond, backoffWait}, // let the loop dial once at the old interval
		{StateActive, s, 2 * s, s, backoffRestart},
		{StateIdle, 4 * s, 8 * s, 5 * s, backoffRestart},
		{StateConnect, 4 * s, 8 * s, 3 * s, backoffWait},
		{StateOpenSent, s, 2 * s, 10 * s, backoffWait},
		{StateOpenConfirm, s, 2 * s, 10 * s, backoffWait},
		{StateEstablished, 8 * s, s, 0, backoffUpdate}, // stable again: back to the base, no reset
		{StateEstablished, s, 2 * s, 0, backoffUpdate},
		{StateActive, 8 * s, s, 0, backoffUpdate},
	} {
		if got := backoffStep(tt.state, tt.have, tt.want, tt.loop); got != tt.step {
			t.Errorf("backoffStep(%s, %v → %v, in loop %v) = %v, want %v", tt.state, tt.have, tt.want, tt.loop, got, tt.step)
		}
	}
}

func TestStatusOf(t *testing.T) {
	added := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	up := added.Add(3 * time.Second)
	p := Peer{Name: "tor", Address: netip.MustParseAddr("198.18.0.1"), MyASN: 1, PeerASN: 2}
	withPassword := p
	withPassword.Password = "s3cret"
	established := &api.Peer{
		State:  &api.PeerState{SessionState: api.PeerState_ESTABLISHED},
		Timers: &api.Timers{State: &api.TimersState{Uptime: timestamppb.New(up), NegotiatedHoldTime: 9}},
	}
	active := &api.Peer{State: &api.PeerState{SessionState: api.PeerState_ACTIVE}}
	tests := []struct {
		name       string
		p          Peer
		gp         *api.Peer
		rec        peerRecord
		md5Trouble bool
		want       PeerStatus
	}{
		{"not listed yet", p, nil, peerRecord{}, false,
			PeerStatus{Name: "tor", Address: p.Address, State: StateIdle, Since: added, ConnectRetry: time.Second}},
		{"established", p, established, peerRecord{state: StateEstablished, since: up, flaps: 2, lastError: "session down: hold-timer-expired"}, false,
			PeerStatus{Name: "tor", Address: p.Address, State: StateEstablished, Since: up, HoldTime: 9 * time.Second, Flaps: 2,
				LastError: "session down: hold-timer-expired", ConnectRetry: time.Second}},
		{"GoBGP's state wins over a late event", p, active, peerRecord{state: StateEstablished, since: up}, false,
			PeerStatus{Name: "tor", Address: p.Address, State: StateActive, Since: up, ConnectRetry: time.Second}},
		{"dials with a password time out", withPassword, active,
			peerRecord{state: StateActive, since: up, dialFailures: 3, dialTimeouts: 2, lastError: "dial: i/o timeout"}, false,
			PeerStatus{Name: "tor", Address: p.Address, State: StateActive, Since: up, LastError: "dial: i/o timeout",
				AuthMismatchLikely: true, ConnectRetry: time.Second, ConsecutiveFailures: 3}},
		{"one timeout is not enough", withPassword, active, peerRecord{dialFailures: 1, dialTimeouts: 1}, false,
			PeerStatus{Name: "tor", Address: p.Address, State: StateActive, Since: added, ConnectRetry: time.Second, ConsecutiveFailures: 1}},
		{"timeouts without a password say nothing", p, active, peerRecord{dialFailures: 5, dialTimeouts: 5}, false,
			PeerStatus{Name: "tor", Address: p.Address, State: StateActive, Since: added, ConnectRetry: time.Second, ConsecutiveFailures: 5}},
		{"kernel MD5 drops while a password peer is down", withPassword, active, peerRecord{}, true,
			PeerStatus{Name: "tor", Address: p.Address, State: StateActive, Since: added, AuthMismatchLikely: true, ConnectRetry: time.Second}},
		{"kernel MD5 drops do not blame an established peer", withPassword, established, peerRecord{}, true,
			PeerStatus{Name: "tor", Address: p.Address, State: StateEstablished, Since: up, HoldTime: 9 * time.Second, ConnectRetry: time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := statusOf(tt.p, tt.gp, tt.rec, time.Second, added, tt.md5Trouble)
			if d := cmp.Diff(tt.want, got, netipEqual); d != "" {
				t.Errorf("statusOf() (-want +got):\n%s", d)
			}
		})
	}
}

func TestSessionState(t *testing.T) {
	for s, want := range map[api.PeerState_SessionState]string{
		api.PeerState_UNKNOWN: "idle", api.PeerState_IDLE: "idle", api.PeerState_CONNECT: "connect",
		api.PeerState_ACTIVE: "active", api.PeerState_OPENSENT: "opensent", api.PeerState_OPENCONFIRM: "openconfirm",
		api.PeerState_ESTABLISHED: "established", 42: "idle",
	} {
		if got := sessionState(s); got != want {
			t.Errorf("sessionState(%v) = %q, want %q", s, got, want)
		}
	}
}

func TestAdvertised(t *testing.T) {
	rib := map[netip.Prefix]ribEntry{
		pfx("203.0.113.1/32"):      {markers: []marker{{1, 10}, {2, 10}}},
		pfx("203.0.113.2/32"):      {markers: []marker{{2, 11}}},
		pfx("2001:db8:113::1/128"): {markers: []marker{{1, 10}, {3, 10}}},
	}
	for _, tt := range []struct {
		id   uint32
		v4   bool
		want int
	}{{1, true, 1}, {2, true, 2}, {1, false, 1}, {3, true, 0}, {3, false, 1}, {4, true, 0}} {
		if got := advertised(rib, tt.id, tt.v4); got != tt.want {
			t.Errorf("advertised(peer %d, v4 %t) = %d, want %d", tt.id, tt.v4, got, tt.want)
		}
	}
}

func TestMD5Drops(t *testing.T) {
	netstat := []byte("TcpExt: SyncookiesSent TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure Other\n" +
		"TcpExt: 1 2 3 4 5\n" +
		"IpExt: InNoRoutes\nIpExt: 7\n")
	if n, err := md5Drops(netstat); n != 9 || err != nil {
		t.Errorf("md5Drops() = %d, %v; want 9", n, err)
	}
	if _, err := md5Drops([]byte("TcpExt: A B\nTcpExt: 1\n")); err == nil {
		t.Error("md5Drops(ragged) = nil error")
	}
	if b, err := os.ReadFile("/proc/net/netstat"); err == nil {
		if _, err := md5Drops(b); err != nil {
			t.Errorf("md5Drops(/proc/net/netstat): %v", err)
		}
	}
}

func TestRecorder(t *testing.T) {
	a := netip.MustParseAddr("198.18.0.1")
	kicks := 0
	r := newRecorder(time.Now, func() { kicks++ })
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	timeout := &net.OpError{Op: "dial", Err: timeoutErr{}}
	refused := &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}
	l := gobgpLogger{log: klog.Background(), rec: r}

	l.Debug("failed to connect", gobgplog.Fields{"Topic": "Peer", "Key": a.String(), "Error": timeout})
	l.Debug("failed to connect", gobgplog.Fields{"Topic": "Peer", "Key": a.String(), "Error": timeout})
	if got := r.get(a); got.dialFailures != 2 || got.dialTimeouts != 2 || got.lastError != "dial: dial: i/o timeout" {
		t.Errorf("after two timeouts: %+v", got)
	}
	l.Debug("failed to connect", gobgplog.Fields{"Key": a.String(), "Error": refused})
	if got := r.get(a); got.dialFailures != 3 || got.dialTimeouts != 0 || got.failures() != 3 {
		t.Errorf("after a refusal: %+v", got)
	}
	// Refused at the OPEN: the connection got through, so no timeout streak.
	badAS := bgp.NewMessageError(bgp.BGP_ERROR_OPEN_MESSAGE_ERROR, bgp.BGP_ERROR_SUB_BAD_PEER_AS, nil, "as number mismatch expected 64501, received 64502")
	l.Warn("sent notification", gobgplog.Fields{"Topic": "Peer", "Key": a.String(), "Data": badAS})
	if got := r.get(a); got.openFailures != 1 || got.dialTimeouts != 0 || got.failures() != 4 ||
		got.lastError != "notification sent: code 2(open) subcode 2(bad peer as): as number mismatch expected 64501, received 64502" {
		t.Errorf("after a refused OPEN: %+v", got)
	}
	r.stateChange(a, StateEstablished, t0)
	if got := r.get(a); got.failures() != 0 || got.upAt != t0 {
		t.Errorf("after establishing: %+v", got)
	}
	// Established: GoBGP logs code and subcode, and "Peer Down" tells the rest.
	l.Warn("sent notification", gobgplog.Fields{"Topic": "Peer", "Key": a.String(), "Code": uint8(3), "Subcode": uint8(1)})
	if got := r.get(a); got.failures() != 0 {
		t.Errorf("after a NOTIFICATION on an established session: %+v", got)
	}
	r.stateChange(a, StateIdle, t0.Add(10*time.Second)) // died young
	l.Info("Peer Down", gobgplog.Fields{"Key": a.String(), "State": "BGP_FSM_ESTABLISHED", "Reason": "hold-timer-expired"})
	if got := r.get(a); got.flaps != 1 || got.youngDrops != 1 || got.lastError != "session down: hold-timer-expired" {
		t.Errorf("after a young drop: %+v", got)
	}
	r.stateChange(a, StateEstablished, t0.Add(20*time.Second))
	r.stateChange(a, StateIdle, t0.Add(30*time.Second))
	if got := r.get(a); got.flaps != 2 || got.youngDrops != 2 || got.failures() != 2 {
		t.Errorf("after two young drops: %+v", got)
	}
	r.stateChange(a, StateEstablished, t0.Add(40*time.Second))
	r.stable(a, t0.Add(40*time.Second+stableAfter))
	if got := r.get(a); got.failures() != 0 {
		t.Errorf("after a stable session: %+v", got)
	}
	r.stateChange(a, StateActive, t0.Add(200*time.Second)) // died old: one failure
	if got := r.get(a); got.youngDrops != 1 || got.flaps != 3 {
		t.Errorf("after an old drop: %+v", got)
	}
	l.Info("Peer Down", gobgplog.Fields{"Key": "not an address"})
	r.reset(a)
	if got := r.get(a); got != (peerRecord{}) {
		t.Errorf("after reset: %+v", got)
	}
	if kicks == 0 {
		t.Error("recorder never kicked")
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

var _ net.Error = timeoutErr{}

func TestKeyValues(t *testing.T) {
	err := errors.New("boom")
	got := keyValues(gobgplog.Fields{"Topic": "Peer", "Key": "198.18.0.1", "Error": err, gobgplog.FieldFacility: "config", "already": 1})
	want := []any{"error", err, "key", "198.18.0.1", "topic", "Peer", "already", 1}
	// Sorted by the original key: "Error" < "Key" < "Topic" < "already".
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b error) bool { return a == b })); d != "" {
		t.Errorf("keyValues() (-want +got):\n%s", d)
	}
}
