package speaker

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// ExcludeLabel keeps a node out of every announcement, as it keeps it out of cloud load
// balancers.
const ExcludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// Classes says which Services are berth's, as berth-controller decides it.
type Classes struct {
	// LoadBalancerClass is berth's own class.
	LoadBalancerClass string
	// HandleDefaultClass: Services without a class are berth's too.
	HandleDefaultClass bool
}

// Handles reports whether svc is a LoadBalancer Service of berth's with an ingress IP.
func (c Classes) Handles(svc *corev1.Service) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Status.LoadBalancer.Ingress) == 0 {
		return false
	}
	if svc.Spec.LoadBalancerClass == nil {
		return c.HandleDefaultClass
	}
	return *svc.Spec.LoadBalancerClass == c.LoadBalancerClass
}

// NodeFrom takes from a Node what the decision needs.
func NodeFrom(n *corev1.Node) Node {
	_, excluded := n.Labels[ExcludeLabel]
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionTrue {
			excluded = true
		}
	}
	out := Node{Name: n.Name, Labels: labels.Set(n.Labels), Excluded: excluded}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
			out.NotReady = true
		}
	}
	for _, a := range n.Status.Addresses {
		if ip, err := netip.ParseAddr(a.Address); err == nil && a.Type == corev1.NodeInternalIP {
			out.Addrs = append(out.Addrs, ip.Unmap())
		}
	}
	return out
}

// SameNode reports whether two Nodes decide and forward alike, so that heartbeats, which rewrite a
// Node every few seconds, re-decide nothing.
func SameNode(a, b Node) bool {
	return a.Name == b.Name && a.Excluded == b.Excluded && a.NotReady == b.NotReady && labels.Equals(a.Labels, b.Labels) && slices.Equal(a.Addrs, b.Addrs)
}

// ServiceFrom builds the decision's view of svc from the Service and its EndpointSlices,
// as seen from node self. Ingress entries without a parsable IP (hostname-only) are
// skipped.
func ServiceFrom(svc *corev1.Service, eps []*discoveryv1.EndpointSlice, self string) Service {
	parts := make([]sliceEndpoints, 0, len(eps))
	for _, s := range eps {
		parts = append(parts, endpointsOf(s, self))
	}
	return withEndpoints(serviceView(svc), parts)
}

// serviceView is the decision's view of svc without its endpoints.
func serviceView(svc *corev1.Service) Service {
	out := Service{
		Namespace: svc.Namespace, Name: svc.Name, Labels: labels.Set(svc.Labels),
		TrafficPolicy: TrafficPolicy(svc.Spec.ExternalTrafficPolicy),
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(ing.IP); err == nil {
			out.Ingress = append(out.Ingress, Ingress{IP: ip.Unmap()})
		}
	}
	for _, r := range svc.Spec.LoadBalancerSourceRanges {
		// The apiserver validates them; an unparsable one becomes ::/128, which matches no
		// client: the Service stays restricted rather than open to all.
		p, err := netip.ParsePrefix(strings.TrimSpace(r))
		if err != nil {
			p = netip.PrefixFrom(netip.IPv6Unspecified(), 128)
		}
		out.SourceRanges = append(out.SourceRanges, p)
	}
	for _, p := range svc.Spec.Ports {
		out.Ports = append(out.Ports, Port{Name: p.Name, Protocol: string(p.Protocol), Port: uint16(p.Port), NodePort: uint16(p.NodePort)})
	}
	return out
}

// sliceEndpoints is what a decision reads of one EndpointSlice.
type sliceEndpoints struct {
	endpoints []Endpoint
	// local are the serving endpoints on node self with each port, sorted, no duplicates.
	local []LocalEndpoint
}

func endpointsOf(s *discoveryv1.EndpointSlice, self string) sliceEndpoints {
	var out sliceEndpoints
	if len(s.Endpoints) > 0 {
		out.endpoints = make([]Endpoint, 0, len(s.Endpoints))
	}
	for i := range s.Endpoints {
		e := &s.Endpoints[i]
		ep := endpointFrom(e)
		out.endpoints = append(out.endpoints, ep)
		if ep.Node == self && self != "" && ep.Serving {
			out.local = append(out.local, localEndpoints(s, e, ep.Ready)...)
		}
	}
	out.local = sortLocal(out.local)
	return out
}

// withEndpoints adds the endpoints of a Service's slices to its view. The parts are shared
// with the cache: a single slice's lists are used as they are, capped so that an append
// copies them, and never changed.
func withEndpoints(svc Service, parts []sliceEndpoints) Service {
	if len(parts) == 1 {
		e, l := parts[0].endpoints, parts[0].local
		svc.Endpoints, svc.Local = e[:len(e):len(e)], l[:len(l):len(l)]
		return svc
	}
	for _, p := range parts {
		svc.Endpoints = append(svc.Endpoints, p.endpoints...)
		svc.Local = append(svc.Local, p.local...)
	}
	// The slices come in no particular order: sorted, the same endpoints decide alike.
	svc.Local = sortLocal(svc.Local)
	return svc
}

func sortLocal(l []LocalEndpoint) []LocalEndpoint {
	slices.SortFunc(l, func(a, b LocalEndpoint) int {
		return cmp.Or(strings.Compare(a.PortName, b.PortName), a.Addr.Compare(b.Addr), boolCompare(a.Ready, b.Ready))
	})
	return slices.Compact(l)
}

func boolCompare(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// localEndpoints lists an endpoint's addresses with each port of its slice.
func localEndpoints(s *discoveryv1.EndpointSlice, e *discoveryv1.Endpoint, ready bool) []LocalEndpoint {
	var out []LocalEndpoint
	for _, a := range e.Addresses {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			continue // an FQDN slice
		}
		for _, p := range s.Ports {
			if p.Port == nil || *p.Port <= 0 || *p.Port > 65535 {
				continue
			}
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			out = append(out, LocalEndpoint{PortName: name, Addr: netip.AddrPortFrom(ip.Unmap(), uint16(*p.Port)), Ready: ready})
		}
	}
	return out
}

// endpointFrom reads an endpoint's conditions as EndpointSlice defines them: a nil ready
// or serving means true, a nil terminating means false; serving falls back to ready for
// producers that predate it.
func endpointFrom(e *discoveryv1.Endpoint) Endpoint {
	c := e.Conditions
	ready := c.Ready == nil || *c.Ready
	terminating := c.Terminating != nil && *c.Terminating
	serving := ready
	if c.Serving != nil {
		serving = *c.Serving
	}
	out := Endpoint{Ready: ready && !terminating, Serving: serving, Terminating: terminating}
	if e.NodeName != nil {
		out.Node = *e.NodeName
	}
	return out
}
