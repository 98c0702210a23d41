//go:build privileged

package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/lab/netns/netnstest"
)

// Addresses on the loopback of the test's own namespace.
var lo1, lo2, lo3, lo4 = netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.4")

// TestLoopback runs the Server against GoBGP receivers on loopback addresses of a network
// namespace the test makes (netnstest re-executes it there):
// per-peer paths and attributes, withdrawal from one peer, rejected imports, peer
// changes that leave the others alone, metrics, and the graceful shutdown sequence.
func TestLoopback(t *testing.T) {
	if !netnstest.Reexec(t) {
		return
	}
	r1 := startReceiver(t, "r1", lo2, 64500, lo1, 64500, "") // iBGP
	r2 := startReceiver(t, "r2", lo3, 64501, lo1, 64512, "") // eBGP
	reg := prometheus.NewPedanticRegistry()
	s := startServer(t, Config{RouterID: netip.MustParseAddr("10.0.0.1"), Registerer: reg, Logger: klog.Background()})
	peer1 := Peer{Name: "r1", Address: lo2, Port: r1.port, MyASN: 64500, PeerASN: 64500, SourceAddress: lo1,
		HoldTime: 9 * time.Second, ConnectTime: time.Second}
	peer2 := Peer{Name: "r2", Address: lo3, Port: r2.port, MyASN: 64512, PeerASN: 64501, SourceAddress: lo1,
		HoldTime: 9 * time.Second, ConnectTime: time.Second}
	if err := s.SetPeers(t.Context(), []Peer{peer1, peer2}); err != nil {
		t.Fatal(err)
	}
	took := waitEstablished(t, s, "r1", "r2")
	t.Logf("both sessions established %v after SetPeers", took.Round(time.Millisecond))

	a, b, c := pfx("203.0.113.10/32"), pfx("203.0.113.11/32"), pfx("203.0.113.12/32")
	v6 := pfx("2001:db8:113::10/128")
	paths := []Path{
		{Prefix: a, Peers: []string{"r1", "r2"}, Communities: []uint32{64512<<16 | 100}, LargeCommunities: [][3]uint32{{64512, 1, 2}}, LocalPref: 200},
		{Prefix: b, Peers: []string{"r2"}},
		{Prefix: c, Peers: []string{"r1"}, Communities: []uint32{64512<<16 | 201}},
		{Prefix: c, Peers: []string{"r2"}, Communities: []uint32{64512<<16 | 202}},
		{Prefix: v6, Peers: []string{"r1", "r2"}}, // IPv4 sessions: goes nowhere
	}
	if err := s.SetPaths(t.Context(), paths); err != nil {
		t.Fatal(err)
	}
	want1 := route{Prefix: a, NextHop: lo1, Communities: []uint32{64512<<16 | 100}, Large: [][3]uint32{{64512, 1, 2}}, LocalPref: 200, HasLocalPref: true}
	if got := waitRoute(t, r1, a, nil); !cmp.Equal(want1, got, netipEqual) {
		t.Errorf("r1 (iBGP) route (-want +got):\n%s", cmp.Diff(want1, got, netipEqual))
	}
	want2 := route{Prefix: a, NextHop: lo1, Communities: []uint32{64512<<16 | 100}, Large: [][3]uint32{{64512, 1, 2}}}
	if got := waitRoute(t, r2, a, nil); !cmp.Equal(want2, got, netipEqual) {
		t.Errorf("r2 (eBGP: no LOCAL_PREF) route (-want +got):\n%s", cmp.Diff(want2, got, netipEqual))
	}
	if got := waitRoute(t, r1, c, nil); !slices.Equal(got.Communities, []uint32{64512<<16 | 201}) {
		t.Errorf("r1's %s: %v, want community 64512:201", c, got)
	}
	if got := waitRoute(t, r2, c, nil); !slices.Equal(got.Communities, []uint32{64512<<16 | 202}) {
		t.Errorf("r2's %s: %v, want community 64512:202", c, got)
	}
	waitRoute(t, r2, b, nil)
	// r1 got a and c, which were sent with b: b would be there by now.
	if rt, ok := r1.routeTo(b); ok {
		t.Errorf("r1 has %v, sent to r2 only", rt)
	}
	if rs := r1.routes(familyIPv6); len(rs) > 0 {
		t.Errorf("r1 has IPv6 routes over an IPv4 session: %v", rs)
	}
	waitFor(t, 3*time.Second, "advertised counts", func() (string, bool) {
		s1, _ := statusOfPeer(s, "r1")
		s2, _ := statusOfPeer(s, "r2")
		return fmt.Sprintf("r1 %d, r2 %d", s1.Advertised, s2.Advertised), s1.Advertised == 2 && s2.Advertised == 3
	})

	t.Run("move a prefix from one peer to another", func(t *testing.T) {
		paths[1].Peers = []string{"r1"}
		if err := s.SetPaths(t.Context(), paths); err != nil {
			t.Fatal(err)
		}
		waitRoute(t, r1, b, nil)
		waitNoRoute(t, r2, b)
	})

	t.Run("attribute change is re-sent, no withdrawal", func(t *testing.T) {
		before := r1.withdrawnPrefixes()
		paths[0].Communities = []uint32{64512<<16 | 101}
		if err := s.SetPaths(t.Context(), paths); err != nil {
			t.Fatal(err)
		}
		waitRoute(t, r1, a, func(r route) bool { return slices.Equal(r.Communities, []uint32{64512<<16 | 101}) })
		if after := r1.withdrawnPrefixes(); after != before {
			t.Errorf("r1 got %d withdrawals on an attribute change", after-before)
		}
	})

	t.Run("unchanged paths send nothing", func(t *testing.T) {
		before := settledSentTo(t, s, lo2)
		if err := s.SetPaths(t.Context(), paths); err != nil {
			t.Fatal(err)
		}
		// A barrier: one more path to r1, which must be the only UPDATE sent.
		x := pfx("203.0.113.99/32")
		if err := s.SetPaths(t.Context(), append(slices.Clone(paths), Path{Prefix: x, Peers: []string{"r1"}})); err != nil {
			t.Fatal(err)
		}
		waitRoute(t, r1, x, nil)
		if after := settledSentTo(t, s, lo2); after != before+1 {
			t.Errorf("UPDATEs sent to r1: %d before, %d after an unchanged SetPaths and one new path; want one more", before, after)
		}
		if err := s.SetPaths(t.Context(), paths); err != nil {
			t.Fatal(err)
		}
		waitNoRoute(t, r1, x)
	})

	t.Run("withdraw", func(t *testing.T) {
		if err := s.SetPaths(t.Context(), slices.Delete(slices.Clone(paths), 0, 1)); err != nil {
			t.Fatal(err)
		}
		waitNoRoute(t, r1, a)
		waitNoRoute(t, r2, a)
		if err := s.SetPaths(t.Context(), paths); err != nil {
			t.Fatal(err)
		}
		waitRoute(t, r1, a, nil)
	})

	t.Run("inbound routes are never installed", func(t *testing.T) {
		in := pfx("198.51.100.0/24")
		r1.originate(in)
		waitFor(t, 5*time.Second, "adj-RIB-in of r1 holds "+in.String(), func() (string, bool) {
			n := 0
			_ = s.bgp.ListPath(t.Context(), &api.ListPathRequest{TableType: api.TableType_ADJ_IN, Name: lo2.String(), Family: familyIPv4},
				func(*api.Destination) { n++ })
			return fmt.Sprint(n), n == 1
		})
		var global []string
		_ = s.bgp.ListPath(t.Context(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: familyIPv4},
			func(d *api.Destination) { global = append(global, d.Prefix) })
		if slices.Contains(global, in.String()) {
			t.Errorf("global RIB holds the received %s: %v", in, global)
		}
		if _, ok := r2.routeTo(in); ok {
			t.Errorf("r2 got %s, received from r1", in)
		}
	})

	t.Run("changing one peer leaves the other alone", func(t *testing.T) {
		s1, _ := statusOfPeer(s, "r1")
		peer2.HoldTime = 6 * time.Second
		if err := s.SetPeers(t.Context(), []Peer{peer1, peer2}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "r2 back with hold time 6 s", func() (string, bool) {
			st, _ := statusOfPeer(s, "r2")
			return fmt.Sprintf("%+v", st), st.State == StateEstablished && st.HoldTime == 6*time.Second
		})
		after, _ := statusOfPeer(s, "r1")
		if after.State != StateEstablished || !after.Since.Equal(s1.Since) || after.Flaps != 0 {
			t.Errorf("r1 disturbed: before %+v, after %+v", s1, after)
		}
		waitRoute(t, r2, c, nil) // r2 gets its paths again
	})

	t.Run("a path waits for its peer", func(t *testing.T) {
		r3 := startReceiver(t, "r3", lo4, 64503, lo1, 64512, "")
		e := pfx("203.0.113.20/32")
		paths = append(paths, Path{Prefix: e, Peers: []string{"r3"}})
		if err := s.SetPaths(t.Context(), paths); err != nil {
			t.Fatal(err)
		}
		peer3 := Peer{Name: "r3", Address: lo4, Port: r3.port, MyASN: 64512, PeerASN: 64503, SourceAddress: lo1, ConnectTime: time.Second}
		if err := s.SetPeers(t.Context(), []Peer{peer1, peer2, peer3}); err != nil {
			t.Fatal(err)
		}
		waitRoute(t, r3, e, nil)
		if rs := r3.routes(familyIPv4); len(rs) != 1 {
			t.Errorf("r3 routes %v, want only %s", rs, e)
		}
		if err := s.SetPeers(t.Context(), []Peer{peer1, peer2}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("backoff", func(t *testing.T) {
		// Nothing listens yet: dials are refused, the interval grows.
		port := freePort(t, lo4)
		peer4 := Peer{Name: "r4", Address: lo4, Port: port, MyASN: 64512, PeerASN: 64504, SourceAddress: lo1, ConnectTime: time.Second}
		if err := s.SetPeers(t.Context(), []Peer{peer1, peer2, peer4}); err != nil {
			t.Fatal(err)
		}
		took := waitFor(t, 20*time.Second, "r4 backs off", func() (string, bool) {
			st, _ := statusOfPeer(s, "r4")
			return fmt.Sprintf("%+v", st), st.ConnectRetry >= 2*time.Second && st.ConsecutiveFailures >= 2 &&
				strings.Contains(st.LastError, "refused")
		})
		st, _ := statusOfPeer(s, "r4")
		t.Logf("r4 reconnects every %v after %d refused dials (%v)", st.ConnectRetry, st.ConsecutiveFailures, took.Round(time.Millisecond))
		startReceiverOn(t, "r4", netip.AddrPortFrom(lo4, port), 64504, lo1, 64512, "")
		waitFor(t, 30*time.Second, "r4 established, back to the base interval", func() (string, bool) {
			st, _ := statusOfPeer(s, "r4")
			return fmt.Sprintf("%+v", st), st.State == StateEstablished && st.ConnectRetry == time.Second && st.ConsecutiveFailures == 0
		})
		// The interval went back with UpdatePeer, which must not have reset the session.
		var state api.PeerState_SessionState
		if err := s.bgp.ListPeer(t.Context(), &api.ListPeerRequest{Address: lo4.String()}, func(p *api.Peer) {
			state = p.GetState().GetSessionState()
		}); err != nil {
			t.Fatal(err)
		}
		if st, _ := statusOfPeer(s, "r4"); state != api.PeerState_ESTABLISHED || st.Flaps != 0 {
			t.Errorf("r4 after the interval went back: GoBGP says %v, status %+v", state, st)
		}
		if err := s.SetPeers(t.Context(), []Peer{peer1, peer2}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		s.kickRefresh()
		waitFor(t, 3*time.Second, "metrics", func() (string, bool) {
			up := testutil.ToFloat64(s.metrics.sessionUp.WithLabelValues("r1"))
			adv := testutil.ToFloat64(s.metrics.advertised.WithLabelValues("r1"))
			sent := testutil.ToFloat64(s.metrics.updatesSent.WithLabelValues("r1"))
			established := testutil.ToFloat64(s.metrics.sessionState.WithLabelValues("r1", StateEstablished))
			return fmt.Sprintf("up %v established %v advertised %v sent %v", up, established, adv, sent),
				up == 1 && established == 1 && adv == 3 && sent >= 3
		})
		if n := testutil.CollectAndCount(reg, "berth_bgp_session_up"); n != 2 {
			t.Errorf("%d session_up series, want 2 (r3 removed)", n)
		}
		if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
			t.Errorf("lint: %v %v", problems, err)
		}
	})

	t.Run("graceful shutdown", func(t *testing.T) {
		// Poll r1's view of a while Shutdown runs: it must carry GRACEFUL_SHUTDOWN
		// before it goes.
		seen := make(chan []route, 1)
		go func() {
			var states []route
			for {
				rt, ok := r1.routeTo(a)
				if !ok {
					seen <- states
					return
				}
				if len(states) == 0 || !cmp.Equal(states[len(states)-1], rt, netipEqual) {
					states = append(states, rt)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		start := time.Now()
		if err := s.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		var states []route
		select {
		case states = <-seen:
		case <-time.After(5 * time.Second):
			t.Fatalf("r1 still has %s 5 s after Shutdown", a)
		}
		if n := len(states); n == 0 || !slices.Contains(states[n-1].Communities, gshutCommunity) {
			t.Errorf("r1's %s before it went: %v; want GRACEFUL_SHUTDOWN last", a, states)
		}
		t.Logf("Shutdown took %v (GRACEFUL_SHUTDOWN wait %v); r1 saw %v", took.Round(time.Millisecond), DefaultGracefulShutdownWait, states)
		if err := s.SetPaths(t.Context(), paths); err != ErrShutdown {
			t.Errorf("SetPaths after Shutdown = %v, want ErrShutdown", err)
		}
	})
}
