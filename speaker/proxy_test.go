package speaker

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthlb/berth/datapath"
)

func TestProxyFrontends(t *testing.T) {
	lb, lb6 := netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("2001:db8:113::10")
	pod1, pod2 := netip.MustParseAddrPort("198.19.1.2:8080"), netip.MustParseAddrPort("198.19.1.3:8080")
	pod6 := netip.MustParseAddrPort("[2001:db8:19:1::2]:8080")
	gone := netip.MustParseAddrPort("198.19.1.9:8080")
	local := []LocalEndpoint{
		{PortName: "http", Addr: pod2, Ready: true}, {PortName: "http", Addr: pod1, Ready: true},
		{PortName: "http", Addr: gone}, // terminating: ready ones exist
		{PortName: "http", Addr: pod6, Ready: true},
		{PortName: "metrics", Addr: netip.MustParseAddrPort("198.19.1.2:9090"), Ready: true},
	}
	ports := []Port{{Name: "http", Protocol: "TCP", Port: 80, NodePort: 30080}}
	n2 := ProxyNode{Name: "n2", Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.12"), netip.MustParseAddr("2001:db8:18::12")}, Healthy: true}
	n3 := ProxyNode{Name: "n3", Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.13")}, Healthy: true}
	sick := ProxyNode{Name: "n4", Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.14")}}
	d := Decisions{Services: []*ServiceDecision{
		{Name: "cluster", IPs: []IPDecision{{IP: lb, Pool: "p", Proxy: true}, {IP: lb6, Pool: "p", Proxy: true}}, Ports: ports, Local: local, TrafficPolicy: TrafficPolicyCluster},
		{Name: "local", IPs: []IPDecision{{IP: netip.MustParseAddr("203.0.113.11"), Pool: "p", Proxy: true}}, Ports: ports, Local: local, TrafficPolicy: TrafficPolicyLocal},
		{Name: "only-terminating", IPs: []IPDecision{{IP: netip.MustParseAddr("203.0.113.12"), Pool: "p", Proxy: true}}, Ports: ports,
			Local: []LocalEndpoint{{PortName: "http", Addr: gone}}, TrafficPolicy: TrafficPolicyLocal},
		{Name: "no-nodeports", IPs: []IPDecision{{IP: netip.MustParseAddr("203.0.113.13"), Pool: "p", Proxy: true}},
			Ports: []Port{{Name: "http", Protocol: "TCP", Port: 80}}, Local: local},
		{Name: "vip", IPs: []IPDecision{{IP: netip.MustParseAddr("203.0.113.14"), Pool: "p"}}, Ports: ports, Local: local},
		{Name: "foreign", IPs: []IPDecision{{IP: netip.MustParseAddr("198.18.0.11"), Proxy: true}}, Ports: ports},
	}}
	be := func(a netip.AddrPort) datapath.Backend { return datapath.Backend{Addr: a} }
	node := func(a string) datapath.Backend {
		return datapath.Backend{Addr: netip.AddrPortFrom(netip.MustParseAddr(a), 30080), Masquerade: true}
	}
	fe := func(ip netip.Addr, bs ...datapath.Backend) datapath.ProxyFrontend {
		return datapath.ProxyFrontend{Frontend: datapath.Frontend{IP: ip, Protocol: datapath.TCP, Port: 80}, Backends: bs}
	}
	want := []datapath.ProxyFrontend{
		// Two local endpoints: every other node's NodePort twice, so each node gets a
		// third; the unhealthy one none.
		fe(lb, be(pod1), be(pod2), node("198.18.0.12"), node("198.18.0.12"), node("198.18.0.13"), node("198.18.0.13")),
		// IPv6: one local endpoint, and the one node with an IPv6 address.
		fe(lb6, be(pod6), node("2001:db8:18::12")),
		fe(netip.MustParseAddr("203.0.113.11"), be(pod1), be(pod2)),
		fe(netip.MustParseAddr("203.0.113.12"), be(gone)),
		// Without NodePorts only this node's endpoints can take it.
		fe(netip.MustParseAddr("203.0.113.13"), be(pod1), be(pod2)),
	}
	got, conflicts := ProxyFrontends(d, []ProxyNode{n2, n3, sick})
	if conflicts != nil {
		t.Errorf("conflicts %v", conflicts)
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y }), cmp.Comparer(func(x, y netip.AddrPort) bool { return x == y })); diff != "" {
		t.Errorf("ProxyFrontends (-want +got):\n%s", diff)
	}

	// No local endpoint: the other nodes take it all, one share each.
	d.Services = d.Services[:1]
	d.Services[0].Local = nil
	got, _ = ProxyFrontends(d, []ProxyNode{n2, n3})
	if want := []datapath.Backend{node("198.18.0.12"), node("198.18.0.13")}; !cmp.Equal(want, got[0].Backends, cmp.Comparer(func(x, y netip.AddrPort) bool { return x == y })) {
		t.Errorf("without local endpoints: %v, want %v", got[0].Backends, want)
	}
}

func TestProxyNodes(t *testing.T) {
	a := []netip.Addr{netip.MustParseAddr("198.18.0.12")}
	nodes := []Node{{Name: "self", Addrs: a}, {Name: "c", Addrs: a}, {Name: "b", Addrs: a, Excluded: true}, {Name: "a", Addrs: a}, {Name: "no-address"}}
	got := proxyNodes(nodes, "self", func(n string) bool { return n == "a" })
	want := []ProxyNode{{Name: "a", Addrs: a, Healthy: true}, {Name: "c", Addrs: a}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("proxyNodes (-want +got):\n%s", diff)
	}
}

func TestProxySourceRanges(t *testing.T) {
	lb, lb6 := netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("2001:db8:113::10")
	v4 := netip.MustParsePrefix("198.51.100.0/24")
	d := Decisions{Services: []*ServiceDecision{
		{Name: "restricted", IPs: []IPDecision{{IP: lb, Pool: "p", Proxy: true}, {IP: lb6, Pool: "p", Proxy: true}},
			Ports: []Port{{Protocol: "TCP", Port: 80}}, SourceRanges: []netip.Prefix{v4}},
		{Name: "open", IPs: []IPDecision{{IP: netip.MustParseAddr("203.0.113.11"), Pool: "p", Proxy: true}}, Ports: []Port{{Protocol: "TCP", Port: 80}}},
	}}
	got, _ := ProxyFrontends(d, nil)
	if len(got) != 3 {
		t.Fatalf("%d frontends, want 3", len(got))
	}
	// IPv4 lets in its range; IPv6, with no range of its family, nobody; the other all.
	if !got[0].RestrictSources || !slices.Equal(got[0].SourceRanges, []netip.Prefix{v4}) {
		t.Errorf("IPv4: %+v, want restricted to %s", got[0], v4)
	}
	if !got[1].RestrictSources || len(got[1].SourceRanges) != 0 {
		t.Errorf("IPv6: %+v, want restricted to nobody", got[1])
	}
	if got[2].RestrictSources {
		t.Errorf("without ranges: %+v, want open to all", got[2])
	}
}

func TestProxyConflictsAndTerminating(t *testing.T) {
	lb := netip.MustParseAddr("203.0.113.10")
	gone := netip.MustParseAddrPort("198.19.1.9:8080")
	ports := []Port{{Name: "http", Protocol: "TCP", Port: 80, NodePort: 30080}}
	n2 := ProxyNode{Name: "n2", Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.12")}, Healthy: true}
	d := Decisions{Services: []*ServiceDecision{
		{Namespace: "a", Name: "first", IPs: []IPDecision{{IP: lb, Pool: "p", Proxy: true}}, Ports: ports,
			Local: []LocalEndpoint{{PortName: "http", Addr: gone}}, TrafficPolicy: TrafficPolicyCluster},
		{Namespace: "b", Name: "second", IPs: []IPDecision{{IP: lb, Pool: "p", Proxy: true}}, Ports: ports},
	}}
	got, conflicts := ProxyFrontends(d, []ProxyNode{n2})
	if len(got) != 1 || len(conflicts) != 1 || !strings.Contains(conflicts[0], "b/second") || !strings.Contains(conflicts[0], "held by a/first") {
		t.Fatalf("frontends %v, conflicts %q; want a/first's only and b/second named", got, conflicts)
	}
	// Cluster with only a terminating endpoint here: the other node, whose kube-proxy
	// reaches ready endpoints, takes it all.
	if bs := got[0].Backends; len(bs) != 1 || bs[0].Addr.Addr() != n2.Addrs[0] {
		t.Errorf("backends %v, want only n2's NodePort", bs)
	}
	// With no other node, the terminating endpoint is all there is.
	got, _ = ProxyFrontends(d, nil)
	if bs := got[0].Backends; len(bs) != 1 || bs[0].Addr != gone {
		t.Errorf("alone: backends %v, want the terminating endpoint", bs)
	}
}
