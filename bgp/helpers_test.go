package bgp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"
	api "github.com/osrg/gobgp/v3/api"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
)

// freePort returns a TCP port free on addr right now.
func freePort(t *testing.T, addr netip.Addr) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// waitFor polls cond every 10 ms until it holds and returns how long that took, or
// fails with what cond last saw.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (seen string, ok bool)) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		seen, ok := cond()
		last = seen
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %v: %v; last seen: %s", what, timeout, err, last)
	}
	return time.Since(start)
}

func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Logger.IsZero() {
		cfg.Logger = klog.Background()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

func statusOfPeer(s *Server, name string) (PeerStatus, bool) {
	for _, st := range s.Status() {
		if st.Name == name {
			return st, true
		}
	}
	return PeerStatus{}, false
}

func waitEstablished(t *testing.T, s *Server, names ...string) time.Duration {
	t.Helper()
	return waitFor(t, 20*time.Second, fmt.Sprintf("sessions %v established", names), func() (string, bool) {
		for _, n := range names {
			st, ok := statusOfPeer(s, n)
			if !ok || st.State != StateEstablished {
				return fmt.Sprintf("%+v", s.Status()), false
			}
		}
		return "", true
	})
}

// waitRoute waits until r's route to p satisfies ok (nil: exists).
func waitRoute(t *testing.T, r *receiver, p netip.Prefix, ok func(route) bool) route {
	t.Helper()
	var got route
	waitFor(t, 5*time.Second, fmt.Sprintf("%s has %s", r.name, p), func() (string, bool) {
		rt, found := r.routeTo(p)
		got = rt
		return fmt.Sprintf("%v (found %t)", rt, found), found && (ok == nil || ok(rt))
	})
	return got
}

func waitNoRoute(t *testing.T, r *receiver, p netip.Prefix) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("%s drops %s", r.name, p), func() (string, bool) {
		rt, found := r.routeTo(p)
		return rt.String(), !found
	})
}

// sentTo reads how many UPDATEs GoBGP wrote to the neighbour at addr.
func sentTo(t *testing.T, s *Server, addr netip.Addr) uint64 {
	t.Helper()
	var n uint64
	if err := s.bgp.ListPeer(t.Context(), &api.ListPeerRequest{Address: addr.String()}, func(p *api.Peer) {
		n = p.GetState().GetMessages().GetSent().GetUpdate()
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// settledSentTo is sentTo once the count has stopped changing for 300 ms: GoBGP counts an
// UPDATE after writing it, so the peer may hold a route before its count shows.
func settledSentTo(t *testing.T, s *Server, addr netip.Addr) uint64 {
	t.Helper()
	n := sentTo(t, s, addr)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(300 * time.Millisecond)
		m := sentTo(t, s, addr)
		if m == n {
			return n
		}
		n = m
	}
	t.Fatalf("UPDATEs sent to %s still changing after 5s", addr)
	return n
}

var netipEqual = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

var pfx = netip.MustParsePrefix
