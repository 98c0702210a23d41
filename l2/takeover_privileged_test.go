//go:build privileged

package l2

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/berthlb/berth/lab/capture"
)

// TestTakeoverInNetns: taking an IP moves the client's existing neighbour entry to the
// node's MAC within 100 ms, through the gratuitous ARP / unsolicited NA alone (the client
// sends nothing), and the burst follows: 1 + Burst announcements, BurstInterval apart.
//
// With arp_accept=0 (the default) a gratuitous ARP only updates an entry that exists, so
// each case first makes one: a ping while nobody owns the IP (INCOMPLETE, then FAILED),
// or an entry that still points at the previous owner (STALE, another berth node's MAC).
func TestTakeoverInNetns(t *testing.T) {
	s, child := inNodeNetns(t)
	if !child {
		return
	}
	a := startAnnouncer(t, Config{})
	neigh := s.watchNeigh(t)
	cases := []struct {
		name  string
		ip    netip.Addr
		setup func(t *testing.T, ip netip.Addr)
	}{
		{"IPv4 entry from a ping while unowned", lb4, s.pingUnowned},
		{"IPv6 entry from a ping while unowned", lb6, s.pingUnowned},
		{"IPv4 entry at the previous owner", lb4, s.previousOwner},
		{"IPv6 entry at the previous owner", lb6, s.previousOwner},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a.Set(nil)
			waitOwned(t, a, time.Second, []Assignment{})
			s.flushClientNeigh(t, segDev, c.ip)
			c.setup(t, c.ip)
			before, _ := s.clientNeigh(t, segDev, c.ip)

			capt, err := capture.Start(t.Context(), s.client, segDev)
			if err != nil {
				t.Fatal(err)
			}
			defer capt.Close()
			g0 := testutil.ToFloat64(a.h.metrics.gratuitous.WithLabelValues(family(c.ip)))
			t0 := testutil.ToFloat64(a.h.metrics.takeovers.WithLabelValues(family(c.ip)))

			start := time.Now()
			a.Set([]Assignment{{IP: c.ip}})
			ev := neigh.waitFor(t, time.Second, "client entry at the node's MAC", func(e neighEvent) bool {
				return e.At.After(start) && e.IP == c.ip && e.MAC == selfMAC.String()
			})
			first, err := capt.WaitFor(t.Context(), func(f capture.Frame) bool { return !f.Outgoing && announces(f, c.ip) })
			if err != nil {
				t.Fatal(err)
			}
			took := ev.At.Sub(start)
			t.Logf("%s: client entry [%s] %s → %s %s %v after Set; the capture saw the first announcement %v after Set",
				c.ip, before.HardwareAddr, neighState(before.State), ev.MAC, neighState(ev.State),
				took.Round(time.Microsecond), first.Time.Sub(start).Round(time.Microsecond))
			if took > 100*time.Millisecond {
				t.Errorf("client entry changed %v after Set, want ≤ 100 ms", took)
			}

			// The burst: 1 + DefaultBurst announcements, DefaultBurstInterval apart.
			frames := perAnnouncement(c.ip)
			want := (1 + DefaultBurst) * frames
			var times []time.Time
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			_, err = capt.WaitFor(ctx, func(f capture.Frame) bool {
				if !f.Outgoing && announces(f, c.ip) {
					times = append(times, f.Time)
				}
				return len(times) == want
			})
			if err != nil {
				t.Fatalf("burst: %d of %d frames: %v", len(times), want, err)
			}
			for i := frames; i < len(times); i += frames {
				gap := times[i].Sub(times[i-frames])
				// Spread, not timed: a late repeat makes the next one early (the schedule
				// keeps to when each was due), and this runs with -race on a busy machine.
				if gap < DefaultBurstInterval/2 || gap > 2*DefaultBurstInterval {
					t.Errorf("announcement %d came %v after the previous one, want about %v", i/frames, gap, DefaultBurstInterval)
				}
			}
			t.Logf("burst: %d frames over %v", len(times), times[len(times)-1].Sub(times[0]).Round(time.Millisecond))
			waitFor(t, time.Second, "gratuitous counter", func() (string, bool) {
				n := testutil.ToFloat64(a.h.metrics.gratuitous.WithLabelValues(family(c.ip))) - g0
				return "", n == float64(1+DefaultBurst)
			})
			if n := testutil.ToFloat64(a.h.metrics.takeovers.WithLabelValues(family(c.ip))) - t0; n != 1 {
				t.Errorf("berth_l2_takeovers_total{family=%s} grew by %v, want 1 (one IP taken on one interface)", family(c.ip), n)
			}
		})
	}
}

// pingUnowned makes the client resolve ip while nobody answers it: its entry stays
// INCOMPLETE (then FAILED).
func (s site) pingUnowned(t *testing.T, ip netip.Addr) {
	t.Helper()
	if out, err := s.run(t, "ping", "-c1", "-W0.3", ip.String()); err == nil {
		t.Fatalf("ping %s answered while nobody owns it:\n%s", ip, out)
	}
	if _, ok := s.clientNeigh(t, segDev, ip); !ok {
		t.Fatalf("no client entry for %s after the ping", ip)
	}
}

// previousOwner makes the client believe ip is at another berth node.
func (s site) previousOwner(t *testing.T, ip netip.Addr) {
	t.Helper()
	s.setClientNeigh(t, segDev, ip, peerMAC)
}

// announces reports whether f is a gratuitous ARP or an unsolicited NA for ip from the
// node.
func announces(f capture.Frame, ip netip.Addr) bool {
	if a, ok := f.ARP(); ok {
		return a.Gratuitous() && a.SenderIP == ip && a.SenderMAC.String() == selfMAC.String()
	}
	if n, ok := f.ND(); ok {
		return n.Unsolicited() && n.Override && n.Target == ip && n.LinkAddr.String() == selfMAC.String() && n.Dst == allNodes
	}
	return false
}

// perAnnouncement is how many frames one announcement is: a gratuitous ARP request and
// reply, or one NA.
func perAnnouncement(ip netip.Addr) int {
	if ip.Is4() {
		return 2
	}
	return 1
}

// TestReannounceInNetns: Reannounce takes back what another node claimed meanwhile: the
// client's entry, moved to another berth node's MAC, comes back to this node's within
// 100 ms, and the burst follows, for every IP answered.
func TestReannounceInNetns(t *testing.T) {
	s, child := inNodeNetns(t)
	if !child {
		return
	}
	a := startAnnouncer(t, Config{})
	neigh := s.watchNeigh(t)
	g4 := testutil.ToFloat64(a.h.metrics.gratuitous.WithLabelValues(familyIPv4))
	g6 := testutil.ToFloat64(a.h.metrics.gratuitous.WithLabelValues(familyIPv6))
	a.Set([]Assignment{{IP: lb4}, {IP: lb6}})
	waitFor(t, 3*time.Second, "the takeover's bursts end", func() (string, bool) {
		n4 := testutil.ToFloat64(a.h.metrics.gratuitous.WithLabelValues(familyIPv4)) - g4
		n6 := testutil.ToFloat64(a.h.metrics.gratuitous.WithLabelValues(familyIPv6)) - g6
		return fmt.Sprintf("%v IPv4, %v IPv6 announcements", n4, n6), n4 == 1+DefaultBurst && n6 == 1+DefaultBurst
	})
	for _, ip := range []netip.Addr{lb4, lb6} {
		s.previousOwner(t, ip) // another node took it while this one was suspected
	}
	capt, err := capture.Start(t.Context(), s.client, segDev)
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Close()

	start := time.Now()
	a.Reannounce()
	for _, ip := range []netip.Addr{lb4, lb6} {
		ev := neigh.waitFor(t, time.Second, "client entry back at the node's MAC", func(e neighEvent) bool {
			return e.At.After(start) && e.IP == ip && e.MAC == selfMAC.String()
		})
		t.Logf("%s: client entry back at the node's MAC %v after Reannounce", ip, ev.At.Sub(start).Round(time.Microsecond))
		if took := ev.At.Sub(start); took > 100*time.Millisecond {
			t.Errorf("%s: client entry changed %v after Reannounce, want ≤ 100 ms", ip, took)
		}
	}
	counts := map[netip.Addr]int{}
	want := (1 + DefaultBurst) * (perAnnouncement(lb4) + perAnnouncement(lb6))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err = capt.WaitFor(ctx, func(f capture.Frame) bool {
		for _, ip := range []netip.Addr{lb4, lb6} {
			if !f.Outgoing && announces(f, ip) {
				counts[ip]++
			}
		}
		return counts[lb4]+counts[lb6] == want
	})
	if err != nil {
		t.Fatalf("after Reannounce: frames %v, want %d in all: %v", counts, want, err)
	}
	t.Logf("after Reannounce: %v frames, the burst included", counts)
}
