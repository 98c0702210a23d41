//go:build privileged && timing

package datapath

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/berthlb/berth/lab/netns/netnstest"
)

// TestApplySLO times Apply of the table for 1,000 dual-stack Services, each with a TCP
// and a UDP port (4,000 open ports, 2,000 IPs), ten times with a changed port each time.
// Target 200 ms: each ≤ 2× target, median ≤ target.
func TestApplySLO(t *testing.T) {
	if !netnstest.Reexec(t) {
		return
	}
	const services, target = 1000, 200 * time.Millisecond
	tbl := NewTable()
	t.Cleanup(func() { _ = tbl.Remove(t.Context()) })
	var samples []time.Duration
	for run := range 10 {
		var d Desired
		for i := range services {
			v4 := netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)})
			v6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x01, 0x13, 14: byte(i >> 8), 15: byte(i)})
			for _, ip := range []netip.Addr{v4, v6} {
				d.Open = append(d.Open, Frontend{IP: ip, Protocol: TCP, Port: 80}, Frontend{IP: ip, Protocol: UDP, Port: uint16(1000 + run)})
			}
		}
		begin := time.Now()
		st, err := tbl.Apply(t.Context(), d)
		took := time.Since(begin)
		if err != nil {
			t.Fatal(err)
		}
		if st.IPs != 2*services || st.Open != 4*services {
			t.Fatalf("run %d: status %+v, want %d IPs and %d open ports", run, st, 2*services, 4*services)
		}
		samples = append(samples, took)
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	p50, p99, maxD := s[len(s)/2], s[len(s)*99/100], s[len(s)-1]
	t.Logf("FIGURE Apply, %d dual-stack Services (4,000 open ports), whole table in one batch and read back: p50 %v p99 %v max %v (target %v: each ≤ %v, median ≤ %v)",
		services, p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), maxD.Round(100*time.Microsecond), target, 2*target, target)
	if p50 > target || maxD > 2*target {
		t.Errorf("Apply took p50 %v, max %v", p50, maxD)
	}
}
