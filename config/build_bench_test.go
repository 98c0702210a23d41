package config_test

import (
	"fmt"
	"testing"

	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

// benchResources is a big site's configuration, all of it valid: n dual-stack pools (every
// third with a serviceSelector, every fifth labelled for a pool selector), n peers in
// racks of four (nodeSelectors, half of them with a password and graceful restart), and
// n BGP and n/2 L2 advertisements naming pools and peers, with communities, large
// communities, localPref and aggregation lengths.
func benchResources(n int) config.Resources {
	var res config.Resources
	for i := range n {
		p := ipPool(fmt.Sprintf("pool-%03d", i), i,
			fmt.Sprintf("10.%d.%d.0/24", 64+i/256, i%256), fmt.Sprintf("2001:db8:%x::/112", i))
		if i%3 == 0 {
			p.Spec.ServiceSelector = matchLabels("team", fmt.Sprintf("t%d", i%7))
		}
		if i%5 == 0 {
			p.Labels = map[string]string{"bgp": "on"}
		}
		res.Pools = append(res.Pools, p)

		peer := bgpPeer(fmt.Sprintf("peer-%03d", i), i, fmt.Sprintf("192.0.%d.%d", 2+i/4/250, 1+i%4))
		// Peers sharing an address reach it from disjoint racks.
		peer.Spec.NodeSelector = matchLabels("rack", fmt.Sprintf("r%d", i/4))
		peer.Spec.HoldTime, peer.Spec.KeepaliveTime = dur(9e9), dur(3e9)
		if i%2 == 0 {
			peer.Spec.Password = &v1alpha1.SecretKeyRef{Name: "bgp", Key: fmt.Sprintf("peer-%d", i)}
			peer.Spec.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true, RestartTime: dur(60e9)}
		}
		res.Peers = append(res.Peers, peer)

		adv := bgpAdv(fmt.Sprintf("bgp-%03d", i), i, func(s *v1alpha1.BGPAdvertisementSpec) {
			s.IPPools = names(fmt.Sprintf("pool-%03d", i), fmt.Sprintf("pool-%03d", (i+1)%n))
			s.Peers = names(fmt.Sprintf("peer-%03d", i), fmt.Sprintf("peer-%03d", (i+7)%n))
			s.Communities = []v1alpha1.Community{v1alpha1.Community(fmt.Sprintf("65000:%d", i)), "no-export"}
			s.LargeCommunities = []v1alpha1.LargeCommunity{v1alpha1.LargeCommunity(fmt.Sprintf("4200000000:%d:1", i))}
			s.LocalPref = ptr.To[int64](100)
			s.AggregationLength, s.AggregationLengthV6 = ptr.To[int32](32), ptr.To[int32](128)
			if i%5 == 0 {
				s.IPPools, s.IPPoolSelector = nil, matchLabels("bgp", "on")
			}
		})
		res.BGPAdvertisements = append(res.BGPAdvertisements, adv)
		if i%2 == 0 {
			res.L2Advertisements = append(res.L2Advertisements, l2Adv(fmt.Sprintf("l2-%03d", i), i, func(s *v1alpha1.L2AdvertisementSpec) {
				s.IPPools = names(fmt.Sprintf("pool-%03d", i))
				s.Interfaces = []v1alpha1.InterfaceName{"eth1", "bond0"}
				s.NodeSelector = matchIn("zone", "a", "b")
			}))
		}
	}
	return res
}

// BenchmarkBuild validates and resolves the whole configuration, as berth-controller and
// every speaker do on each change of an IPPool, BGPPeer or advertisement.
func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{50} {
		b.Run(fmt.Sprintf("pools=%d/peers=%d/ads=%d", n, n, n+n/2), func(b *testing.B) {
			res := benchResources(n)
			snap, problems := config.Build(res)
			if len(problems) > 0 || len(snap.Pools) != n || len(snap.Peers) != n || len(snap.BGPAdvertisements) != n {
				b.Fatalf("Build: %d pools, %d peers, %d BGP advertisements, problems %v; want all %d accepted",
					len(snap.Pools), len(snap.Peers), len(snap.BGPAdvertisements), problems, n)
			}
			b.ReportAllocs()
			for b.Loop() {
				config.Build(res)
			}
		})
	}
}
