package controller

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/berthlb/berth/config/v1alpha1"
)

// Builders for entries: what one node says of the Service.
func l2Entry(ifaces []string, ips ...string) v1alpha1.AnnouncedService {
	return v1alpha1.AnnouncedService{Namespace: "ns", Name: "web", L2: ips, Interfaces: ifaces}
}

func bgpEntry(peers []string, ips ...string) v1alpha1.AnnouncedService {
	return v1alpha1.AnnouncedService{Namespace: "ns", Name: "web", BGP: ips, Peers: peers}
}

func both(a, b v1alpha1.AnnouncedService) v1alpha1.AnnouncedService {
	a.BGP, a.Peers = b.BGP, b.Peers
	return a
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

func owners(kv ...string) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for i := 0; i < len(kv); i += 2 {
		out[netip.MustParseAddr(kv[i])] = kv[i+1]
	}
	return out
}

func TestSummarizeAnnounced(t *testing.T) {
	eth1 := []string{"eth1"}
	for _, tc := range []struct {
		name    string
		svc     announcedService
		entries map[string]v1alpha1.AnnouncedService
		prev    map[netip.Addr]string
		want    announcedSummary
	}{
		{
			name: "no addresses: no condition",
			svc:  announcedService{},
			entries: map[string]v1alpha1.AnnouncedService{
				"node-a": l2Entry(eth1, "198.18.2.193"),
			},
			want: announcedSummary{},
		},
		{
			name: "one L2 owner",
			svc:  announcedService{IPs: addrs("198.18.2.193")},
			entries: map[string]v1alpha1.AnnouncedService{
				"node-b": l2Entry(eth1, "198.18.2.193"),
			},
			want: announcedSummary{Status: metav1.ConditionTrue, Reason: ReasonAnnounced,
				Message: "L2 198.18.2.193 from node-b (eth1)", L2Owner: owners("198.18.2.193", "node-b")},
		},
		{
			name: "L2 and BGP from several nodes, sorted",
			svc:  announcedService{IPs: addrs("203.0.113.5", "198.18.2.193")},
			entries: map[string]v1alpha1.AnnouncedService{
				"node-c": bgpEntry([]string{"frr"}, "203.0.113.5"),
				"node-b": l2Entry(eth1, "198.18.2.193"),
				"node-a": bgpEntry([]string{"frr", "bird"}, "203.0.113.5"),
			},
			want: announcedSummary{Status: metav1.ConditionTrue, Reason: ReasonAnnounced,
				Message: "L2 198.18.2.193 from node-b (eth1); BGP 203.0.113.5 from node-a, node-c to peers bird, frr",
				L2Owner: owners("198.18.2.193", "node-b")},
		},
		{
			name: "dual-stack L2 on one node shares a clause, IPv4 first",
			svc:  announcedService{IPs: addrs("2001:db8:18:2::1:5", "198.18.2.193")},
			entries: map[string]v1alpha1.AnnouncedService{
				"node-a": l2Entry(eth1, "2001:db8:18:2::1:5", "198.18.2.193"),
			},
			want: announcedSummary{Status: metav1.ConditionTrue, Reason: ReasonAnnounced,
				Message: "L2 198.18.2.193, 2001:db8:18:2::1:5 from node-a (eth1)",
				L2Owner: owners("198.18.2.193", "node-a", "2001:db8:18:2::1:5", "node-a")},
		},
		{
			name: "dual-stack L2 split over two nodes",
			svc:  announcedService{IPs: addrs("198.18.2.193", "2001:db8:18:2::1:5")},
			entries: map[string]v1alpha1.AnnouncedService{
				"node-b": l2Entry(eth1, "198.18.2.193"),
				"node-a": l2Entry([]string{"eth2"}, "2001:db8:18:2::1:5"),
			},
			want: announcedSummary{Status: metav1.ConditionTrue, Reason: ReasonAnnounced,
				Message: "L2 198.18.2.193 from node-b (eth1); L2 2001:db8:18:2::1:5 from node-a (eth2)",
				L2Owner: owners("198.18.2.193", "node-b", "2001:db8:18:2::1:5", "node-a")},
		},
		{
			name: "dual-stack BGP from every node, one node both protocols",
			svc:  announcedService{IPs: addrs("203.0.113.5", "2001:db8:113::5")},
			entries: map[string]v1alpha1.AnnouncedService{
				"node-a": both(l2Entry(eth1, "203.0.113.5"), bgpEntry([]string{"tor"}, "2001:db8:113::5", "203.0.113.5")),
				"node-b": bgpEntry([]string{"tor"}, "203.0.113.5", "2001:db8:113::5"),
			},
			want: announcedSummary{Status: metav1.ConditionTrue, Reason: ReasonAnnounced,
				Message: "L2 203.0.113.5 from node-a (eth1); BGP 203.0.113.5, 2001:db8:113::5 from node-a, node-b to peers tor",
				L2Owner: owners("203.0.113.5", "node-a")},
		},
		{
			name: "one family unannounced is named",
			svc:  announcedService{IPs: addrs("203.0.113.5", "2001:db8:113::5")},
			entries: map[string]v1alpha1.AnnouncedService{
				"node-a": bgpEntry(nil, "203.0.113.5"),
			},
			want: announcedSummary{Status: metav1.ConditionTrue, Reason: ReasonAnnounced,
				Message: "BGP 203.0.113.5 from node-a; no node announces 2001:db8:113::5", L2Owner: owners()},
		},
		{
			name: "stale entries for an old address do not count",
			svc:  announcedService{IPs: addrs("198.18.2.200")},
			entries: map[string]v1alpha1.AnnouncedService{
				"node-a": l2Entry(eth1, "198.18.2.193", "not-an-ip"),
			},
			want: announcedSummary{Status: metav1.ConditionFalse, Reason: ReasonNotAnnounced,
				Message: notAnnouncedMessage(addrs("198.18.2.200"), false), L2Owner: owners()},
		},
		{
			name: "nobody, eTP Local says so",
			svc:  announcedService{IPs: addrs("198.18.2.193"), Local: true},
			want: announcedSummary{Status: metav1.ConditionFalse, Reason: ReasonNotAnnounced,
				Message: "No node announces 198.18.2.193: check that an L2Advertisement or BGPAdvertisement selects its pool " +
					"and nodes where berth-speaker runs, and that those nodes have a ready endpoint (externalTrafficPolicy: Local); " +
					"kubectl get nodeannouncements -o yaml shows what each node announces",
				L2Owner: owners()},
		},
		{
			name: "handover under way keeps the previous owner",
			svc:  announcedService{IPs: addrs("198.18.2.193")},
			entries: map[string]v1alpha1.AnnouncedService{
				"node-a": l2Entry(eth1, "198.18.2.193"),
				"node-c": l2Entry(eth1, "198.18.2.193"),
			},
			prev: owners("198.18.2.193", "node-c"),
			want: announcedSummary{Status: metav1.ConditionTrue, Reason: ReasonAnnounced,
				Message: "L2 198.18.2.193 from node-a, node-c (eth1)", L2Owner: owners("198.18.2.193", "node-c")},
		},
		{
			name: "previous owner gone: the other node owns",
			svc:  announcedService{IPs: addrs("198.18.2.193")},
			entries: map[string]v1alpha1.AnnouncedService{
				"node-b": l2Entry(eth1, "198.18.2.193"),
			},
			prev: owners("198.18.2.193", "node-a"),
			want: announcedSummary{Status: metav1.ConditionTrue, Reason: ReasonAnnounced,
				Message: "L2 198.18.2.193 from node-b (eth1)", L2Owner: owners("198.18.2.193", "node-b")},
		},
		{
			name: "gap keeps the last owner, dropped addresses forget theirs",
			svc:  announcedService{IPs: addrs("198.18.2.193")},
			prev: owners("198.18.2.193", "node-a", "198.18.2.194", "node-b"),
			want: announcedSummary{Status: metav1.ConditionFalse, Reason: ReasonNotAnnounced,
				Message: notAnnouncedMessage(addrs("198.18.2.193"), false), L2Owner: owners("198.18.2.193", "node-a")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := summarizeAnnounced(tc.svc, tc.entries, tc.prev)
			if d := cmp.Diff(tc.want, got, cmpopts.EquateEmpty(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
				t.Errorf("summarizeAnnounced() (-want +got):\n%s", d)
			}
		})
	}
}

// TestSummarizeAnnouncedOrderFree checks that the order of nodes, addresses, interfaces
// and peers as written, and duplicates, never change the message.
func TestSummarizeAnnouncedOrderFree(t *testing.T) {
	svc := announcedService{IPs: addrs("2001:db8:113::5", "203.0.113.5", "198.18.2.193")}
	want := summarizeAnnounced(svc, map[string]v1alpha1.AnnouncedService{
		"node-a": both(l2Entry([]string{"eth1", "eth2"}, "198.18.2.193"), bgpEntry([]string{"bird", "frr"}, "203.0.113.5", "2001:db8:113::5")),
		"node-c": bgpEntry([]string{"frr"}, "203.0.113.5", "2001:db8:113::5"),
	}, nil)
	svc.IPs = addrs("198.18.2.193", "203.0.113.5", "2001:db8:113::5", "203.0.113.5")
	got := summarizeAnnounced(svc, map[string]v1alpha1.AnnouncedService{
		"node-c": bgpEntry([]string{"frr", "frr"}, "2001:db8:113::5", "203.0.113.5"),
		"node-a": both(l2Entry([]string{"eth2", "eth1"}, "198.18.2.193", "198.18.2.193"), bgpEntry([]string{"frr", "bird"}, "2001:db8:113::5", "203.0.113.5")),
	}, nil)
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("summarizeAnnounced() of reordered input (-first +reordered):\n%s", d)
	}
	if w := "L2 198.18.2.193 from node-a (eth1, eth2); BGP 203.0.113.5, 2001:db8:113::5 from node-a, node-c to peers bird, frr"; got.Message != w {
		t.Errorf("message %q, want %q", got.Message, w)
	}
}

func TestAnnouncedEvents(t *testing.T) {
	announced := func(msg string, kv ...string) announcedSummary {
		return announcedSummary{Status: metav1.ConditionTrue, Reason: ReasonAnnounced, Message: msg, L2Owner: owners(kv...)}
	}
	silent := func(kv ...string) announcedSummary {
		return announcedSummary{Status: metav1.ConditionFalse, Reason: ReasonNotAnnounced, Message: "nobody", L2Owner: owners(kv...)}
	}
	// fromCondition is the "before" after a restart: what the Service shows, owners unknown.
	fromCondition := func(s metav1.ConditionStatus) announcedSummary { return announcedSummary{Status: s} }
	for _, tc := range []struct {
		name     string
		old, cur announcedSummary
		want     []announcedEvent
	}{
		{name: "resync: nothing changed", old: announced("L2 a", "198.18.2.193", "node-a"), cur: announced("L2 a", "198.18.2.193", "node-a")},
		{name: "message changed, owner kept", old: announced("L2 a", "198.18.2.193", "node-a"), cur: announced("L2 a, b", "198.18.2.193", "node-a")},
		{
			name: "first announcer", old: announcedSummary{}, cur: announced("L2 198.18.2.193 from node-a (eth1)", "198.18.2.193", "node-a"),
			want: []announcedEvent{{corev1.EventTypeNormal, ReasonAnnounced, "L2 198.18.2.193 from node-a (eth1)"}},
		},
		{
			name: "first announcer after waiting", old: silent(), cur: announced("BGP x", "198.18.2.193", "node-a"),
			want: []announcedEvent{{corev1.EventTypeNormal, ReasonAnnounced, "BGP x"}},
		},
		{name: "new Service, nobody yet: no Warning", old: announcedSummary{}, cur: silent()},
		{name: "still nobody", old: silent(), cur: silent()},
		{
			name: "last announcer gone", old: announced("L2 a", "198.18.2.193", "node-a"), cur: silent("198.18.2.193", "node-a"),
			want: []announcedEvent{{corev1.EventTypeWarning, ReasonNotAnnounced, "nobody"}},
		},
		{
			name: "L2 handover, dual-stack, in address order",
			old:  announced("m", "2001:db8:18:2::1:5", "node-a", "198.18.2.193", "node-a"),
			cur:  announced("n", "2001:db8:18:2::1:5", "node-c", "198.18.2.193", "node-b"),
			want: []announcedEvent{
				{corev1.EventTypeNormal, EventL2OwnerChanged, "198.18.2.193: node-a → node-b"},
				{corev1.EventTypeNormal, EventL2OwnerChanged, "2001:db8:18:2::1:5: node-a → node-c"},
			},
		},
		{
			name: "handover through a gap",
			old:  silent("198.18.2.193", "node-a"),
			cur:  announced("L2 198.18.2.193 from node-b (eth1)", "198.18.2.193", "node-b"),
			want: []announcedEvent{
				{corev1.EventTypeNormal, ReasonAnnounced, "L2 198.18.2.193 from node-b (eth1)"},
				{corev1.EventTypeNormal, EventL2OwnerChanged, "198.18.2.193: node-a → node-b"},
			},
		},
		{name: "restart: True before, True now", old: fromCondition(metav1.ConditionTrue), cur: announced("m", "198.18.2.193", "node-a")},
		{name: "restart: False before, False now", old: fromCondition(metav1.ConditionFalse), cur: silent()},
		{name: "condition removed", old: announced("m", "198.18.2.193", "node-a"), cur: announcedSummary{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, announcedEvents(tc.old, tc.cur), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("announcedEvents() (-want +got):\n%s", d)
			}
		})
	}
}

func TestChangedEntries(t *testing.T) {
	e := func(name string, l2 ...string) v1alpha1.AnnouncedService {
		return v1alpha1.AnnouncedService{Namespace: "ns", Name: name, L2: l2}
	}
	key := func(name string) cache.ObjectName { return cache.ObjectName{Namespace: "ns", Name: name} }
	for _, tc := range []struct {
		name     string
		old, cur []v1alpha1.AnnouncedService
		want     []cache.ObjectName
	}{
		{name: "created", cur: []v1alpha1.AnnouncedService{e("b", "1.1.1.1"), e("a")}, want: []cache.ObjectName{key("a"), key("b")}},
		{name: "deleted", old: []v1alpha1.AnnouncedService{e("a", "1.1.1.1")}, want: []cache.ObjectName{key("a")}},
		{name: "unchanged", old: []v1alpha1.AnnouncedService{e("a", "1.1.1.1"), e("b")}, cur: []v1alpha1.AnnouncedService{e("b"), e("a", "1.1.1.1")}},
		{
			name: "one changed, one added, one removed, one kept",
			old:  []v1alpha1.AnnouncedService{e("keep", "1.1.1.1"), e("move", "1.1.1.2"), e("gone", "1.1.1.3")},
			cur:  []v1alpha1.AnnouncedService{e("keep", "1.1.1.1"), e("move"), e("new", "1.1.1.4")},
			want: []cache.ObjectName{key("gone"), key("move"), key("new")},
		},
		{
			name: "peers alone changed",
			old:  []v1alpha1.AnnouncedService{{Namespace: "ns", Name: "a", BGP: []string{"1.1.1.1"}, Peers: []string{"frr"}}},
			cur:  []v1alpha1.AnnouncedService{{Namespace: "ns", Name: "a", BGP: []string{"1.1.1.1"}, Peers: []string{"frr", "bird"}}},
			want: []cache.ObjectName{key("a")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, changedEntries(tc.old, tc.cur), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("changedEntries() (-want +got):\n%s", d)
			}
		})
	}
}

func TestWithConflicts(t *testing.T) {
	ip := netip.MustParseAddr("198.18.2.193")
	sum := announcedSummary{Status: metav1.ConditionTrue, Reason: ReasonAnnounced, Message: "L2 198.18.2.193 from node-a (eth1)"}
	conflicts := map[string][]v1alpha1.L2Conflict{
		"node-a": {{IP: "198.18.2.193", MAC: "02:99:00:00:00:01", Interface: "eth1"}, {IP: "198.18.2.250", MAC: "02:99:00:00:00:02", Interface: "eth1"}},
	}
	got := withConflicts(sum, []netip.Addr{ip}, conflicts)
	want := "L2 198.18.2.193 from node-a (eth1); L2 conflict: 198.18.2.193 also answered by 02:99:00:00:00:01 (seen by node-a on eth1)"
	if got.Message != want || got.Status != metav1.ConditionTrue {
		t.Errorf("withConflicts: %s %q, want True %q", got.Status, got.Message, want)
	}
	if got := withConflicts(sum, []netip.Addr{ip}, nil); got.Message != sum.Message {
		t.Errorf("without conflicts the message changed: %q", got.Message)
	}
}

func TestBacklogged(t *testing.T) {
	for _, tc := range []struct {
		queued, workers int
		want            bool
	}{{0, 32, false}, {32, 32, false}, {33, 32, true}, {5000, 32, true}} {
		if got := backlogged(tc.queued, tc.workers); got != tc.want {
			t.Errorf("backlogged(%d queued, %d workers) = %v, want %v", tc.queued, tc.workers, got, tc.want)
		}
	}
}
