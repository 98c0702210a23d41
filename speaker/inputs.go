package speaker

import (
	"net/netip"

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
	return Node{Name: n.Name, Labels: labels.Set(n.Labels), Excluded: excluded}
}

// SameNode reports whether two Nodes decide alike, so that heartbeats, which rewrite a
// Node every few seconds, re-decide nothing.
func SameNode(a, b Node) bool {
	return a.Name == b.Name && a.Excluded == b.Excluded && labels.Equals(a.Labels, b.Labels)
}

// ServiceFrom builds the decision's view of svc from the Service and its EndpointSlices.
// Ingress entries without a parsable IP (hostname-only) are skipped.
func ServiceFrom(svc *corev1.Service, slices []*discoveryv1.EndpointSlice) Service {
	out := Service{
		Namespace: svc.Namespace, Name: svc.Name, Labels: labels.Set(svc.Labels),
		TrafficPolicy: TrafficPolicy(svc.Spec.ExternalTrafficPolicy),
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(ing.IP); err == nil {
			out.Ingress = append(out.Ingress, Ingress{IP: ip.Unmap()})
		}
	}
	for _, p := range svc.Spec.Ports {
		out.Ports = append(out.Ports, Port{Protocol: string(p.Protocol), Port: uint16(p.Port)})
	}
	for _, s := range slices {
		for _, e := range s.Endpoints {
			out.Endpoints = append(out.Endpoints, endpointFrom(&e))
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
