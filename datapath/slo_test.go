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

// TestApplyProxySLO times Apply when the same 1,000 dual-stack Services are all
// Proxy mode, each with a TCP and a UDP port (4,000 frontends, their chains) and three
// backends. Every Apply still replaces the whole table, so this is the cost of any change
// until Apply sends differences; it guards against the quadratic cases found while
// building it (one backend map for all frontends: 1 s; one per frontend: 2.8 s). Bound
// 800 ms: each ≤ 2× bound, median ≤ bound.
func TestApplyProxySLO(t *testing.T) {
	if !netnstest.Reexec(t) {
		return
	}
	const services, bound = 1000, 800 * time.Millisecond
	tbl := NewTable()
	t.Cleanup(func() { _ = tbl.Remove(t.Context()) })
	var samples []time.Duration
	for run := range 5 {
		var d Desired
		for i := range services {
			v4 := netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)})
			v6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x01, 0x13, 14: byte(i >> 8), 15: byte(i)})
			for _, ip := range []netip.Addr{v4, v6} {
				bs := backends(ip)
				d.Proxy = append(d.Proxy,
					ProxyFrontend{Frontend: Frontend{IP: ip, Protocol: TCP, Port: 80}, Backends: bs},
					ProxyFrontend{Frontend: Frontend{IP: ip, Protocol: UDP, Port: uint16(1000 + run)}, Backends: bs})
			}
		}
		begin := time.Now()
		st, err := tbl.Apply(t.Context(), d)
		took := time.Since(begin)
		if err != nil {
			t.Fatal(err)
		}
		if st.Proxy != 4*services {
			t.Fatalf("run %d: status %+v, want %d frontends", run, st, 4*services)
		}
		samples = append(samples, took)
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	p50, maxD := s[len(s)/2], s[len(s)-1]
	t.Logf("FIGURE Apply, %d dual-stack Proxy-mode Services (4,000 frontends, 3 backends each), whole table replaced and read back: p50 %v max %v (bound %v: each ≤ %v, median ≤ %v)",
		services, p50.Round(100*time.Microsecond), maxD.Round(100*time.Microsecond), bound, 2*bound, bound)
	if p50 > bound || maxD > 2*bound {
		t.Errorf("Apply took p50 %v, max %v", p50, maxD)
	}
}

// backends are two pods and another node's NodePort, of ip's family.
func backends(ip netip.Addr) []Backend {
	pod1, pod2, node := netip.MustParseAddr("198.19.1.2"), netip.MustParseAddr("198.19.1.3"), netip.MustParseAddr("198.18.0.12")
	if ip.Is6() {
		pod1, pod2, node = netip.MustParseAddr("2001:db8:19:1::2"), netip.MustParseAddr("2001:db8:19:1::3"), netip.MustParseAddr("2001:db8:18::12")
	}
	return []Backend{
		{Addr: netip.AddrPortFrom(pod1, 8080)}, {Addr: netip.AddrPortFrom(pod2, 8080)},
		{Addr: netip.AddrPortFrom(node, 30080), Masquerade: true},
	}
}
