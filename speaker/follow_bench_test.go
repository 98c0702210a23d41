package speaker

import (
	"net/netip"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/berthlb/berth/config/v1alpha1"
)

// benchDecisions are the first node's decisions at a site of 10,000 Services on 50 nodes
// (benchWorld), every Service with a TCP and a UDP port and NodePorts, every node with an
// InternalIP, and every tenth Service moved to a Proxy-mode pool (announced on L2) with a
// ready endpoint on this node for each port: what the speaker's followers work from on
// every change.
func benchDecisions(b *testing.B) (Decisions, []ProxyNode) {
	b.Helper()
	decisionsOnce.Do(func() { benchDecided, benchOthers = decideBenchSite() })
	return benchDecided, benchOthers
}

// The benchmarks share the decisions, which the functions measured only read: deciding
// them is most of the setup.
var (
	decisionsOnce sync.Once
	benchDecided  Decisions
	benchOthers   []ProxyNode
)

func decideBenchSite() (Decisions, []ProxyNode) {
	const nodes, services = 50, 10_000
	in, svcs := benchWorld(nodes, services)
	proxy := pool("proxy", "198.20.0.0/16")
	proxy.IPMode = v1alpha1.IPModeProxy
	in.Config.Pools = append(in.Config.Pools, proxy)
	lan := in.Config.L2Advertisements[0]
	lan.Pools = append(lan.Pools, "proxy")
	for _, a := range in.Config.BGPAdvertisements { // config.Build's defaults: a route per IP
		a.AggregationLength, a.AggregationLengthV6 = 32, 128
	}
	for i := range in.Nodes {
		in.Nodes[i].Addrs = []netip.Addr{netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)})}
	}
	for i := range svcs {
		s := &svcs[i]
		nodePort := uint16(30000 + 2*i%2768)
		s.Ports = []Port{{Name: "http", Protocol: "TCP", Port: 80, NodePort: nodePort}, {Name: "dns", Protocol: "UDP", Port: 53, NodePort: nodePort + 1}}
		if i%10 != 1 { // the Proxy Services are among benchWorld's single-stack L2 ones (i%5 == 1)
			continue
		}
		s.Ingress = []Ingress{{IP: netip.AddrFrom4([4]byte{198, 20, byte(i >> 8), byte(i)})}}
		pod := netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)})
		s.Local = []LocalEndpoint{{PortName: "http", Addr: netip.AddrPortFrom(pod, 8080), Ready: true}, {PortName: "dns", Addr: netip.AddrPortFrom(pod, 5353), Ready: true}}
	}
	c := NewCluster(in)
	d := Decisions{Node: in.Self, Synced: true, DecisionVersion: c.Version(), Members: in.Members, Services: c.Decide(svcs)}
	return d, proxyNodes(in.Nodes, in.Self, func(string) bool { return true })
}

// BenchmarkFrontDoor is what the front-door follower computes on every change of the
// decisions before it calls Table.Apply: the closed doors and open ports of every
// Service, the Proxy-mode frontends with their backends, and the comparison with what was
// applied last (equal here, the worst case).
func BenchmarkFrontDoor(b *testing.B) {
	d, others := benchDecisions(b)
	last := FrontDoor(d)
	last.Proxy, _ = ProxyFrontends(d, others)
	b.ReportAllocs()
	for b.Loop() {
		want := FrontDoor(d)
		var conflicts []string
		want.Proxy, conflicts = ProxyFrontends(d, others)
		if len(conflicts) > 0 || !sameDesired(last, want) {
			b.Fatalf("conflicts %v, or the front door changed", conflicts)
		}
	}
	b.ReportMetric(float64(len(last.Open)), "open-ports")
	b.ReportMetric(float64(len(last.Proxy)), "proxy-frontends")
	backends := 0
	for _, f := range last.Proxy {
		backends += len(f.Backends)
	}
	b.ReportMetric(float64(backends), "backends")
}

// BenchmarkAnnouncementStatus is what the report loop computes on every change of the
// decisions: this node's NodeAnnouncement status, compared with the one written last
// (equal here: nothing to write, the common case).
func BenchmarkAnnouncementStatus(b *testing.B) {
	d, _ := benchDecisions(b)
	written := AnnouncementStatus(d)
	b.ReportAllocs()
	for b.Loop() {
		st := AnnouncementStatus(d)
		if !equality.Semantic.DeepEqual(written, st) {
			b.Fatal("status changed")
		}
	}
	b.ReportMetric(float64(len(written.Services)), "entries")
}

// BenchmarkExecutorInputs is what the BGP and L2 followers compute on every change of the
// decisions before handing them to the bgp Server (SetPaths) and the l2 Announcer (Set).
func BenchmarkExecutorInputs(b *testing.B) {
	d, _ := benchDecisions(b)
	var paths, assignments int
	b.ReportAllocs()
	for b.Loop() {
		paths, assignments = len(BGPPaths(d)), len(L2Assignments(d))
	}
	if paths == 0 || assignments == 0 {
		b.Fatalf("%d paths, %d L2 assignments; want both", paths, assignments)
	}
	b.ReportMetric(float64(paths), "bgp-paths")
	b.ReportMetric(float64(assignments), "l2-assignments")
}
