package speaker

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

// site is the cluster the table rows edit: three nodes (n3 in zone b), an L2 pool answered
// on eth1, a BGP pool sent to every peer (tor-b only talks to zone b), and a quiet pool
// no advertisement covers.
func site() Input {
	snap := &config.Snapshot{
		Pools: []*config.Pool{
			pool("bgp", "203.0.113.0/24", "2001:db8:113::/64"),
			pool("l2", "198.18.2.192/26", "2001:db8:18:2::1:0/112"),
			pool("quiet", "198.51.100.0/24"),
		},
		Peers: []*config.Peer{peer("tor-a", ""), peer("tor-b", "zone=b")},
		BGPAdvertisements: []*config.BGPAdvertisement{
			{Name: "all", Target: target([]string{"bgp"}, "", ""), AllPeers: true},
		},
		L2Advertisements: []*config.L2Advertisement{
			{Name: "lan", Target: target([]string{"l2"}, "", ""), Interfaces: []string{"eth1"}},
		},
	}
	return Input{
		Config: snap,
		Nodes: []Node{
			{Name: "n1", Labels: labels.Set{"zone": "a"}},
			{Name: "n2", Labels: labels.Set{"zone": "a"}},
			{Name: "n3", Labels: labels.Set{"zone": "b"}},
		},
		Members: []Member{
			{Name: "n1", L2Interfaces: []string{"eth1"}, DecisionVersion: 1},
			{Name: "n2", L2Interfaces: []string{"eth0", "eth1"}, DecisionVersion: 1},
			{Name: "n3", L2Interfaces: []string{"eth1"}, DecisionVersion: 1},
		},
		Self: "n1",
	}
}

func svc(name string, policy TrafficPolicy, ips []Ingress, eps ...Endpoint) Service {
	return Service{Namespace: "default", Name: name, Labels: labels.Set{"app": name},
		TrafficPolicy: policy, Ingress: ips, Endpoints: eps}
}

const (
	cluster = TrafficPolicyCluster
	local   = TrafficPolicyLocal
	bgpIP   = "203.0.113.10"
	l2IP    = "198.18.2.200"
	l2IP6   = "2001:db8:18:2::1:1"
)

func TestInMinority(t *testing.T) {
	nodes := func(names ...string) []Node {
		var out []Node
		for _, n := range names {
			out = append(out, Node{Name: n})
		}
		return out
	}
	members := func(names ...string) []Member {
		var out []Member
		for _, n := range names {
			out = append(out, Member{Name: n})
		}
		return out
	}
	five := nodes("a", "b", "c", "d", "e")
	tests := []struct {
		name     string
		nodes    []Node
		members  []Member
		departed []string
		suspects []string
		want     bool
	}{
		{"all live", five, members("a", "b", "c", "d", "e"), nil, nil, false},
		{"3 of 5 live", five, members("a", "b", "c"), []string{"d", "e"}, nil, false},
		{"2 of 5 live", five, members("a", "b"), []string{"c", "d", "e"}, nil, true},
		{"2 of 4 live, with the lowest name: this half goes on", five[:4], members("a", "b"), []string{"c", "d"}, nil, false},
		{"2 of 4 live, without the lowest name: this half stops", five[:4], members("c", "d"), []string{"a", "b"}, nil, true},
		{"1 of 3", five[:3], members("a"), []string{"b", "c"}, nil, true},
		{"1 of 2: too few voters to tell", five[:2], members("a"), []string{"b"}, nil, false},
		{"forgotten departures do not vote", five, members("a"), nil, nil, false},
		{"departed nodes no longer known do not vote", five[:1], members("a"), []string{"b", "c"}, nil, false},
		{"excluded and NotReady nodes do not vote", []Node{{Name: "a"}, {Name: "b"}, {Name: "c", Excluded: true}, {Name: "d", NotReady: true}, {Name: "e"}},
			members("a", "b"), []string{"c", "d", "e"}, nil, false},
		{"suspects vote but are not live", five[:3], members("a", "b", "c"), nil, []string{"b", "c"}, true},
		{"one suspect of three leaves a majority", five[:3], members("a", "b", "c"), nil, []string{"c"}, false},
	}
	for _, tc := range tests {
		if got := inMinority(tc.nodes, tc.members, tc.departed, tc.suspects); got != tc.want {
			t.Errorf("%s: inMinority = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The owners rows name for l2IP and l2IP6 are pinned by version 1 of the hash.
func TestDecide(t *testing.T) {
	all := []string{"all:tor-a"}
	eth1 := []string{"eth1"}
	// bgpOnly and l2Only fill in the other protocol's reason for an IP of one pool.
	bgpOnly := func(ip string, r Reason, routes ...string) summary {
		return summary{IP: ip, Pool: "bgp", BGP: r, Routes: routes, L2: NoAdvertisement}
	}
	l2Only := func(ip string, r Reason, owner, next string, ifaces ...string) summary {
		return summary{IP: ip, Pool: "l2", BGP: NoAdvertisement, L2: r, Owner: owner, Next: next, Interface: ifaces}
	}
	tests := []struct {
		name string
		edit func(*Input)
		svcs []Service
		want []summary
	}{
		// BGP and externalTrafficPolicy.
		{name: "BGP Cluster announces from every node",
			svcs: []Service{svc("web", cluster, ingress(bgpIP), ep("n2"))},
			want: []summary{bgpOnly(bgpIP, Announced, all...)}},
		{name: "BGP peer nodeSelector adds tor-b on zone b",
			edit: func(in *Input) { in.Self = "n3" },
			svcs: []Service{svc("web", cluster, ingress(bgpIP), ep("n2"))},
			want: []summary{bgpOnly(bgpIP, Announced, "all:tor-a,tor-b")}},
		{name: "BGP Local with a local endpoint",
			svcs: []Service{svc("web", local, ingress(bgpIP), ep("n1"), ep("n2"))},
			want: []summary{bgpOnly(bgpIP, Announced, all...)}},
		{name: "BGP Local without a local endpoint",
			svcs: []Service{svc("web", local, ingress(bgpIP), ep("n2"))},
			want: []summary{bgpOnly(bgpIP, NoLocalEndpoints)}},
		{name: "no endpoints",
			svcs: []Service{svc("web", cluster, ingress(bgpIP, l2IP))},
			want: []summary{bgpOnly(bgpIP, NoEndpoints), l2Only(l2IP, NoEndpoints, "", "")}},
		{name: "not ready and not terminating counts as none",
			svcs: []Service{svc("web", cluster, ingress(bgpIP), Endpoint{Node: "n1"}, Endpoint{Node: "n2", Terminating: true})},
			want: []summary{bgpOnly(bgpIP, NoEndpoints)}},

		// Terminating endpoints: they count only when no endpoint is ready.
		{name: "only terminating endpoints keep Cluster announced",
			svcs: []Service{svc("web", cluster, ingress(bgpIP), terminating("n2"))},
			want: []summary{bgpOnly(bgpIP, Announced, all...)}},
		{name: "only terminating endpoints keep their node announced under Local",
			edit: func(in *Input) { in.Self = "n2" },
			svcs: []Service{svc("web", local, ingress(bgpIP, l2IP), terminating("n2"))},
			want: []summary{bgpOnly(bgpIP, Announced, all...), l2Only(l2IP, Elected, "n2", "", eth1...)}},
		{name: "terminating endpoint withdraws while another node has a ready one",
			svcs: []Service{svc("web", local, ingress(bgpIP, l2IP), terminating("n1"), ep("n3"))},
			want: []summary{bgpOnly(bgpIP, NoLocalEndpoints), l2Only(l2IP, NoLocalEndpoints, "n3", "")}},

		// Endpoints without nodeName count for the Service but for no node.
		{name: "endpoint without nodeName keeps Cluster announced",
			svcs: []Service{svc("web", cluster, ingress(bgpIP, l2IP), ep(""))},
			want: []summary{bgpOnly(bgpIP, Announced, all...), l2Only(l2IP, NotElected, "n3", "n2")}},
		{name: "endpoint without nodeName gives Local no node",
			svcs: []Service{svc("web", local, ingress(bgpIP, l2IP), ep(""))},
			want: []summary{bgpOnly(bgpIP, NoLocalEndpoints), l2Only(l2IP, NoLocalEndpoints, "", "")}},
		{name: "endpoint on an unknown node counts for no node",
			svcs: []Service{svc("web", local, ingress(l2IP), ep("gone"), ep("n1"))},
			want: []summary{l2Only(l2IP, Elected, "n1", "", eth1...)}},

		// Selectors: pool, Service, node.
		{name: "IP of a pool no advertisement covers",
			svcs: []Service{svc("web", cluster, ingress("198.51.100.7"), ep("n1"))},
			want: []summary{{IP: "198.51.100.7", Pool: "quiet", BGP: NoAdvertisement, L2: NoAdvertisement}}},
		{name: "IP of no pool",
			svcs: []Service{svc("web", cluster, ingress("192.0.2.1"), ep("n1"))},
			want: []summary{{IP: "192.0.2.1", BGP: NoPool, L2: NoPool}}},
		{name: "named pool that is not accepted",
			svcs: []Service{svc("web", cluster, []Ingress{{IP: netip.MustParseAddr(bgpIP), Pool: "deleted"}}, ep("n1"))},
			want: []summary{{IP: bgpIP, BGP: NoPool, L2: NoPool}}},
		{name: "named pool wins over the ranges",
			svcs: []Service{svc("web", cluster, []Ingress{{IP: netip.MustParseAddr("198.51.100.7"), Pool: "bgp"}}, ep("n1"))},
			want: []summary{bgpOnly("198.51.100.7", Announced, all...)}},
		{name: "service selector leaves the Service out",
			edit: func(in *Input) {
				in.Config.BGPAdvertisements[0].ServiceSelector = sel("app=db")
				in.Config.L2Advertisements[0].ServiceSelector = sel("app in (db, cache)")
			},
			svcs: []Service{svc("web", cluster, ingress(bgpIP, l2IP), ep("n1"))},
			want: []summary{bgpOnly(bgpIP, ServiceNotSelected), l2Only(l2IP, ServiceNotSelected, "", "")}},
		{name: "service selector takes the Service in",
			edit: func(in *Input) { in.Config.BGPAdvertisements[0].ServiceSelector = sel("app=web") },
			svcs: []Service{svc("web", cluster, ingress(bgpIP), ep("n1"))},
			want: []summary{bgpOnly(bgpIP, Announced, all...)}},
		{name: "node selector leaves this node out",
			edit: func(in *Input) {
				in.Config.BGPAdvertisements[0].NodeSelector = sel("zone=b")
				in.Config.L2Advertisements[0].NodeSelector = sel("zone=b")
			},
			svcs: []Service{svc("web", cluster, ingress(bgpIP, l2IP), ep("n1"))},
			want: []summary{bgpOnly(bgpIP, NodeNotSelected), l2Only(l2IP, NodeNotSelected, "n3", "")}},
		{name: "no peer selects this node",
			edit: func(in *Input) {
				in.Config.BGPAdvertisements[0].AllPeers, in.Config.BGPAdvertisements[0].Peers = false, []string{"tor-b"}
			},
			svcs: []Service{svc("web", cluster, ingress(bgpIP), ep("n1"))},
			want: []summary{bgpOnly(bgpIP, NoPeers)}},
		{name: "two advertisements both apply",
			edit: func(in *Input) {
				in.Config.BGPAdvertisements = append(in.Config.BGPAdvertisements, &config.BGPAdvertisement{
					Name: "web-community", Target: target([]string{"bgp"}, "app=web", ""), Peers: []string{"tor-a", "missing"}})
			},
			svcs: []Service{svc("web", cluster, ingress(bgpIP), ep("n1"))},
			want: []summary{bgpOnly(bgpIP, Announced, "all:tor-a", "web-community:tor-a")}},

		// This node's own state.
		{name: "excluded node",
			edit: func(in *Input) { in.Nodes[0].Excluded = true },
			svcs: []Service{svc("web", cluster, ingress(bgpIP, l2IP), ep("n1"))},
			want: []summary{bgpOnly(bgpIP, NodeExcluded), l2Only(l2IP, NodeExcluded, "n3", "n2")}},
		{name: "excluded owner hands over to next",
			edit: func(in *Input) { in.Nodes[2].Excluded = true; in.Self = "n2" },
			svcs: []Service{svc("web", cluster, ingress(l2IP), ep("n1"))},
			want: []summary{l2Only(l2IP, Elected, "n2", "n1", eth1...)}},
		{name: "node not live",
			edit: func(in *Input) { in.Members = in.Members[1:] },
			svcs: []Service{svc("web", cluster, ingress(bgpIP, l2IP), ep("n1"))},
			want: []summary{bgpOnly(bgpIP, NotLive), l2Only(l2IP, NotLive, "n3", "n2")}},
		{name: "no nodes at all",
			edit: func(in *Input) { in.Nodes = nil },
			svcs: []Service{svc("web", cluster, ingress(bgpIP, l2IP), ep("n1"))},
			want: []summary{bgpOnly(bgpIP, NodeUnknown), l2Only(l2IP, NodeUnknown, "", "")}},
		{name: "node unknown",
			edit: func(in *Input) { in.Self = "n9" },
			svcs: []Service{svc("web", cluster, ingress(bgpIP, l2IP), ep("n1"))},
			want: []summary{bgpOnly(bgpIP, NodeUnknown), l2Only(l2IP, NodeUnknown, "n3", "n2")}},
		{name: "L2 interface down",
			edit: func(in *Input) { in.Members[2].L2Interfaces = nil; in.Self = "n3" },
			svcs: []Service{svc("web", cluster, ingress(l2IP), ep("n1"))},
			want: []summary{l2Only(l2IP, InterfaceDown, "n2", "n1")}},
		{name: "L2 interface up but not allowed",
			edit: func(in *Input) { in.Members[2].L2Interfaces = []string{"eth0"}; in.Self = "n3" },
			svcs: []Service{svc("web", cluster, ingress(l2IP), ep("n1"))},
			want: []summary{l2Only(l2IP, InterfaceDown, "n2", "n1")}},
		{name: "L2 interface pattern",
			edit: func(in *Input) {
				in.Config.L2Advertisements[0].Interfaces = []string{"eth*"}
				in.Self = "n2"
				in.Members[2].L2Interfaces = []string{"bond0"}
			},
			svcs: []Service{svc("web", cluster, ingress(l2IP), ep("n1"))},
			want: []summary{l2Only(l2IP, Elected, "n2", "n1", "eth0", "eth1")}},

		// L2 election.
		{name: "L2 Cluster elected",
			edit: func(in *Input) { in.Self = "n3" },
			svcs: []Service{svc("web", cluster, ingress(l2IP), ep("n1"))},
			want: []summary{l2Only(l2IP, Elected, "n3", "n2", eth1...)}},
		{name: "L2 Cluster not elected",
			svcs: []Service{svc("web", cluster, ingress(l2IP), ep("n1"))},
			want: []summary{l2Only(l2IP, NotElected, "n3", "n2")}},
		{name: "L2 Local elects among nodes with endpoints",
			svcs: []Service{svc("web", local, ingress(l2IP), ep("n1"), ep("n2"))},
			want: []summary{l2Only(l2IP, NotElected, "n2", "n1")}},
		{name: "L2 Local without a local endpoint",
			svcs: []Service{svc("web", local, ingress(l2IP), ep("n2"))},
			want: []summary{l2Only(l2IP, NoLocalEndpoints, "n2", "")}},
		{name: "shared IP has one owner",
			edit: func(in *Input) { in.Self = "n3" },
			svcs: []Service{
				svc("web", cluster, ingress(l2IP), ep("n1")),
				svc("dns", cluster, ingress(l2IP), ep("n2")),
			},
			want: []summary{l2Only(l2IP, Elected, "n3", "n2", eth1...), l2Only(l2IP, Elected, "n3", "n2", eth1...)}},
		{name: "dual-stack IPs are decided apart",
			svcs: []Service{svc("web", cluster, ingress(l2IP, l2IP6), ep("n1"))},
			want: []summary{l2Only(l2IP, NotElected, "n3", "n2"), l2Only(l2IP6, Elected, "n1", "n2", eth1...)}},
		{name: "dual-stack BGP and L2",
			edit: func(in *Input) { in.Self = "n3" },
			svcs: []Service{svc("web", local, ingress("2001:db8:113::7", l2IP6), ep("n3"))},
			want: []summary{bgpOnly("2001:db8:113::7", Announced, "all:tor-a,tor-b"), l2Only(l2IP6, Elected, "n3", "", eth1...)}},
		{name: "no advertisements at all",
			edit: func(in *Input) { in.Config.BGPAdvertisements, in.Config.L2Advertisements = nil, nil },
			svcs: []Service{svc("web", cluster, ingress(bgpIP, l2IP), ep("n1"))},
			want: []summary{
				{IP: bgpIP, Pool: "bgp", BGP: NoAdvertisement, L2: NoAdvertisement},
				{IP: l2IP, Pool: "l2", BGP: NoAdvertisement, L2: NoAdvertisement},
			}},
		{name: "cut off from the others: a minority answers for nothing",
			edit: func(in *Input) {
				in.Self, in.Members, in.Departed = "n3", in.Members[2:], []string{"n1", "n2"}
			},
			svcs: []Service{svc("web", cluster, ingress(l2IP), ep("n1"))},
			want: []summary{{IP: l2IP, Pool: "l2", BGP: NoAdvertisement, L2: Minority, Owner: "n3"}}},
		{name: "the majority takes the cut-off node's IP",
			edit: func(in *Input) {
				in.Members, in.Departed = in.Members[:2], []string{"n3"}
			},
			svcs: []Service{svc("web", cluster, ingress(l2IP), ep("n1"))},
			want: []summary{{IP: l2IP, Pool: "l2", BGP: NoAdvertisement, L2: NotElected, Owner: "n2", Next: "n1"}}},
		{name: "a NotReady node does not vote: two voters cannot tell, and answer",
			edit: func(in *Input) {
				in.Nodes[1].NotReady = true
				in.Self, in.Members, in.Departed = "n3", in.Members[2:], []string{"n1", "n2"}
			},
			svcs: []Service{svc("web", cluster, ingress(l2IP), ep("n1"))},
			want: []summary{{IP: l2IP, Pool: "l2", BGP: NoAdvertisement, L2: Elected, Owner: "n3", Interface: []string{"eth1"}}}},
		{name: "both protocols on one pool",
			edit: func(in *Input) {
				in.Config.L2Advertisements = append(in.Config.L2Advertisements, &config.L2Advertisement{
					Name: "lan-bgp", Target: target([]string{"bgp"}, "", "")})
			},
			svcs: []Service{svc("web", cluster, ingress(bgpIP), ep("n1"))},
			want: []summary{{IP: bgpIP, Pool: "bgp", BGP: Announced, Routes: all, L2: NotElected, Owner: "n3", Next: "n2"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := site()
			if tc.edit != nil {
				tc.edit(&in)
			}
			c := NewCluster(in)
			var got []summary
			for _, d := range c.Decide(tc.svcs) {
				got = append(got, summarise(t, d.IPs)...)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Decide() (-want +got):\n%s", d)
			}
		})
	}
}

func TestDecideServiceWithoutIngress(t *testing.T) {
	c := NewCluster(site())
	if got := c.DecideService(&Service{Name: "pending", Endpoints: []Endpoint{ep("n1")}}); got != nil {
		t.Errorf("DecideService() = %v, want nil", got)
	}
}

func TestNilConfig(t *testing.T) {
	in := site()
	in.Config = nil
	s := svc("web", cluster, ingress(bgpIP), ep("n1"))
	got := summarise(t, NewCluster(in).DecideService(&s))
	want := []summary{{IP: bgpIP, BGP: NoPool, L2: NoPool}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("DecideService() (-want +got):\n%s", d)
	}
}

func TestVersion(t *testing.T) {
	tests := []struct {
		name     string
		versions []uint32
		want     uint32
	}{
		{"no members", nil, 1},
		{"unset counts as 1", []uint32{0, 1}, 1},
		{"newer members fall back to what this speaker knows", []uint32{2, 3}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := site()
			in.Members = nil
			for i, v := range tc.versions {
				in.Members = append(in.Members, Member{Name: string(rune('a' + i)), DecisionVersion: v})
			}
			if got := NewCluster(in).Version(); got != tc.want {
				t.Errorf("Version() = %d, want %d", got, tc.want)
			}
		})
	}
}

// A rehearsal build (the next release, rehearsalVersion) publishes version 2 and uses it
// only when every member has it; its owners differ from version 1's, so that a speaker
// electing with it alone would disagree with the others.
func TestRehearsalVersion(t *testing.T) {
	defer func(v string) { rehearsalVersion = v }(rehearsalVersion)
	rehearsalVersion = "2"
	if got := NewestVersion(); got != 2 {
		t.Fatalf("NewestVersion() = %d in a rehearsal build, want 2", got)
	}
	for _, tc := range []struct {
		versions []uint32
		want     uint32
	}{{[]uint32{2, 2, 2}, 2}, {[]uint32{1, 2, 2}, 1}, {[]uint32{0, 2}, 1}} {
		in := site()
		in.Members = nil
		for i, v := range tc.versions {
			in.Members = append(in.Members, Member{Name: string(rune('a' + i)), DecisionVersion: v})
		}
		if got := NewCluster(in).Version(); got != tc.want {
			t.Errorf("members of versions %v: Version() = %d, want %d", tc.versions, got, tc.want)
		}
	}
	differ := 0
	for i := range 64 {
		ip := netip.AddrFrom4([4]byte{198, 18, 2, byte(192 + i)})
		o1, _ := Elect(1, ip, []string{"node1", "node2", "node3"})
		o2, _ := Elect(2, ip, []string{"node1", "node2", "node3"})
		if o1 != o2 {
			differ++
		}
	}
	if differ < 16 {
		t.Errorf("versions 1 and 2 elect differently for %d of 64 addresses, want about two thirds", differ)
	}
}

func TestReasonsAreUnique(t *testing.T) {
	seen := map[Reason]bool{}
	for _, r := range Reasons() {
		if seen[r] {
			t.Errorf("Reasons() repeats %q", r)
		}
		seen[r] = true
	}
}

// TestDecideProxy: an IP of a Proxy-mode pool says so, and only then does the decision
// carry the Service's traffic policy and local endpoints for the datapath.
func TestDecideProxy(t *testing.T) {
	in := site()
	local := []LocalEndpoint{{PortName: "http", Addr: netip.MustParseAddrPort("198.19.1.2:8080"), Ready: true}}
	s := svc("web", cluster, ingress(bgpIP), ep("n1"))
	s.Local = local
	vip := NewCluster(in).Decide([]Service{s})[0]
	if vip.IPs[0].Proxy || vip.Local != nil || vip.TrafficPolicy != "" {
		t.Errorf("VIP pool: %+v, want no Proxy and nothing riding along", vip)
	}
	for _, p := range in.Config.Pools {
		if p.Name == "bgp" {
			p.IPMode = v1alpha1.IPModeProxy
		}
	}
	proxy := NewCluster(in).Decide([]Service{s})[0]
	if !proxy.IPs[0].Proxy || !slices.Equal(proxy.Local, local) || proxy.TrafficPolicy != cluster {
		t.Errorf("Proxy pool: %+v, want Proxy with the local endpoints and policy", proxy)
	}
}
