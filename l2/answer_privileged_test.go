//go:build privileged

package l2

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/berthlb/berth/lab/capture"
)

// TestAnswersInNetns: the client resolves owned IPs to the node's MAC with arping and
// ndisc6, gets nothing for an IP the node does not own, and nothing once Set drops it.
func TestAnswersInNetns(t *testing.T) {
	s, child := inNodeNetns(t)
	if !child {
		return
	}
	reg := prometheus.NewPedanticRegistry()
	a := startAnnouncer(t, Config{Registerer: reg})
	m := a.h.metrics
	eth1 := []string{segDev}

	start := time.Now()
	a.Set([]Assignment{{IP: lb4}, {IP: lb6}}) // default interfaces: eth1 (lo is not one)
	waitOwned(t, a, time.Second, on(eth1, lb4, lb6))
	t.Logf("Set → Owned reports both IPs on eth1: %v", time.Since(start).Round(time.Microsecond))
	if got := testutil.ToFloat64(m.owned.WithLabelValues(familyIPv4)) + testutil.ToFloat64(m.owned.WithLabelValues(familyIPv6)); got != 2 {
		t.Errorf("berth_l2_owned_ips = %v in all, want 2", got)
	}

	if got := s.arping(t, segDev, lb4); got != selfMAC.String() {
		t.Errorf("arping %s: answered by %q, want %s", lb4, got, selfMAC)
	}
	if got := s.ndisc(t, segDev, lb6); got != selfMAC.String() {
		t.Errorf("ndisc6 %s: answered by %q, want %s", lb6, got, selfMAC)
	}
	if got := s.arping(t, segDev, lb4b); got != "" {
		t.Errorf("arping %s (not owned): answered by %s", lb4b, got)
	}
	if got := s.ndisc(t, segDev, lb6b); got != "" {
		t.Errorf("ndisc6 %s (not owned): answered by %s", lb6b, got)
	}
	ans4, ans6 := testutil.ToFloat64(m.answers.WithLabelValues(familyIPv4)), testutil.ToFloat64(m.answers.WithLabelValues(familyIPv6))
	if ans4 < 1 || ans6 < 1 {
		t.Errorf("berth_l2_answers_total = %v (ipv4), %v (ipv6); want ≥ 1 each", ans4, ans6)
	}
	t.Logf("answers so far: %v ARP, %v NDP", ans4, ans6)

	// Giving up: the client asks every millisecond while Set drops the IP; the last
	// answer must come right after Set.
	capt, err := capture.Start(t.Context(), s.client, segDev)
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Close()
	stopAsking := s.askARP(t, segDev, lb4, time.Millisecond)
	defer stopAsking()
	isReply := func(f capture.Frame) bool {
		p, ok := f.ARP()
		return ok && !f.Outgoing && p.Op == capture.ARPReply && p.SenderIP == lb4
	}
	if _, err := capt.WaitFor(t.Context(), isReply); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	a.Set(nil)
	took := waitOwned(t, a, time.Second, []Assignment{})
	// Then 50 more requests, unanswered.
	var after int
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := capt.WaitFor(ctx, func(f capture.Frame) bool {
		if p, ok := f.ARP(); ok && f.Outgoing && p.Op == capture.ARPRequest && p.TargetIP == lb4 && f.Time.After(start.Add(took)) {
			after++
		}
		return after == 50
	}); err != nil {
		t.Fatal(err)
	}
	stopAsking()
	var last time.Time
	for _, f := range capt.Frames() {
		if isReply(f) {
			last = f.Time
		}
	}
	t.Logf("Set(nil) → Owned empty: %v; last ARP answer seen %v after Set, none to the 50 requests after",
		took.Round(time.Microsecond), last.Sub(start).Round(time.Microsecond))
	if last.After(start.Add(took)) {
		t.Errorf("ARP answered %v after Set, after Owned had dropped the IP (%v)", last.Sub(start), took)
	}
	ans4, ans6 = testutil.ToFloat64(m.answers.WithLabelValues(familyIPv4)), testutil.ToFloat64(m.answers.WithLabelValues(familyIPv6))
	if got := s.arping(t, segDev, lb4); got != "" {
		t.Errorf("arping %s after giving it up: answered by %s", lb4, got)
	}
	if got := s.ndisc(t, segDev, lb6); got != "" {
		t.Errorf("ndisc6 %s after giving it up: answered by %s", lb6, got)
	}
	if n4, n6 := testutil.ToFloat64(m.answers.WithLabelValues(familyIPv4)), testutil.ToFloat64(m.answers.WithLabelValues(familyIPv6)); n4 != ans4 || n6 != ans6 {
		t.Errorf("answers after giving up: %v, %v; want still %v, %v", n4, n6, ans4, ans6)
	}
	if got := testutil.ToFloat64(m.owned.WithLabelValues(familyIPv4)) + testutil.ToFloat64(m.owned.WithLabelValues(familyIPv6)); got != 0 {
		t.Errorf("berth_l2_owned_ips = %v after giving up, want 0", got)
	}
}
