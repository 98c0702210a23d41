package inspect

import (
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

// BenchmarkExplain is `berthctl explain` for one dual-stack BGP Service at a site of 50
// nodes, each reporting 10,000 Services over BGP to two peers per family: every node's
// decision, the routes and sessions, and the what-if of each of the 50 announcing nodes
// failing.
func BenchmarkExplain(b *testing.B) {
	const nodes, services = 50, 10_000
	svc := lb("ns", "svc-00000", []string{"198.19.0.0", "2001:db8:113::"}, corev1.LoadBalancerIPModeVIP)
	svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	svc.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
	in := ExplainInput{
		Service: &svc,
		Resources: config.Resources{
			Pools: []v1alpha1.IPPool{
				{ObjectMeta: metav1.ObjectMeta{Name: "bgp"}, Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.19.0.0/16", "2001:db8:113::/64"}}},
				{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.18.0.0/16"}}},
			},
			BGPAdvertisements: []v1alpha1.BGPAdvertisement{{ObjectMeta: metav1.ObjectMeta{Name: "bgp"},
				Spec: v1alpha1.BGPAdvertisementSpec{AdvertisementTarget: v1alpha1.AdvertisementTarget{IPPools: []v1alpha1.ObjectName{"bgp"}},
					Communities: []v1alpha1.Community{"65000:100"}}}},
			L2Advertisements: []v1alpha1.L2Advertisement{{ObjectMeta: metav1.ObjectMeta{Name: "lan"},
				Spec: v1alpha1.L2AdvertisementSpec{AdvertisementTarget: v1alpha1.AdvertisementTarget{IPPools: []v1alpha1.ObjectName{"lan"}}}}},
		},
		Classes: Classes{LoadBalancerClass: "berth.dev/lb", HandleDefaultClass: true},
	}
	var names []string
	for n := range nodes {
		names = append(names, fmt.Sprintf("node-%02d", n))
	}
	peers4, peers46 := []string{"tor-a", "tor-b"}, []string{"tor-a", "tor-a6", "tor-b", "tor-b6"}
	for i, p := range []string{"tor-a", "tor-b", "tor-a6", "tor-b6"} {
		addr := fmt.Sprintf("192.0.2.%d", i+1)
		if i >= 2 {
			addr = fmt.Sprintf("2001:db8::%d", i+1)
		}
		peer := v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: p}, Spec: v1alpha1.BGPPeerSpec{MyASN: 64512, PeerASN: 64513, PeerAddress: addr}}
		for _, n := range names {
			peer.Status.Nodes = append(peer.Status.Nodes, v1alpha1.PeerNodeStatus{Node: n, State: v1alpha1.SessionState("Established")})
		}
		in.Resources.Peers = append(in.Resources.Peers, peer)
	}
	var entries []v1alpha1.AnnouncedService
	for i := range services {
		e := v1alpha1.AnnouncedService{Namespace: "ns", Name: fmt.Sprintf("svc-%05d", i),
			BGP: []string{netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}).String()}, Peers: peers4}
		if i%5 == 0 {
			e.BGP = append(e.BGP, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x01, 0x13, 14: byte(i >> 8), 15: byte(i)}).String())
			e.Peers = peers46
		}
		entries = append(entries, e)
	}
	var eps []discoveryv1.Endpoint
	for _, n := range names[:3] {
		eps = append(eps, discoveryv1.Endpoint{NodeName: ptr.To(n), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true)}})
	}
	in.Slices = []discoveryv1.EndpointSlice{{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "svc-00000-1"}, Endpoints: eps}}
	for i, n := range names {
		in.Nodes = append(in.Nodes, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"zone": string(rune('a' + i%3))}}})
		in.Announcements = append(in.Announcements, v1alpha1.NodeAnnouncement{ObjectMeta: metav1.ObjectMeta{Name: n},
			Status: v1alpha1.NodeAnnouncementStatus{DecisionVersion: 1, Members: names, L2Interfaces: []string{"eth1"},
				BGP: int32(len(entries)), Services: entries}})
	}
	e := Explain(in)
	if len(e.IPs) != 2 || len(e.IPs[0].IfFails) != nodes || len(e.IPs[0].Mismatches) > 0 {
		b.Fatalf("explanation of %d IPs, %d what-ifs, mismatches %v; want 2 IPs announced by all %d nodes as reported",
			len(e.IPs), len(e.IPs[0].IfFails), e.IPs[0].Mismatches, nodes)
	}
	b.ReportAllocs()
	for b.Loop() {
		Explain(in)
	}
}
