package controller

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/berthlb/berth/config/v1alpha1"
)

// The scale of the Announced benchmarks: 10,000 BGP Services (externalTrafficPolicy
// Cluster), one in five dual-stack, announced by every one of 50 nodes to two peers per
// family, as in the BGP scale scenario.
const benchAnnouncedServices, benchAnnouncedNodes = 10_000, 50

// benchAnnouncement is one node's NodeAnnouncement at that scale: every Service's entry,
// in name order as speakers write them. changed gives service 0 another peer.
func benchAnnouncement(node string, members []string, changed bool) *v1alpha1.NodeAnnouncement {
	na := &v1alpha1.NodeAnnouncement{ObjectMeta: metav1.ObjectMeta{Name: node, ResourceVersion: "1"},
		Status: v1alpha1.NodeAnnouncementStatus{DecisionVersion: 1, Members: members}}
	peers4, peers46 := []string{"tor-a", "tor-b"}, []string{"tor-a", "tor-a6", "tor-b", "tor-b6"}
	for i := range benchAnnouncedServices {
		e := v1alpha1.AnnouncedService{Namespace: "ns", Name: fmt.Sprintf("svc-%05d", i),
			BGP: []string{netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}).String()}, Peers: peers4}
		if i%5 == 0 {
			e.BGP = append(e.BGP, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x01, 0x13, 14: byte(i >> 8), 15: byte(i)}).String())
			e.Peers = peers46
		}
		if i == 0 && changed {
			e.Peers = append(slices.Clone(e.Peers), "tor-c")
		}
		na.Status.Services = append(na.Status.Services, e)
	}
	na.Status.BGP = int32(benchAnnouncedServices * 6 / 5)
	return na
}

// BenchmarkNodeChanged is what berth-controller does with one node's NodeAnnouncement
// update, the index holding 50 nodes' 10,000 entries: change=entry, one entry changed
// (find it, update the index, queue that Service); change=members, the node's memberlist
// view lost one node (no liveness flips, but every node's entry of every Service is
// checked). It alternates between the two versions, so each op is one change.
func BenchmarkNodeChanged(b *testing.B) {
	var members []string
	for n := range benchAnnouncedNodes {
		members = append(members, fmt.Sprintf("node-%02d", n))
	}
	for _, tc := range []struct {
		name string
		next *v1alpha1.NodeAnnouncement
	}{
		{"change=entry", benchAnnouncement(members[0], members, true)},
		{"change=members", benchAnnouncement(members[0], members[:len(members)-1], false)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l := newAnnouncedLoop(func(*corev1.Service) bool { return true }, nil, nil, nil)
			b.Cleanup(l.queue.ShutDown)
			// The other nodes' reports, put in the index directly: through nodeChanged each
			// would scan the index (see change=members), seconds in all.
			for _, e := range benchAnnouncement("", nil, false).Status.Services {
				byNode := make(map[string]v1alpha1.AnnouncedService, benchAnnouncedNodes)
				for _, node := range members[1:] {
					byNode[node] = e
				}
				l.index[cache.ObjectName{Namespace: e.Namespace, Name: e.Name}] = byNode
			}
			for _, node := range members[1:] {
				l.members[node] = members
			}
			versions := [2]*v1alpha1.NodeAnnouncement{benchAnnouncement(members[0], members, false), tc.next}
			versions[1].ResourceVersion = "2"
			l.nodeChanged(nil, versions[0])
			if len(l.index) != benchAnnouncedServices || len(l.index[cache.ObjectName{Namespace: "ns", Name: "svc-00000"}]) != benchAnnouncedNodes || len(l.dead) > 0 {
				b.Fatalf("index holds %d Services, dead nodes %v; want %d Services with %d nodes each, none dead",
					len(l.index), l.dead, benchAnnouncedServices, benchAnnouncedNodes)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				l.nodeChanged(versions[i%2], versions[(i+1)%2])
				i++
			}
		})
	}
}

// BenchmarkSummarizeAnnounced is the pure part of writing one Service's Announced
// condition: its summary from the entries of the 50 nodes announcing its two addresses,
// and the L2 conflicts (none) added to it.
func BenchmarkSummarizeAnnounced(b *testing.B) {
	svc := announcedService{IPs: []netip.Addr{netip.MustParseAddr("198.19.0.0"), netip.MustParseAddr("2001:db8:113::")}}
	e := benchAnnouncement("n", nil, false).Status.Services[0]
	entries := map[string]v1alpha1.AnnouncedService{}
	for n := range benchAnnouncedNodes {
		entries[fmt.Sprintf("node-%02d", n)] = e
	}
	b.ReportAllocs()
	var sum announcedSummary
	for b.Loop() {
		sum = withConflicts(summarizeAnnounced(svc, entries, nil), svc.IPs, map[string][]v1alpha1.L2Conflict{})
	}
	if sum.Status != metav1.ConditionTrue {
		b.Fatalf("summary %+v, want Announced", sum)
	}
}
