//go:build privileged

package l2

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestConflictsInNetns: a machine that is not a berth node answering for an owned IP is
// reported through OnConflict (once per IP per interval) and counted on every packet;
// the same claim from a MAC BerthMAC accepts (a planned handover) is neither.
func TestConflictsInNetns(t *testing.T) {
	s, child := inNodeNetns(t)
	if !child {
		return
	}
	var (
		mu      sync.Mutex
		reports []Conflict
	)
	a := startAnnouncer(t, Config{
		BerthMAC: func(m net.HardwareAddr) bool { return bytes.Equal(m, peerMAC) },
		OnConflict: func(c Conflict) {
			mu.Lock()
			defer mu.Unlock()
			reports = append(reports, c)
		},
	})
	a.Set([]Assignment{{IP: lb4}, {IP: lb6}})
	waitOwned(t, a, time.Second, on([]string{segDev}, lb4, lb6))
	count := func(ip netip.Addr) float64 {
		return testutil.ToFloat64(a.h.metrics.conflicts.WithLabelValues(family(ip)))
	}
	reported := func() []Conflict {
		mu.Lock()
		defer mu.Unlock()
		return append([]Conflict(nil), reports...)
	}
	send := func(ip netip.Addr, from net.HardwareAddr) {
		if ip.Is4() {
			s.sendARP(t, segDev, from, ip)
		} else {
			s.sendNA(t, segDev, from, ip)
		}
	}

	for _, ip := range []netip.Addr{lb4, lb6} {
		t.Run(family(ip), func(t *testing.T) {
			before := len(reported())
			// The berth node's claim goes first on the same link and socket, so by the time
			// the stranger's is reported the friendly one has been judged.
			start := time.Now()
			send(ip, peerMAC)
			send(ip, strangerMAC)
			took := waitFor(t, time.Second, "OnConflict", func() (string, bool) {
				got := reported()
				return fmt.Sprint(got), len(got) > before
			})
			got := reported()[before:]
			if len(got) != 1 {
				t.Fatalf("OnConflict calls: %v, want one", got)
			}
			c := got[0]
			want := Conflict{IP: ip, Interface: segDev, MAC: strangerMAC, Seen: c.Seen}
			if d := cmp.Diff(want, c, ipCmp); d != "" {
				t.Errorf("OnConflict (-want +got):\n%s", d)
			}
			if c.Seen.Before(start) || c.Seen.After(time.Now()) {
				t.Errorf("Conflict.Seen = %v, not between sending and now", c.Seen)
			}
			if n := count(ip); n != 1 {
				t.Errorf("berth_l2_conflicts_total{family=%s} = %v, want 1 (the berth node's claim is no conflict)", family(ip), n)
			}
			t.Logf("%s claimed by a stranger: reported %v after sending", ip, took.Round(time.Microsecond))

			// Again: counted, but within the interval not reported.
			send(ip, strangerMAC)
			waitFor(t, time.Second, "second conflict counted", func() (string, bool) {
				n := count(ip)
				return fmt.Sprint(n), n == 2
			})
			if got := reported()[before:]; len(got) != 1 {
				t.Errorf("OnConflict calls after a repeat within the interval: %d, want still 1", len(got))
			}
			// The node keeps answering: berth reports, the speaker decides.
			if got := a.Owned(); !cmp.Equal(on([]string{segDev}, lb4, lb6), got, ipCmp) {
				t.Errorf("Owned() after a conflict = %v", got)
			}
		})
	}
}
