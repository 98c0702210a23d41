// Package speaker is berth's node agent. The decide*.go files hold its decision core: pure
// functions over plain data (config snapshot, Services with their endpoints, nodes, live
// members, this node's name) that say, per Service IP, whether this node announces it over
// BGP and which node answers for it on L2, each with a Reason. Nothing here reads a
// lister, a clock or a socket, so every speaker given the same data decides the same.
package speaker

import (
	"cmp"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

// TrafficPolicy is a Service's externalTrafficPolicy. The values match corev1, so a caller
// converts with TrafficPolicy(svc.Spec.ExternalTrafficPolicy).
type TrafficPolicy string

// Traffic policies; the empty value means Cluster, the Kubernetes default.
const (
	TrafficPolicyCluster TrafficPolicy = "Cluster"
	TrafficPolicyLocal   TrafficPolicy = "Local"
)

// Node is what the decision needs to know about a Kubernetes Node.
type Node struct {
	Name   string
	Labels labels.Set
	// Excluded is true when the node carries node.kubernetes.io/exclude-from-external-load-balancers
	// or its NetworkUnavailable condition is true.
	Excluded bool
	// NotReady is true when the node's Ready condition is False or Unknown: its kubelet
	// stopped reporting, so the node is most likely down. It still may announce; it only
	// stops counting in the minority rule (inMinority).
	NotReady bool
	// Addrs are the node's InternalIPs; decisions ignore them, Proxy mode forwards to them.
	Addrs []netip.Addr
}

// Member is a live memberlist member with the metadata its speaker publishes.
type Member struct {
	// Name is the Kubernetes node name.
	Name string
	// L2Interfaces are the member's interfaces that are up and usable for L2 announcements.
	L2Interfaces []string
	// DecisionVersion is the newest decision version the member's speaker implements; 0 means
	// it did not say, which counts as version 1.
	DecisionVersion uint32
	// MACs are the hardware addresses of the member's L2 interfaces; decisions ignore them.
	MACs []string
}

// Endpoint is one endpoint of a Service, from its EndpointSlices.
type Endpoint struct {
	// Node is the endpoint's nodeName; empty when the slice does not say. Such an endpoint
	// counts for "the Service has endpoints" but for no node.
	Node                        string
	Ready, Serving, Terminating bool
}

// Ingress is one of a Service's load-balancer IPs.
type Ingress struct {
	IP netip.Addr
	// Pool is the pool the IP came from; empty means the decision finds the pool holding it.
	Pool string
}

// Port is a Service port. Decisions ignore ports; they ride along for the datapath.
type Port struct {
	Name     string
	Protocol string
	Port     uint16
	// NodePort is 0 when the Service has none (allocateLoadBalancerNodePorts: false).
	NodePort uint16
}

// LocalEndpoint is one address and port of a ready or serving endpoint on this node,
// for the Service port named PortName: where Proxy mode delivers locally.
type LocalEndpoint struct {
	PortName string
	Addr     netip.AddrPort
	// Ready is false for an endpoint that is serving but terminating: used only when no
	// endpoint is ready, as kube-proxy does.
	Ready bool
}

// Service is the view of a LoadBalancer Service the decision works on.
type Service struct {
	Namespace, Name string
	Labels          labels.Set
	Ingress         []Ingress
	TrafficPolicy   TrafficPolicy
	Ports           []Port
	Endpoints       []Endpoint
	// Local are the serving endpoints on this node with their addresses; decisions ignore
	// them, they ride along for Proxy mode, with SourceRanges (loadBalancerSourceRanges;
	// empty lets every client in).
	Local        []LocalEndpoint
	SourceRanges []netip.Prefix
}

// Input is everything a decision shares across Services.
type Input struct {
	Config *config.Snapshot
	// Nodes have unique names; their order does not matter.
	Nodes []Node
	// Members are memberlist's live members, unique names, any order.
	Members []Member
	// Departed are the nodes whose members left memberlist recently (dead or gone) and did
	// not come back: with the live members they are the voters of the minority rule.
	Departed []string
	// Suspects are live members memberlist suspects of having failed: voters, but not
	// counted live by the minority rule.
	Suspects []string
	// Unreachable are live members memberlist suspects of having failed that this node's
	// own probe did not reach either: the L2 election here passes them over, so that their
	// runner-up takes their IPs before memberlist declares them dead.
	Unreachable []string
	// Self is this node's name.
	Self string
}

// IPDecision is the decision for one Service IP, from this node's point of view.
type IPDecision struct {
	IP netip.Addr
	// Pool is the pool holding IP, empty when none does.
	Pool string
	// Proxy says the pool's ipMode is Proxy: berth's datapath delivers the IP.
	Proxy bool
	BGP   BGPDecision
	L2    L2Decision
}

// BGPDecision says whether this node announces an IP over BGP.
type BGPDecision struct {
	Announce bool
	Reason   Reason
	// Routes are the applicable advertisements with the peers this node sends each to; set
	// only when Announce is true.
	Routes []BGPRoute
}

// BGPRoute is one advertisement as this node carries it out.
type BGPRoute struct {
	// Advertisement is shared with the config snapshot and must not be modified.
	Advertisement *config.BGPAdvertisement
	// Peers are the names of the advertisement's peers that select this node, sorted.
	// Shared between decisions: do not modify.
	Peers []string
}

// L2Decision says which node answers ARP/NDP for an IP, and whether that is this node.
type L2Decision struct {
	Announce bool
	Reason   Reason
	// Owner is the elected node, empty when no node is eligible. Every speaker computes the
	// same Owner and Next from the same data, whatever its own eligibility.
	Owner string
	// Next is the runner-up: the owner once Owner drops out, so failover needs no new
	// election. Empty when there is no second eligible node.
	Next string
	// Interfaces are this node's up interfaces the applicable advertisements allow; set only
	// when Announce is true. Shared: do not modify.
	Interfaces []string
}

// ServiceDecision holds the decisions for one Service's IPs, in Ingress order.
type ServiceDecision struct {
	Namespace, Name string
	IPs             []IPDecision
	// Ports are the Service's ports, which the front door leaves open on its IPs; with
	// TrafficPolicy and Local they ride along for Proxy mode.
	Ports         []Port
	TrafficPolicy TrafficPolicy
	Local         []LocalEndpoint
	SourceRanges  []netip.Prefix
}

// decisionFor wraps a Service's IP decisions with what rides along for the datapath; the
// traffic policy and local endpoints only when an IP is Proxy mode, so that endpoint
// churn of other Services changes no decision.
func decisionFor(svc *Service, ips []IPDecision) ServiceDecision {
	sd := ServiceDecision{Namespace: svc.Namespace, Name: svc.Name, IPs: ips, Ports: svc.Ports}
	if slices.ContainsFunc(ips, func(d IPDecision) bool { return d.Proxy }) {
		sd.TrafficPolicy, sd.Local, sd.SourceRanges = svc.TrafficPolicy, svc.Local, svc.SourceRanges
	}
	return sd
}

// Cluster is the part of the decision shared by all Services, computed once per change of
// config, nodes or members. It is immutable, so goroutines may decide Services concurrently.
type Cluster struct {
	version uint32
	nodes   []clusterNode // sorted by name
	index   map[string]int
	self    int    // index into nodes, -1 when absent
	selfWhy Reason // why this node can announce nothing, "" when it may
	l2Why   Reason // why this node can answer for no L2 IP, "" when it may
	pools   map[string]poolAds
	ranges  []poolRange // sorted by First, for finding the pool of an IP
	l2      []l2Ad
	bgp     []bgpAd
}

type clusterNode struct {
	name string
	key  uint64 // the node's half of the L2 hash
}

// poolAds lists the advertisements covering a pool, as indexes into Cluster.l2 and .bgp,
// and whether the pool is Proxy mode.
type poolAds struct {
	l2, bgp []int
	proxy   bool
}

type poolRange struct {
	config.Range
	pool string
}

// NewCluster precomputes what every Service's decision shares: node eligibility per
// advertisement, the pools' advertisements, the decision version.
func NewCluster(in Input) *Cluster {
	c := &Cluster{self: -1, pools: map[string]poolAds{}}
	members := make(map[string]*Member, len(in.Members))
	for i := range in.Members {
		m := &in.Members[i]
		members[m.Name] = m
	}
	c.version = decisionVersion(in.Members)

	nodes := slices.Clone(in.Nodes)
	slices.SortFunc(nodes, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	c.nodes = make([]clusterNode, len(nodes))
	c.index = make(map[string]int, len(nodes))
	// live marks nodes that may announce anything: known, not excluded, live.
	live := newNodeSet(len(nodes))
	for i, n := range nodes {
		c.nodes[i] = clusterNode{name: n.Name, key: nodeKey(n.Name)}
		c.index[n.Name] = i
		if !n.Excluded && members[n.Name] != nil {
			live.add(i)
		}
	}
	c.selfWhy = NodeUnknown
	if i, ok := c.index[in.Self]; ok {
		c.self = i
		switch {
		case nodes[i].Excluded:
			c.selfWhy = NodeExcluded
		case members[in.Self] == nil:
			c.selfWhy = NotLive
		default:
			c.selfWhy = ""
		}
	}
	if inMinority(in.Nodes, in.Members, in.Departed, in.Suspects) {
		c.l2Why = Minority
	}

	snap := in.Config
	if snap == nil {
		snap = &config.Snapshot{}
	}
	for _, p := range snap.Pools {
		c.pools[p.Name] = poolAds{proxy: p.IPMode == v1alpha1.IPModeProxy}
		for _, r := range p.Ranges {
			c.ranges = append(c.ranges, poolRange{r, p.Name})
		}
	}
	slices.SortFunc(c.ranges, func(a, b poolRange) int { return a.First.Compare(b.First) })

	l2live := live
	if len(in.Unreachable) > 0 {
		l2live = live.clone()
		for _, name := range in.Unreachable {
			if i, ok := c.index[name]; ok && i != c.self {
				l2live.remove(i)
			}
		}
	}
	for i, a := range snap.L2Advertisements {
		c.l2 = append(c.l2, newL2Ad(a, nodes, members, l2live, c.self))
		c.cover(a.Pools, func(p *poolAds) { p.l2 = append(p.l2, i) })
	}
	peers := map[string]*config.Peer{}
	for _, p := range snap.Peers {
		peers[p.Name] = p
	}
	for i, a := range snap.BGPAdvertisements {
		c.bgp = append(c.bgp, newBGPAd(a, snap.Peers, peers, nodes, c.self))
		c.cover(a.Pools, func(p *poolAds) { p.bgp = append(p.bgp, i) })
	}
	return c
}

// inMinority reports whether this node, seeing members live, is on the smaller side of a
// partition: of the voters (nodes not excluded and Ready that are live members or departed
// recently), at least three, it sees fewer than half live (not suspected), or exactly half without the
// voter of the lowest name (so that of two halves one goes on). Then it may be the node
// cut off from the others, which take its L2 IPs; if it went on answering while its L2
// segment still reaches clients, two nodes would answer for one IP. With fewer than three
// voters no side can tell, and each answers (split brain, as before this rule).
func inMinority(nodes []Node, members []Member, departed, suspects []string) bool {
	voters, live := 0, 0
	lowest, lowestLive := "", false
	for _, n := range nodes {
		if n.Excluded || n.NotReady {
			continue
		}
		member := slices.ContainsFunc(members, func(m Member) bool { return m.Name == n.Name })
		if !member && !slices.Contains(departed, n.Name) {
			continue
		}
		isLive := member && !slices.Contains(suspects, n.Name)
		voters++
		if isLive {
			live++
		}
		if lowest == "" || n.Name < lowest {
			lowest, lowestLive = n.Name, isLive
		}
	}
	return voters >= 3 && (2*live < voters || 2*live == voters && !lowestLive)
}

// cover records an advertisement against each accepted pool it names.
func (c *Cluster) cover(pools []string, add func(*poolAds)) {
	for _, name := range pools {
		p, ok := c.pools[name]
		if !ok {
			continue
		}
		add(&p)
		c.pools[name] = p
	}
}

// Version returns the decision version in use: the lowest any live member implements, so
// that during a rolling upgrade old and new speakers elect alike.
func (c *Cluster) Version() uint32 { return c.version }

// Decide decides every Service, in order, as Decisions lists them.
func (c *Cluster) Decide(svcs []Service) []*ServiceDecision {
	out := make([]*ServiceDecision, len(svcs))
	for i := range svcs {
		sd := decisionFor(&svcs[i], c.DecideService(&svcs[i]))
		out[i] = &sd
	}
	return out
}

// DecideService decides one Service's IPs. The speaker's loop calls it for each Service an
// event touches; the answer depends only on svc and the Cluster.
func (c *Cluster) DecideService(svc *Service) []IPDecision {
	if len(svc.Ingress) == 0 {
		return nil
	}
	eps := c.endpoints(svc)
	out := make([]IPDecision, len(svc.Ingress))
	for i, ing := range svc.Ingress {
		ip := ing.IP.Unmap()
		d := &out[i]
		d.IP = ip
		d.Pool = c.poolOf(ing)
		ads, ok := c.pools[d.Pool]
		if !ok {
			d.Pool = ""
			d.BGP.Reason, d.L2.Reason = NoPool, NoPool
			continue
		}
		d.Proxy = ads.proxy
		d.BGP = c.decideBGP(svc, ads.bgp, eps)
		d.L2 = c.decideL2(svc, ip, ads.l2, eps)
	}
	return out
}

// poolOf returns the pool an ingress IP came from, or the accepted pool holding it.
func (c *Cluster) poolOf(ing Ingress) string {
	if ing.Pool != "" {
		return ing.Pool
	}
	ip := ing.IP.Unmap()
	// The last range starting at or before ip is the only one that may hold it: accepted
	// pools do not overlap.
	i, found := slices.BinarySearchFunc(c.ranges, ip, func(r poolRange, a netip.Addr) int { return r.First.Compare(a) })
	if !found {
		i--
	}
	if i >= 0 && c.ranges[i].Contains(ip) {
		return c.ranges[i].pool
	}
	return ""
}

// serviceEndpoints summarises a Service's endpoints for the decision.
type serviceEndpoints struct {
	any   bool    // some endpoint counts
	nodes nodeSet // nodes with an endpoint that counts; nil unless the policy is Local
}

// endpoints applies kube-proxy's rule: ready endpoints count; only when none is ready do
// serving terminating ones count. Applied Service-wide, so while ready endpoints exist a
// node left with only terminating ones withdraws and its connections drain, as cloud load
// balancers do when kube-proxy's health check stops counting them.
func (c *Cluster) endpoints(svc *Service) serviceEndpoints {
	anyReady, anyTerminating := false, false
	for _, e := range svc.Endpoints {
		anyReady = anyReady || e.Ready
		anyTerminating = anyTerminating || (e.Serving && e.Terminating)
	}
	counts := func(e *Endpoint) bool { return e.Ready }
	if !anyReady {
		counts = func(e *Endpoint) bool { return e.Serving && e.Terminating }
	}
	se := serviceEndpoints{any: anyReady || anyTerminating}
	if !se.any || !isLocal(svc.TrafficPolicy) {
		return se
	}
	se.nodes = newNodeSet(len(c.nodes))
	for i := range svc.Endpoints {
		e := &svc.Endpoints[i]
		if e.Node == "" || !counts(e) {
			continue
		}
		if n, ok := c.index[e.Node]; ok {
			se.nodes.add(n)
		}
	}
	return se
}

func isLocal(p TrafficPolicy) bool { return p == TrafficPolicyLocal }

// selects reports whether s selects set; a nil selector (a hand-built snapshot) selects all.
func selects(s labels.Selector, set labels.Set) bool {
	return s == nil || s.Matches(set)
}

// nodeSet is a bitset over Cluster.nodes indexes.
type nodeSet []uint64

func newNodeSet(n int) nodeSet   { return make(nodeSet, (n+63)/64) }
func (s nodeSet) add(i int)      { s[i/64] |= 1 << (i % 64) }
func (s nodeSet) remove(i int)   { s[i/64] &^= 1 << (i % 64) }
func (s nodeSet) has(i int) bool { return i >= 0 && s[i/64]&(1<<(i%64)) != 0 }
func (s nodeSet) or(o nodeSet) {
	for i := range s {
		s[i] |= o[i]
	}
}
func (s nodeSet) and(o nodeSet) {
	for i := range s {
		s[i] &= o[i]
	}
}
func (s nodeSet) clone() nodeSet { return slices.Clone(s) }
