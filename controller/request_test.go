package controller

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/controller/allocator"
)

func TestRequestFor(t *testing.T) {
	base := func(mut func(*corev1.Service)) *corev1.Service {
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", Labels: map[string]string{"app": "web"}},
			Spec: corev1.ServiceSpec{
				Type:       corev1.ServiceTypeLoadBalancer,
				IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
				Selector:   map[string]string{"app": "web", "tier": "front"},
				Ports:      []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: 80}, {Protocol: corev1.ProtocolUDP, Port: 53}},
			},
		}
		if mut != nil {
			mut(s)
		}
		return s
	}
	want := func(mut func(*allocator.Request)) allocator.Request {
		r := allocator.Request{
			Key:             allocator.Key{Namespace: "ns", Name: "web"},
			ServiceLabels:   labels.Set{"app": "web"},
			NamespaceLabels: labels.Set{"team": "a"},
			Families:        []config.Family{config.IPv4},
			Ports:           []allocator.Port{{Protocol: "TCP", Port: 80}, {Protocol: "UDP", Port: 53}},
			Selector:        "app=web,tier=front",
		}
		if mut != nil {
			mut(&r)
		}
		return r
	}
	for _, tc := range []struct {
		name string
		svc  *corev1.Service
		want allocator.Request
	}{
		{name: "plain", svc: base(nil), want: want(nil)},
		{
			name: "dual-stack, IPv6 first",
			svc: base(func(s *corev1.Service) {
				s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
				s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyPreferDualStack)
			}),
			want: want(func(r *allocator.Request) {
				r.Families = []config.Family{config.IPv6, config.IPv4}
				r.Policy = allocator.PreferDualStack
			}),
		},
		{
			name: "annotations and eTP Local",
			svc: base(func(s *corev1.Service) {
				s.Annotations = map[string]string{AnnotationPool: "lan", AnnotationSharingKey: "k",
					AnnotationLoadBalancerIPs: "198.18.2.200, 2001:db8::1"}
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
				s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
				s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
			}),
			want: want(func(r *allocator.Request) {
				r.Families, r.Policy = []config.Family{config.IPv4, config.IPv6}, allocator.RequireDualStack
				r.Pool, r.SharingKey, r.LocalTraffic = "lan", "k", true
				r.RequestedIPs = []netip.Addr{netip.MustParseAddr("198.18.2.200"), netip.MustParseAddr("2001:db8::1")}
			}),
		},
		{
			name: "spec.loadBalancerIP merged with the annotation, duplicates once",
			svc: base(func(s *corev1.Service) {
				s.Spec.LoadBalancerIP = "198.18.2.200"
				s.Annotations = map[string]string{AnnotationLoadBalancerIPs: "198.18.2.200"}
			}),
			want: want(func(r *allocator.Request) { r.RequestedIPs = []netip.Addr{netip.MustParseAddr("198.18.2.200")} }),
		},
		{
			name: "IPv6 requested by a PreferDualStack Service in a dual-stack cluster",
			svc: base(func(s *corev1.Service) {
				s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
				s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyPreferDualStack)
				s.Spec.LoadBalancerIP = " 2001:db8::1 "
			}),
			want: want(func(r *allocator.Request) {
				r.Families, r.Policy = []config.Family{config.IPv4, config.IPv6}, allocator.PreferDualStack
				r.RequestedIPs = []netip.Addr{netip.MustParseAddr("2001:db8::1")}
			}),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := requestFor(tc.svc, map[string]string{"team": "a"})
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{})); d != "" {
				t.Errorf("requestFor() (-want +got):\n%s", d)
			}
		})
	}
}

// TestCheckServiceMessages lists malformed berth annotations and spec.loadBalancerIP
// values with the exact message the user sees: berthctl check prints it, and
// berth-controller puts it in the InvalidAnnotation Event and the Allocated condition.
func TestCheckServiceMessages(t *testing.T) {
	const ann = AnnotationLoadBalancerIPs
	v4 := []corev1.IPFamily{corev1.IPv4Protocol}
	v6 := []corev1.IPFamily{corev1.IPv6Protocol}
	dual := []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	for _, tc := range []struct {
		name     string
		lbIP     string
		ips      *string // the annotation; nil: absent
		families []corev1.IPFamily
		policy   corev1.IPFamilyPolicy
		want     string
	}{
		{name: "word in the annotation", ips: ptr.To("198.18.2.200,nope"),
			want: `annotation berth.dev/load-balancer-ips: "nope" is not an IPv4 or IPv6 address`},
		{name: "IPv4-mapped spec.loadBalancerIP", lbIP: "::ffff:198.18.2.1",
			want: `spec.loadBalancerIP: "::ffff:198.18.2.1" is not an IPv4 or IPv6 address`},
		{name: "IPv4-mapped in the annotation", ips: ptr.To("::ffff:198.18.2.1"),
			want: `annotation berth.dev/load-balancer-ips: "::ffff:198.18.2.1" is not an IPv4 or IPv6 address`},
		{name: "empty annotation", ips: ptr.To(""),
			want: `annotation berth.dev/load-balancer-ips: "" is not an IPv4 or IPv6 address`},
		{name: "blank annotation", ips: ptr.To("  "),
			want: `annotation berth.dev/load-balancer-ips: "  " is not an IPv4 or IPv6 address`},
		{name: "trailing comma", ips: ptr.To("198.18.2.200,"),
			want: `annotation berth.dev/load-balancer-ips: "" is not an IPv4 or IPv6 address`},
		{name: "CIDR", ips: ptr.To("198.18.2.0/24"),
			want: `annotation berth.dev/load-balancer-ips: "198.18.2.0/24" is not an IPv4 or IPv6 address`},
		{name: "range", ips: ptr.To("198.18.2.10-198.18.2.20"),
			want: `annotation berth.dev/load-balancer-ips: "198.18.2.10-198.18.2.20" is not an IPv4 or IPv6 address`},
		{name: "separated by spaces", ips: ptr.To("198.18.2.1 2001:db8::1"), families: dual, policy: corev1.IPFamilyPolicyRequireDualStack,
			want: `annotation berth.dev/load-balancer-ips: "198.18.2.1 2001:db8::1" is not an IPv4 or IPv6 address`},
		{name: "separated by a semicolon", ips: ptr.To("198.18.2.1;2001:db8::1"), families: dual, policy: corev1.IPFamilyPolicyRequireDualStack,
			want: `annotation berth.dev/load-balancer-ips: "198.18.2.1;2001:db8::1" is not an IPv4 or IPv6 address`},
		{name: "with a port", ips: ptr.To("198.18.2.1:80"),
			want: `annotation berth.dev/load-balancer-ips: "198.18.2.1:80" is not an IPv4 or IPv6 address`},
		{name: "bracketed IPv6", ips: ptr.To("[2001:db8::1]"), families: v6,
			want: `annotation berth.dev/load-balancer-ips: "[2001:db8::1]" is not an IPv4 or IPv6 address`},
		{name: "zoned IPv6", lbIP: "fe80::1%eth0", families: v6,
			want: `spec.loadBalancerIP: "fe80::1%eth0" is not an IPv4 or IPv6 address`},
		{name: "leading zero", lbIP: "198.018.2.1",
			want: `spec.loadBalancerIP: "198.018.2.1" is not an IPv4 or IPv6 address`},
		{name: "too few octets", lbIP: "198.18.2",
			want: `spec.loadBalancerIP: "198.18.2" is not an IPv4 or IPv6 address`},
		{name: "hostname", lbIP: "lb.example.com",
			want: `spec.loadBalancerIP: "lb.example.com" is not an IPv4 or IPv6 address`},
		{name: "bad spec.loadBalancerIP reported before the annotation", lbIP: "nope", ips: ptr.To("nope either"),
			want: `spec.loadBalancerIP: "nope" is not an IPv4 or IPv6 address`},
		{name: "IPv6 for an IPv4 Service", ips: ptr.To("2001:db8::1"), families: v4,
			want: `annotation berth.dev/load-balancer-ips: 2001:db8::1 is IPv6, but the Service's IP families are [IPv4]`},
		{name: "IPv4 for an IPv6 Service", lbIP: "198.18.2.1", families: v6,
			want: `spec.loadBalancerIP: 198.18.2.1 is IPv4, but the Service's IP families are [IPv6]`},
		{name: "IPv6 for a Service without ipFamilies", ips: ptr.To("198.18.2.1,2001:db8::1"),
			want: `annotation berth.dev/load-balancer-ips: 2001:db8::1 is IPv6, but the Service's IP families are [IPv4]`},
		{name: "second family for PreferDualStack in a single-stack cluster", ips: ptr.To("198.18.2.1,2001:db8::1"),
			families: v4, policy: corev1.IPFamilyPolicyPreferDualStack,
			want: `annotation berth.dev/load-balancer-ips: 2001:db8::1 is IPv6, but the Service's IP families are [IPv4]`},
		{name: "two IPv4 addresses", ips: ptr.To("198.18.2.1, 198.18.2.2"),
			want: `annotation berth.dev/load-balancer-ips: 198.18.2.1 and 198.18.2.2 are both IPv4; at most one address per family`},
		{name: "two IPv6 addresses, dual-stack", ips: ptr.To("2001:db8::1,198.18.2.1,2001:db8::2"),
			families: dual, policy: corev1.IPFamilyPolicyRequireDualStack,
			want: `annotation berth.dev/load-balancer-ips: 2001:db8::1 and 2001:db8::2 are both IPv6; at most one address per family`},
		{name: "spec.loadBalancerIP and the annotation disagree", lbIP: "198.18.2.1", ips: ptr.To("198.18.2.2"),
			want: `annotation berth.dev/load-balancer-ips: spec.loadBalancerIP 198.18.2.1 and 198.18.2.2 are both IPv4; at most one address per family`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
				Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerIP: tc.lbIP, IPFamilies: tc.families},
			}
			if tc.policy != "" {
				svc.Spec.IPFamilyPolicy = &tc.policy
			}
			if tc.ips != nil {
				svc.Annotations = map[string]string{ann: *tc.ips}
			}
			err := CheckService(svc)
			if err == nil || err.Error() != tc.want {
				t.Errorf("CheckService() = %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestIngressFor(t *testing.T) {
	got := ingressFor(allocator.Assignment{Pool: "p", IPMode: "Proxy",
		IPs: []netip.Addr{netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("198.18.2.5")}})
	want := &corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
		{IP: "2001:db8::5", IPMode: ptr.To(corev1.LoadBalancerIPModeProxy)},
		{IP: "198.18.2.5", IPMode: ptr.To(corev1.LoadBalancerIPModeProxy)},
	}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ingressFor() (-want +got):\n%s", d)
	}
}
