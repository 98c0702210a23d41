package datapath

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/google/nftables"
)

// benchDesired is a speaker's front door at a big site: services Services, each with a TCP
// and a UDP port on an IPv4 address (every fifth also on an IPv6 one). With proxy, every
// tenth is Proxy mode (externalTrafficPolicy Cluster) on a cluster of nodes nodes, its
// frontends sending to one local endpoint and to every other node's NodePort
// (masqueraded), every fourth of them restricted to two source ranges. udp0 is the first
// Service's UDP port, backend the port of the second's (a Proxy Service's) local
// endpoint: changing either is a one-Service change.
func benchDesired(services, nodes int, proxy bool, udp0, backend uint16) Desired {
	key := desiredKey{services, nodes, proxy, udp0, backend}
	desiredMu.Lock()
	defer desiredMu.Unlock()
	if d, ok := desiredMemo[key]; ok {
		return d
	}
	var d Desired
	for i := range services {
		ips := []netip.Addr{netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})}
		if i%5 == 0 {
			ips = append(ips, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x18, 14: byte(i >> 8), 15: byte(i)}))
		}
		for _, ip := range ips {
			d.IPs = append(d.IPs, ip)
			ports := []Frontend{{IP: ip, Protocol: TCP, Port: 80}, {IP: ip, Protocol: UDP, Port: 53}}
			if i == 0 {
				ports[1].Port = udp0
			}
			d.Open = append(d.Open, ports...)
			if !proxy || i%10 != 1 {
				continue
			}
			for j, f := range ports {
				pf := ProxyFrontend{Frontend: f}
				local := netip.AddrPortFrom(pod(ip.Is4(), i), 8080+uint16(j))
				if i == 1 {
					local = netip.AddrPortFrom(local.Addr(), backend)
				}
				pf.Backends = append(pf.Backends, Backend{Addr: local})
				for n := 1; n < nodes; n++ {
					pf.Backends = append(pf.Backends, Backend{Addr: netip.AddrPortFrom(nodeAddr(ip.Is4(), n), 30000+uint16(2*i+j)%2768), Masquerade: true})
				}
				if i%40 == 1 {
					pf.RestrictSources = true
					if ip.Is4() {
						pf.SourceRanges = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24")}
					} else {
						pf.SourceRanges = []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/48"), netip.MustParsePrefix("2001:db8:2::/48")}
					}
				}
				d.Proxy = append(d.Proxy, pf)
			}
		}
	}
	desiredMemo[key] = d
	return d
}

// The benchmarks share their Desired states, which normalize only reads: building them
// is a good part of the setup.
type desiredKey struct {
	services, nodes int
	proxy           bool
	udp0, backend   uint16
}

var (
	desiredMu   sync.Mutex
	desiredMemo = map[desiredKey]Desired{}
)

func pod(v4 bool, i int) netip.Addr {
	if v4 {
		return netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)})
	}
	return netip.AddrFrom16([16]byte{0xfd, 0, 0x02, 0x44, 14: byte(i >> 8), 15: byte(i)})
}

func nodeAddr(v4 bool, n int) netip.Addr {
	if v4 {
		return netip.AddrFrom4([4]byte{192, 168, 0, byte(n)})
	}
	return netip.AddrFrom16([16]byte{0xfd, 0, 0, 0, 0, 0, 0, 0x01, 15: byte(n)})
}

// The sizes of the benchmarks: 10,000 Services on 50 nodes.
const benchServices, benchNodes = 10_000, 50

func benchNormalize(b *testing.B, d Desired) normalized {
	b.Helper()
	n, err := normalize(d)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// modelSize counts a model's set elements.
func modelSize(m *model) int {
	n := 0
	for _, es := range m.elems {
		n += len(es)
	}
	return n
}

// BenchmarkNormalizeModel validates the desired table of the Proxy site and derives its
// content, as Table.Apply does for the next state on every change (and again for the last
// state, the table's content not being kept between changes).
func BenchmarkNormalizeModel(b *testing.B) {
	d := benchDesired(benchServices, benchNodes, true, 53, 8080)
	elements := modelSize(newModel(benchNormalize(b, d), [2]map[Frontend]uint32{}))
	b.ReportAllocs()
	for b.Loop() {
		n, err := normalize(d)
		if err != nil {
			b.Fatal(err)
		}
		newModel(n, [2]map[Frontend]uint32{})
	}
	b.ReportMetric(float64(elements), "elements")
}

// BenchmarkSendElements compares two models of the Proxy site that differ by one
// Service's UDP port (on its IPv4 and IPv6 address), both ways as applyDiff does
// (deletions, then additions), handing each batch to a send that only counts.
func BenchmarkSendElements(b *testing.B) {
	old := newModel(benchNormalize(b, benchDesired(benchServices, benchNodes, true, 53, 8080)), [2]map[Frontend]uint32{})
	next := newModel(benchNormalize(b, benchDesired(benchServices, benchNodes, true, 54, 8080)), old.ids)
	set := func(name string) *nftables.Set { return setDef(name) }
	sent := 0
	send := func(_ *nftables.Set, es []nftables.SetElement) error { sent += len(es); return nil }
	b.ReportAllocs()
	for b.Loop() {
		sent = 0
		if err := sendElements(old, next, set, send); err != nil {
			b.Fatal(err)
		}
		if err := sendElements(next, old, set, send); err != nil {
			b.Fatal(err)
		}
	}
	if sent != 4 { // the old and new port on both of the Service's IPs
		b.Fatalf("sent %d elements, want 4", sent)
	}
	b.ReportMetric(float64(modelSize(next)), "elements")
}

// BenchmarkTableChange is what Table.Apply computes for a one-Service change, all but the
// kernel's part: normalize the next state, derive the last and the next models and queue
// their difference on a netlink batch that is never sent. change=port moves one
// Service's UDP port (two open-port elements) on the VIP-only site; change=backend moves
// one Proxy Service's local endpoint (its frontends' rules and backend elements) on the
// Proxy site.
func BenchmarkTableChange(b *testing.B) {
	for _, tc := range []struct {
		name          string
		proxy         bool
		udp0, backend uint16
	}{{"proxy=none/change=port", false, 54, 8080}, {"proxy=1000/change=backend", true, 53, 9090}} {
		b.Run(tc.name, func(b *testing.B) {
			last := benchNormalize(b, benchDesired(benchServices, benchNodes, tc.proxy, 53, 8080))
			ids := newModel(last, [2]map[Frontend]uint32{}).ids
			next := benchDesired(benchServices, benchNodes, tc.proxy, tc.udp0, tc.backend)
			b.ReportAllocs()
			for b.Loop() {
				n, err := normalize(next)
				if err != nil {
					b.Fatal(err)
				}
				old := newModel(last, ids)
				m := newModel(n, ids)
				var c nftables.Conn
				if err := applyDiff(&c, old, m, map[string]*nftables.Set{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
