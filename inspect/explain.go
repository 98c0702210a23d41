package inspect

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/speaker"
)

// ExplainInput is what berthctl reads from the cluster to explain one Service.
type ExplainInput struct {
	Service         *corev1.Service
	NamespaceLabels map[string]string
	Slices          []discoveryv1.EndpointSlice
	Nodes           []corev1.Node
	Announcements   []v1alpha1.NodeAnnouncement
	Resources       config.Resources
	Classes         Classes
}

// Explanation says why a Service has its addresses and who announces them.
type Explanation struct {
	Service string `json:"service"`
	// Handled is false when berth leaves the Service to another load balancer; Why says so.
	Handled bool   `json:"handled"`
	Why     string `json:"why,omitempty"`
	// Allocated is the controller's Allocated condition: "True Allocated: message".
	Allocated string `json:"allocated,omitempty"`
	// Asked lists what the Service asks for: pool, addresses, sharing key, traffic policy.
	Asked []string `json:"asked,omitempty"`
	// Pools is every accepted pool's verdict for this Service, in the allocator's order.
	Pools []Verdict `json:"pools,omitempty"`
	// Members are the speakers the explanation counts as live (not seen dead by most).
	Members []string        `json:"members"`
	IPs     []IPExplanation `json:"ips,omitempty"`
}

// Verdict is a named thing and what berth makes of it.
type Verdict struct {
	Name    string `json:"name"`
	Verdict string `json:"verdict"`
}

// IPExplanation is one address: every node's decision, what peers get, and what a node's
// failure would change.
type IPExplanation struct {
	IP   string `json:"ip"`
	Pool string `json:"pool,omitempty"`
	// Nodes are every node's L2 and BGP decision, with reasons, sorted by name.
	Nodes []NodeDecision `json:"nodes"`
	// L2Owner answers ARP/NDP; L2Next takes over when it fails.
	L2Owner string `json:"l2Owner,omitempty"`
	L2Next  string `json:"l2Next,omitempty"`
	// Routes are what each announcing node sends each peer.
	Routes []Route `json:"routes,omitempty"`
	// IfFails says, per announcing node, what changes if it fails.
	IfFails []Verdict `json:"ifFails,omitempty"`
	// Mismatches are where the nodes' reports differ from this explanation.
	Mismatches []string `json:"mismatches,omitempty"`
}

// NodeDecision is one node's decision for an IP, as its speaker computes it.
type NodeDecision struct {
	Node string `json:"node"`
	L2   string `json:"l2"`
	BGP  string `json:"bgp"`
	// Reported is what the node's NodeAnnouncement says it does: "L2", "BGP", "L2,BGP" or "".
	Reported string `json:"reported"`
}

// Route is an IP as one node sends it to one peer.
type Route struct {
	Node    string `json:"node"`
	Peer    string `json:"peer"`
	Session string `json:"session"`
	// Attributes are the advertisement's: prefix length, communities, local preference.
	Attributes string `json:"attributes"`
}

// Explain redoes, for every node, the decision its speaker makes for in.Service, from the
// objects berth writes: live members from the NodeAnnouncements (their memberlist views
// and L2 interfaces), the configuration, Nodes and EndpointSlices. Where a node's report
// disagrees (a speaker lagging, or seeing other members), Mismatches says so.
func Explain(in ExplainInput) Explanation {
	svc := in.Service
	e := Explanation{Service: svc.Namespace + "/" + svc.Name, Handled: in.Classes.Handles(svc)}
	if !e.Handled {
		e.Why = notHandled(svc, in.Classes)
		return e
	}
	if c := meta.FindStatusCondition(svc.Status.Conditions, conditionAllocated); c != nil {
		e.Allocated = fmt.Sprintf("%s %s: %s", c.Status, c.Reason, c.Message)
	}
	e.Asked = asked(svc)
	snap, _ := config.Build(in.Resources)
	e.Pools = poolVerdicts(snap, svc, in.NamespaceLabels)

	members, reported := liveMembers(in.Announcements)
	for _, m := range members {
		e.Members = append(e.Members, m.Name)
	}
	var nodes []speaker.Node
	for i := range in.Nodes {
		nodes = append(nodes, speaker.NodeFrom(&in.Nodes[i]))
	}
	slices.SortFunc(nodes, func(a, b speaker.Node) int { return strings.Compare(a.Name, b.Name) })
	slicePtrs := make([]*discoveryv1.EndpointSlice, len(in.Slices))
	for i := range in.Slices {
		slicePtrs[i] = &in.Slices[i]
	}
	view := speaker.ServiceFrom(svc, slicePtrs, "")
	decide := func(members []speaker.Member) map[string][]speaker.IPDecision {
		out := map[string][]speaker.IPDecision{}
		for _, n := range nodes {
			c := speaker.NewCluster(speaker.Input{Config: snap, Nodes: nodes, Members: members, Self: n.Name})
			out[n.Name] = c.DecideService(&view)
		}
		return out
	}
	now := decide(members)
	sessions, families := peerSessions(in.Resources.Peers)
	for i, ing := range view.Ingress {
		x := IPExplanation{IP: ing.IP.String()}
		for _, n := range nodes {
			d := now[n.Name][i]
			x.Pool = d.Pool
			x.Nodes = append(x.Nodes, NodeDecision{Node: n.Name, L2: string(d.L2.Reason), BGP: string(d.BGP.Reason),
				Reported: reported[n.Name][svc.Namespace+"/"+svc.Name+" "+x.IP]})
			x.L2Owner, x.L2Next = d.L2.Owner, d.L2.Next
			for _, r := range d.BGP.Routes {
				for _, p := range r.Peers {
					if families[p] != ing.IP.Is6() {
						continue // a session carries its own address family only
					}
					x.Routes = append(x.Routes, Route{Node: n.Name, Peer: p, Session: sessions[p+"/"+n.Name],
						Attributes: attributes(r.Advertisement, ing.IP)})
				}
			}
		}
		x.Mismatches = mismatches(x.Nodes)
		x.IfFails = ifFails(x, i, members, decide)
		e.IPs = append(e.IPs, x)
	}
	return e
}

func notHandled(svc *corev1.Service, c Classes) string {
	switch {
	case svc.Spec.Type != corev1.ServiceTypeLoadBalancer:
		return fmt.Sprintf("type %s: only LoadBalancer Services get addresses", svc.Spec.Type)
	case svc.Spec.LoadBalancerClass != nil:
		return fmt.Sprintf("loadBalancerClass %s: berth handles %s", *svc.Spec.LoadBalancerClass, c.LoadBalancerClass)
	}
	return "no loadBalancerClass, and berth runs with --handle-default-class=false"
}

// asked lists what the Service requests of the allocator.
func asked(svc *corev1.Service) []string {
	var out []string
	for _, k := range []string{"berth.dev/pool", "berth.dev/load-balancer-ips", "berth.dev/sharing-key"} {
		if v, ok := svc.Annotations[k]; ok {
			out = append(out, fmt.Sprintf("%s=%s", k, v))
		}
	}
	if svc.Spec.LoadBalancerIP != "" {
		out = append(out, "spec.loadBalancerIP="+svc.Spec.LoadBalancerIP)
	}
	fams := make([]string, len(svc.Spec.IPFamilies))
	for i, f := range svc.Spec.IPFamilies {
		fams[i] = string(f)
	}
	policy := "SingleStack"
	if svc.Spec.IPFamilyPolicy != nil {
		policy = string(*svc.Spec.IPFamilyPolicy)
	}
	out = append(out, fmt.Sprintf("families %s (%s)", strings.Join(fams, ","), policy))
	tp := svc.Spec.ExternalTrafficPolicy
	if tp == "" {
		tp = corev1.ServiceExternalTrafficPolicyCluster
	}
	return append(out, "externalTrafficPolicy "+string(tp))
}

// poolVerdicts says of every accepted pool whether it holds, could hold, or may not hold
// the Service's addresses, in the order the allocator tries them: priority, then pools
// with selectors before those taking any Service, then age.
func poolVerdicts(snap *config.Snapshot, svc *corev1.Service, nsLabels map[string]string) []Verdict {
	held := map[string][]string{}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if p := poolOf(snap, ing.IP); p != "" {
			held[p] = append(held[p], ing.IP)
		}
	}
	want := svc.Annotations["berth.dev/pool"]
	var out []Verdict
	for _, p := range snap.Pools {
		var v string
		switch {
		case len(held[p.Name]) > 0:
			v = "holds " + strings.Join(held[p.Name], ", ")
		case want != "" && want != p.Name:
			v = fmt.Sprintf("not named: the Service asks for pool %q", want)
		case p.ServiceSelector != nil && !p.ServiceSelector.Matches(labels.Set(svc.Labels)):
			v = "serviceSelector " + p.ServiceSelector.String() + " does not select the Service"
		case p.NamespaceSelector != nil && !p.NamespaceSelector.Matches(labels.Set(nsLabels)):
			v = "namespaceSelector " + p.NamespaceSelector.String() + " does not select namespace " + svc.Namespace
		case !p.AutoAssign && want != p.Name:
			v = "autoAssign false: only Services naming it or one of its addresses"
		case p.Deleting:
			v = "being deleted: keeps what Services hold, hands out nothing new"
		default:
			v = fmt.Sprintf("eligible (priority %d)", p.Priority)
		}
		out = append(out, Verdict{Name: p.Name, Verdict: v})
	}
	return out
}

// liveMembers are the speakers with a report that most others do not see dead, with the
// metadata the decision needs; and what each node reports announcing, by "ns/name ip".
func liveMembers(anns []v1alpha1.NodeAnnouncement) ([]speaker.Member, map[string]map[string]string) {
	dead := config.DeadNodes(memberViews(anns))
	var members []speaker.Member
	reported := map[string]map[string]string{}
	for _, na := range anns {
		if dead[na.Name] || len(na.Status.Members) == 0 {
			continue
		}
		members = append(members, speaker.Member{Name: na.Name, L2Interfaces: na.Status.L2Interfaces,
			DecisionVersion: uint32(na.Status.DecisionVersion)})
		r := map[string]string{}
		for _, a := range na.Status.Services {
			for _, ip := range a.L2 {
				r[a.Namespace+"/"+a.Name+" "+ip] = "L2"
			}
			for _, ip := range a.BGP {
				k := a.Namespace + "/" + a.Name + " " + ip
				r[k] = strings.TrimPrefix(r[k]+",BGP", ",")
			}
		}
		reported[na.Name] = r
	}
	slices.SortFunc(members, func(a, b speaker.Member) int { return strings.Compare(a.Name, b.Name) })
	return members, reported
}

// peerSessions maps "peer/node" to the session's state as the node reports it, and each
// peer to whether its session is IPv6 (and so carries IPv6 routes only).
func peerSessions(peers []v1alpha1.BGPPeer) (map[string]string, map[string]bool) {
	out, v6 := map[string]string{}, map[string]bool{}
	for _, p := range peers {
		a, _ := netip.ParseAddr(p.Spec.PeerAddress)
		v6[p.Name] = a.Is6() && !a.Is4In6()
		for _, n := range p.Status.Nodes {
			s := string(n.State)
			if n.Reason != "" {
				s += " (" + n.Reason + ")"
			}
			out[p.Name+"/"+n.Node] = s
		}
	}
	return out, v6
}

// attributes renders what an advertisement attaches to ip's route.
func attributes(a *config.BGPAdvertisement, ip netip.Addr) string {
	f := config.IPv4
	if ip.Is6() {
		f = config.IPv6
	}
	parts := []string{fmt.Sprintf("%s/%d", ip, a.AggregationFor(f))}
	for _, c := range a.Communities {
		parts = append(parts, fmt.Sprintf("community %d:%d", c>>16, c&0xffff))
	}
	for _, c := range a.LargeCommunities {
		parts = append(parts, "large community "+c.String())
	}
	if a.LocalPref != nil {
		parts = append(parts, fmt.Sprintf("local-pref %d", *a.LocalPref))
	}
	return strings.Join(parts, ", ") + " (advertisement " + a.Name + ")"
}

// mismatches compare each node's decision with its report.
func mismatches(nodes []NodeDecision) []string {
	var out []string
	for _, n := range nodes {
		var want []string
		if n.L2 == string(speaker.Elected) {
			want = append(want, "L2")
		}
		if n.BGP == string(speaker.Announced) {
			want = append(want, "BGP")
		}
		if w := strings.Join(want, ","); w != n.Reported {
			out = append(out, fmt.Sprintf("%s should announce %q but reports %q", n.Node, w, n.Reported))
		}
	}
	return out
}

// ifFails redecides without each node that announces the IP.
func ifFails(x IPExplanation, i int, members []speaker.Member, decide func([]speaker.Member) map[string][]speaker.IPDecision) []Verdict {
	var out []Verdict
	for _, n := range x.Nodes {
		if n.L2 != string(speaker.Elected) && n.BGP != string(speaker.Announced) {
			continue
		}
		rest := slices.DeleteFunc(slices.Clone(members), func(m speaker.Member) bool { return m.Name == n.Node })
		after := decide(rest)
		var l2Owner string
		var bgp []string
		for node, ds := range after {
			d := ds[i]
			if d.L2.Announce {
				l2Owner = node
			}
			if d.BGP.Announce {
				bgp = append(bgp, node)
			}
		}
		slices.Sort(bgp)
		var then []string
		if n.L2 == string(speaker.Elected) {
			if l2Owner == "" {
				then = append(then, "no node answers ARP/NDP: the IP is unreachable over L2")
			} else {
				then = append(then, l2Owner+" answers ARP/NDP")
			}
		}
		if n.BGP == string(speaker.Announced) {
			if len(bgp) == 0 {
				then = append(then, "no node announces over BGP: the route is withdrawn")
			} else {
				then = append(then, "BGP from "+strings.Join(bgp, ", "))
			}
		}
		out = append(out, Verdict{Name: n.Node, Verdict: strings.Join(then, "; ")})
	}
	return out
}
