package speaker

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berthlb/berth/config"
)

// benchWorld is a big site: nodes in three zones, two BGP and two L2 advertisements, and
// Services of which 60% are L2, 40% BGP, a fifth dual-stack, a third Local, each with
// three endpoints.
func benchWorld(nodes, services int) (Input, []Service) {
	rng := rand.New(rand.NewPCG(1, 2))
	snap := &config.Snapshot{
		Pools: []*config.Pool{
			pool("bgp", "198.19.0.0/16", "2001:db8:113::/64"),
			pool("l2", "198.18.0.0/16", "2001:db8:18:2::/64"),
		},
		Peers: []*config.Peer{peer("tor-a", "zone in (a, b)"), peer("tor-c", "zone=c")},
		BGPAdvertisements: []*config.BGPAdvertisement{
			{Name: "all", Target: target([]string{"bgp"}, "", ""), AllPeers: true},
			{Name: "edge", Target: target([]string{"bgp"}, "tier=edge", ""), Peers: []string{"tor-a"}, Communities: []uint32{65000<<16 | 100}},
		},
		L2Advertisements: []*config.L2Advertisement{
			{Name: "lan", Target: target([]string{"l2"}, "", "zone in (a, b)"), Interfaces: []string{"eth1"}},
			{Name: "edge", Target: target([]string{"l2"}, "tier=edge", "zone=c"), Interfaces: []string{"eth*"}},
		},
	}
	in := Input{Config: snap}
	for i := range nodes {
		name := fmt.Sprintf("node-%04d", i)
		in.Nodes = append(in.Nodes, Node{Name: name, Labels: labels.Set{"zone": zones[i%3], "kubernetes.io/hostname": name}})
		in.Members = append(in.Members, Member{Name: name, L2Interfaces: []string{"eth0", "eth1"}, DecisionVersion: 1})
	}
	in.Self = in.Nodes[0].Name
	svcs := make([]Service, services)
	for i := range svcs {
		s := &svcs[i]
		s.Namespace, s.Name = "ns", fmt.Sprintf("svc-%d", i)
		s.Labels = labels.Set{"app": s.Name}
		if i%2 == 0 {
			s.Labels["tier"] = "edge"
		}
		if i%3 == 0 {
			s.TrafficPolicy = TrafficPolicyLocal
		}
		v4, v6 := [4]byte{198, 18, byte(i >> 8), byte(i)}, [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x18, 0, 2, 14: byte(i >> 8), 15: byte(i)}
		if i%5 >= 3 { // BGP
			v4[1], v6[5], v6[6], v6[7] = 19, 0x13, 0, 0
			v6[4] = 1
		}
		s.Ingress = []Ingress{{IP: netip.AddrFrom4(v4)}}
		if i%5 == 0 {
			s.Ingress = append(s.Ingress, Ingress{IP: netip.AddrFrom16(v6), Pool: "l2"})
		}
		for range 3 {
			s.Endpoints = append(s.Endpoints, Endpoint{Node: in.Nodes[rng.IntN(nodes)].Name, Ready: true, Serving: true})
		}
	}
	return in, svcs
}

// The full decision, as after a config, node or membership change: precompute the
// cluster, then decide every Service. Target: 10,000 Services × 100 nodes ≤ 100 ms.
func BenchmarkDecide(b *testing.B) {
	for _, size := range []struct{ services, nodes int }{{100, 100}, {1000, 100}, {10000, 100}, {10000, 1000}} {
		b.Run(fmt.Sprintf("services=%d/nodes=%d", size.services, size.nodes), func(b *testing.B) {
			in, svcs := benchWorld(size.nodes, size.services)
			b.ReportAllocs()
			for b.Loop() {
				NewCluster(in).Decide(svcs)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size.services), "ns/service")
		})
	}
}

// One Service re-decided after one of its endpoints changed: what the speaker's loop does
// per EndpointSlice event. Target ≤ 1 ms.
func BenchmarkDecideService(b *testing.B) {
	for _, policy := range []TrafficPolicy{TrafficPolicyCluster, TrafficPolicyLocal} {
		b.Run(fmt.Sprintf("policy=%s/nodes=100", policy), func(b *testing.B) {
			in, svcs := benchWorld(100, 10)
			c := NewCluster(in)
			s := svcs[0] // L2 and dual-stack
			s.TrafficPolicy = policy
			b.ReportAllocs()
			for b.Loop() {
				s.Endpoints[0].Ready = !s.Endpoints[0].Ready
				c.DecideService(&s)
			}
		})
	}
}

// What a node, member or config change costs before any Service is decided.
func BenchmarkNewCluster(b *testing.B) {
	for _, nodes := range []int{100, 1000} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			in, _ := benchWorld(nodes, 0)
			b.ReportAllocs()
			for b.Loop() {
				NewCluster(in)
			}
		})
	}
}

// One endpoint change as the speaker's State handles it at 10,000 Services × 100 nodes:
// read the Service, decide it, compare and store. Target ≤ 1 ms.
func BenchmarkStateEndpointChange(b *testing.B) {
	in, svcs := benchWorld(100, 10000)
	src := &mapSource{svcs: map[types.NamespacedName]Service{}}
	for _, s := range svcs {
		src.set(s)
	}
	st := NewState(in.Self, src, StateOptions{})
	st.SetConfig(in.Config)
	for _, n := range in.Nodes {
		st.SetNode(n)
	}
	st.SetMembers(in.Members)
	st.pass()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s := svcs[i%len(svcs)]
		// Move the first endpoint to another node, as a rescheduled Pod does.
		s.Endpoints = append([]Endpoint{{Node: in.Nodes[i%len(in.Nodes)].Name, Ready: true, Serving: true}}, s.Endpoints[1:]...)
		st.ServiceChanged(src.set(s))
		st.pass()
		st.Decisions() // the executors read after every change, so the next one copies the list
		i++
	}
}
