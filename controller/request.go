package controller

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/controller/allocator"
)

// Annotations a Service may carry.
const (
	// AnnotationLoadBalancerIPs requests addresses, comma-separated, at most one per family.
	AnnotationLoadBalancerIPs = "berth.dev/load-balancer-ips"
	// AnnotationPool names the pool to allocate from.
	AnnotationPool = "berth.dev/pool"
	// AnnotationSharingKey lets Services with the same key share an IP.
	AnnotationSharingKey = "berth.dev/sharing-key"
)

// requestFor translates a Service and its namespace's labels into an allocator request.
// It fails on annotations a user got wrong, with a message naming the annotation.
func requestFor(svc *corev1.Service, nsLabels map[string]string) (allocator.Request, error) {
	req := allocator.Request{
		Key:             allocator.Key{Namespace: svc.Namespace, Name: svc.Name},
		Created:         svc.CreationTimestamp.Time,
		ServiceLabels:   labels.Set(svc.Labels),
		NamespaceLabels: labels.Set(nsLabels),
		Pool:            svc.Annotations[AnnotationPool],
		SharingKey:      svc.Annotations[AnnotationSharingKey],
		LocalTraffic:    svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		Selector:        labels.Set(svc.Spec.Selector).String(),
	}
	for _, f := range svc.Spec.IPFamilies {
		switch f {
		case corev1.IPv4Protocol:
			req.Families = append(req.Families, config.IPv4)
		case corev1.IPv6Protocol:
			req.Families = append(req.Families, config.IPv6)
		}
	}
	if len(req.Families) == 0 {
		// The apiserver always fills ipFamilies; a Service without them is single-stack
		// IPv4, as before dual-stack existed.
		req.Families = []config.Family{config.IPv4}
	}
	if p := svc.Spec.IPFamilyPolicy; p != nil {
		req.Policy = allocator.FamilyPolicy(*p)
	}
	for _, p := range svc.Spec.Ports {
		req.Ports = append(req.Ports, allocator.Port{Protocol: string(p.Protocol), Port: p.Port})
	}
	// A single-stack Service allocates its first family only, as the allocator does.
	fams := req.Families
	if req.Policy == "" || req.Policy == allocator.SingleStack {
		fams = fams[:1]
	}
	var err error
	if req.RequestedIPs, err = requestedIPs(svc, fams); err != nil {
		return req, err
	}
	return req, nil
}

// requestedIPs merges spec.loadBalancerIP and the load-balancer-ips annotation. Each
// address must be of one of fams, the families the Service allocates, and there may be at
// most one per family: the allocator refuses anything else, and the message here names
// the field or annotation the address came from.
func requestedIPs(svc *corev1.Service, fams []config.Family) ([]netip.Addr, error) {
	var out []netip.Addr
	var sources []string
	add := func(s, from string) error {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil || a.Zone() != "" || a.Is4In6() {
			return fmt.Errorf("%s: %q is not an IPv4 or IPv6 address", from, s)
		}
		f := config.FamilyOf(a)
		if !slices.Contains(fams, f) {
			return fmt.Errorf("%s: %s is %s, but the Service's IP families are %v", from, a, f, fams)
		}
		for i, o := range out {
			if o == a {
				return nil
			}
			if config.FamilyOf(o) != f {
				continue
			}
			other := o.String()
			if sources[i] != from {
				other = sources[i] + " " + other
			}
			return fmt.Errorf("%s: %s and %s are both %s; at most one address per family", from, other, a, f)
		}
		out = append(out, a)
		sources = append(sources, from)
		return nil
	}
	if ip := svc.Spec.LoadBalancerIP; ip != "" {
		if err := add(ip, "spec.loadBalancerIP"); err != nil {
			return nil, err
		}
	}
	if v, ok := svc.Annotations[AnnotationLoadBalancerIPs]; ok {
		for _, s := range strings.Split(v, ",") {
			if err := add(s, "annotation "+AnnotationLoadBalancerIPs); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// ingressFor renders an assignment as the Service's load-balancer status.
func ingressFor(a allocator.Assignment) *corev1.LoadBalancerStatus {
	mode := corev1.LoadBalancerIPModeVIP
	if a.IPMode == "Proxy" {
		mode = corev1.LoadBalancerIPModeProxy
	}
	st := &corev1.LoadBalancerStatus{}
	for _, ip := range a.IPs {
		m := mode
		st.Ingress = append(st.Ingress, corev1.LoadBalancerIngress{IP: ip.String(), IPMode: &m})
	}
	return st
}

// ingressIPs returns the addresses in a Service's status.
func ingressIPs(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// CheckService reports what berth-controller would refuse in svc's berth annotations and
// spec.loadBalancerIP, with the message its Event would carry; nil if nothing.
func CheckService(svc *corev1.Service) error {
	_, err := requestFor(svc, nil)
	return err
}
