//go:build privileged

package l2

import (
	"fmt"
	"net"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vishvananda/netlink"

	"github.com/berthlb/berth/lab/capture"
)

// TestNDPRevalidationInNetns is the NUD trap of research/netlab.md §4: once the client's
// entry for an IPv6 LB IP goes STALE and traffic flows, the client probes with a unicast
// NS to the LB IP itself. The node must answer those, or the entry cycles through FAILED.
// With reachable time shortened to 1 s and a datagram every 200 ms for 20 s, the entry must
// never fail or change MAC, and every unicast probe (at least 10) must be answered.
func TestNDPRevalidationInNetns(t *testing.T) {
	s, child := inNodeNetns(t)
	if !child {
		return
	}
	a := startAnnouncer(t, Config{})
	a.Set([]Assignment{{IP: lb6}})
	waitOwned(t, a, time.Second, on([]string{segDev}, lb6))

	// Reachable for 0.5–1.5 s (random around base_reachable_time), then STALE; the next
	// packet starts DELAY, and delay_first_probe_time later (0: at once, an eager client)
	// the unicast probes begin.
	if err := s.client.Sysctl(t.Context(), map[string]string{
		"net.ipv6.neigh." + segDev + ".base_reachable_time_ms": "1000",
		"net.ipv6.neigh." + segDev + ".delay_first_probe_time": "0",
	}); err != nil {
		t.Fatal(err)
	}
	// The kernel picks the reachable time at random in [0.5, 1.5] × base when the sysctl
	// is written; even at 1.5 s a probe cycle (reachable, ≤ 200 ms STALE until the next
	// datagram, probe) is under 1.8 s, so 20 s make at least 11 probes.
	if out, err := s.run(t, "ip", "-6", "ntable", "show", "dev", segDev); err == nil {
		if m := regexp.MustCompile(`reachable (\d+)`).FindStringSubmatch(out); m != nil {
			t.Logf("client reachable time for this run: %s ms", m[1])
		}
	}
	neigh := s.watchNeigh(t)
	capt, err := capture.Start(t.Context(), s.client, segDev)
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Close()
	ans0 := testutil.ToFloat64(a.h.metrics.answers.WithLabelValues(familyIPv6))

	// UDP, not ping: iputils ping sends with MSG_CONFIRM once it has replies, which keeps
	// the entry REACHABLE without any probe. A datagram confirms nothing.
	sink, err := net.ListenUDP("udp6", &net.UDPAddr{IP: lb6.AsSlice(), Port: 9999})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	var received atomic.Int64
	go func() {
		buf := make([]byte, 64)
		for {
			if _, _, err := sink.ReadFrom(buf); err != nil {
				return
			}
			received.Add(1)
		}
	}()
	var conn *net.UDPConn
	if err := inNetns(s.client, func() (err error) {
		conn, err = net.DialUDP("udp6", nil, &net.UDPAddr{IP: lb6.AsSlice(), Port: 9999})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const sent = 100
	start := time.Now()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for i := range sent {
		if _, err := conn.Write([]byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if i < sent-1 {
			<-tick.C
		}
	}
	waitFor(t, time.Second, "all datagrams at the node", func() (string, bool) {
		n := received.Load()
		return fmt.Sprint(n), n == sent
	})
	t.Logf("%d datagrams, one every 200 ms over %v, all received by the node", sent, time.Since(start).Round(time.Millisecond))

	// The entry: never FAILED (nor back to INCOMPLETE), always the node's MAC.
	states := map[string]int{}
	for _, e := range neigh.all() {
		if e.IP != lb6 {
			continue
		}
		states[neighState(e.State)]++
		if e.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) != 0 {
			t.Errorf("client entry for %s went %s at %s", lb6, neighState(e.State), e.At.Sub(start).Round(time.Millisecond))
		}
		if e.MAC != selfMAC.String() && e.State&netlink.NUD_INCOMPLETE == 0 {
			t.Errorf("client entry for %s changed to %s (%s)", lb6, e.MAC, e)
		}
	}
	t.Logf("client entry states reported for %s: %v", lb6, states)

	// Each NS for the LB IP gets exactly one answer: ours. (The kernel would add a
	// second one if it answered for addresses on lo; it does not.)
	var solicitations, advertisements int
	for _, f := range capt.Frames() {
		if n, ok := f.ND(); ok && n.Target == lb6 {
			switch {
			case f.Outgoing && n.Type == capture.NeighborSolicitation:
				solicitations++
			case !f.Outgoing && n.Type == capture.NeighborAdvertisement && n.Solicited:
				advertisements++
			}
		}
	}
	if solicitations != advertisements {
		t.Errorf("%d NS for %s, %d solicited NA in reply; want one each", solicitations, lb6, advertisements)
	}

	// Each unicast NS from the client to the LB IP, and its answer.
	var probes, answered int
	var slowest time.Duration
	frames := capt.Frames()
	for i, f := range frames {
		n, ok := f.ND()
		if !ok || !f.Outgoing || n.Type != capture.NeighborSolicitation || n.Target != lb6 || n.Dst != lb6 {
			continue
		}
		probes++
		for _, g := range frames[i+1:] {
			if g.Time.Sub(f.Time) > 100*time.Millisecond {
				break
			}
			if r, ok := g.ND(); ok && !g.Outgoing && r.Type == capture.NeighborAdvertisement && r.Target == lb6 &&
				r.Solicited && r.Dst == n.Src && r.LinkAddr.String() == selfMAC.String() {
				answered++
				slowest = max(slowest, g.Time.Sub(f.Time))
				break
			}
		}
	}
	t.Logf("unicast NS to %s: %d sent, %d answered within 100 ms (slowest %v); NDP answers counted by the node: %v",
		lb6, probes, answered, slowest.Round(time.Microsecond), testutil.ToFloat64(a.h.metrics.answers.WithLabelValues(familyIPv6))-ans0)
	if answered < 10 || answered != probes {
		t.Errorf("%d of %d unicast NS answered, want all and at least 10", answered, probes)
	}
	if got := testutil.ToFloat64(a.h.metrics.answers.WithLabelValues(familyIPv6)) - ans0; got < float64(answered) {
		t.Errorf("berth_l2_answers_total{family=ipv6} grew by %v, want ≥ %d", got, answered)
	}
}
