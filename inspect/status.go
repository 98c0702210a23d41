// Package inspect turns what berth wrote into the cluster (Services' status and
// conditions, NodeAnnouncements, IPPool status) into the views berthctl prints. It is
// pure: the caller reads the objects, inspect decides what they say.
package inspect

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

// Conditions berth-controller writes on Services (controller.ConditionAllocated and
// ConditionAnnounced; inspect does not import the controller).
const (
	conditionAllocated = "berth.dev/Allocated"
	conditionAnnounced = "berth.dev/Announced"
	conditionProxy     = "berth.dev/ProxyNodePorts"
)

// ServiceStatus is one LoadBalancer Service as berth sees it.
type ServiceStatus struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// IPs are the addresses in status.loadBalancer.ingress, sorted.
	IPs []string `json:"ips,omitempty"`
	// Pool names the accepted pool(s) holding the IPs; an IP in none is a problem.
	Pool string `json:"pool,omitempty"`
	// Mode is the ingress ipMode: VIP or Proxy.
	Mode string `json:"mode,omitempty"`
	// L2 is the node answering ARP/NDP for each L2 address, by address.
	L2 map[string][]string `json:"l2,omitempty"`
	// BGP are the nodes announcing the Service over BGP, and Peers the peers they send it to.
	BGP   []string `json:"bgp,omitempty"`
	Peers []string `json:"peers,omitempty"`
	// Problems say what is wrong, from berth's conditions and the nodes' reports.
	Problems []string `json:"problems,omitempty"`
}

// Classes say which LoadBalancer Services berth handles, as berth-controller's
// --load-balancer-class and --handle-default-class do.
type Classes struct {
	LoadBalancerClass  string
	HandleDefaultClass bool
}

// Handles reports whether berth handles svc.
func (c Classes) Handles(svc *corev1.Service) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if svc.Spec.LoadBalancerClass == nil {
		return c.HandleDefaultClass
	}
	return *svc.Spec.LoadBalancerClass == c.LoadBalancerClass
}

// Services describes every LoadBalancer Service of svcs berth handles: its addresses,
// pool, mode, who announces it and to whom, from the nodes' NodeAnnouncements, and any
// problem berth reported. snap (config.Build of the cluster's objects) names the pools;
// it may be nil. Services are sorted by namespace and name.
func Services(svcs []corev1.Service, anns []v1alpha1.NodeAnnouncement, snap *config.Snapshot, classes Classes) []ServiceStatus {
	type key struct{ ns, name string }
	type entry struct {
		node string
		a    v1alpha1.AnnouncedService
	}
	byService := map[key][]entry{}
	conflicts := map[string][]string{} // IP → "node sees MAC on interface"
	// As berth-controller does: a killed speaker cannot withdraw its report, so the
	// reports of nodes most others see dead do not count.
	dead := config.DeadNodes(memberViews(anns))
	for _, na := range anns {
		if dead[na.Name] {
			continue
		}
		for _, a := range na.Status.Services {
			k := key{a.Namespace, a.Name}
			byService[k] = append(byService[k], entry{na.Name, a})
		}
		for _, c := range na.Status.Conflicts {
			conflicts[c.IP] = append(conflicts[c.IP], fmt.Sprintf("%s sees %s answer on %s", na.Name, c.MAC, c.Interface))
		}
	}
	var out []ServiceStatus
	for i := range svcs {
		svc := &svcs[i]
		if !classes.Handles(svc) {
			continue
		}
		s := ServiceStatus{Namespace: svc.Namespace, Name: svc.Name, L2: map[string][]string{}}
		for _, in := range svc.Status.LoadBalancer.Ingress {
			s.IPs = append(s.IPs, in.IP)
			if in.IPMode != nil {
				s.Mode = string(*in.IPMode)
			}
		}
		slices.SortFunc(s.IPs, compareAddrs)
		var pools []string
		for _, ip := range s.IPs {
			if p := poolOf(snap, ip); p != "" {
				pools = append(pools, p)
			} else if snap != nil {
				s.Problems = append(s.Problems, ip+" is in no accepted pool")
			}
		}
		slices.Sort(pools)
		s.Pool = strings.Join(slices.Compact(pools), ",")
		bgp, peers := map[string]bool{}, map[string]bool{}
		for _, e := range byService[key{svc.Namespace, svc.Name}] {
			for _, ip := range e.a.L2 {
				s.L2[ip] = append(s.L2[ip], e.node)
			}
			if len(e.a.BGP) > 0 {
				bgp[e.node] = true
			}
			for _, p := range e.a.Peers {
				peers[p] = true
			}
		}
		s.BGP, s.Peers = slices.Sorted(maps.Keys(bgp)), slices.Sorted(maps.Keys(peers))
		for _, ip := range slices.SortedFunc(maps.Keys(s.L2), compareAddrs) {
			nodes := s.L2[ip]
			slices.Sort(nodes)
			if len(nodes) > 1 {
				s.Problems = append(s.Problems, fmt.Sprintf("%s answered by %d nodes: %s", ip, len(nodes), strings.Join(nodes, ", ")))
			}
		}
		for _, ip := range s.IPs {
			for _, c := range conflicts[ip] {
				s.Problems = append(s.Problems, "L2 conflict on "+ip+": "+c)
			}
		}
		s.Problems = append(s.Problems, conditionProblems(svc.Status.Conditions)...)
		if len(s.L2) == 0 {
			s.L2 = nil
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b ServiceStatus) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return out
}

// conditionProblems are berth's conditions on a Service that are False, as "Reason:
// message".
func conditionProblems(conds []metav1.Condition) []string {
	var out []string
	for _, t := range []string{conditionAllocated, conditionAnnounced, conditionProxy} {
		if c := meta.FindStatusCondition(conds, t); c != nil && c.Status == metav1.ConditionFalse {
			out = append(out, c.Reason+": "+c.Message)
		}
	}
	return out
}

// poolOf names the accepted pool containing ip, "" when none does (or snap is nil).
func poolOf(snap *config.Snapshot, ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || snap == nil {
		return ""
	}
	for _, p := range snap.Pools {
		if p.Contains(a) {
			return p.Name
		}
	}
	return ""
}

// compareAddrs orders addresses numerically (IPv4 first), unparsable ones last by text.
func compareAddrs(a, b string) int {
	x, errX := netip.ParseAddr(a)
	y, errY := netip.ParseAddr(b)
	switch {
	case errX == nil && errY == nil:
		return x.Compare(y)
	case errX == nil:
		return -1
	case errY == nil:
		return 1
	}
	return strings.Compare(a, b)
}

// memberViews maps each node to the memberlist members its speaker reports alive.
func memberViews(anns []v1alpha1.NodeAnnouncement) map[string][]string {
	m := make(map[string][]string, len(anns))
	for _, na := range anns {
		m[na.Name] = na.Status.Members
	}
	return m
}
