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
		name    string
		svc     *corev1.Service
		want    allocator.Request
		wantErr string
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
			}),
			want: want(func(r *allocator.Request) {
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
			name: "garbage in the annotation",
			svc: base(func(s *corev1.Service) {
				s.Annotations = map[string]string{AnnotationLoadBalancerIPs: "198.18.2.200,nope"}
			}),
			wantErr: `annotation berth.dev/load-balancer-ips: "nope" is not an IPv4 or IPv6 address`,
		},
		{
			name:    "IPv4-mapped spec.loadBalancerIP",
			svc:     base(func(s *corev1.Service) { s.Spec.LoadBalancerIP = "::ffff:198.18.2.1" }),
			wantErr: `spec.loadBalancerIP: "::ffff:198.18.2.1" is not an IPv4 or IPv6 address`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := requestFor(tc.svc, map[string]string{"team": "a"})
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("requestFor() error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{})); d != "" {
				t.Errorf("requestFor() (-want +got):\n%s", d)
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
