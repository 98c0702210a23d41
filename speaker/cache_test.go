package speaker

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// TestCacheKeepsDecisions: the speaker's caches keep of a Service and its EndpointSlices
// what ServiceFrom reads, so that the cached Service decides as the API objects do.
func TestCacheKeepsDecisions(t *testing.T) {
	local := corev1.ServiceExternalTrafficPolicyLocal
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", Labels: map[string]string{"tier": "front"},
			Annotations: map[string]string{"berth.dev/pool": "lan"}, Finalizers: []string{"service.kubernetes.io/load-balancer-cleanup"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
			Selector: map[string]string{"app": "web"}, ExternalTrafficPolicy: local, LoadBalancerSourceRanges: []string{"198.51.100.0/24"},
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30080},
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, NodePort: 30053}}},
		Status: corev1.ServiceStatus{
			LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "198.18.2.193"}, {IP: "2001:db8::7"}, {Hostname: "lb.example"}}},
			Conditions:   []metav1.Condition{{Type: "berth.dev/Allocated", Status: metav1.ConditionTrue, Reason: "IPAllocated", Message: "198.18.2.193 from pool lan"}},
		},
	}
	other := svc.DeepCopy()
	other.Name, other.Spec.LoadBalancerClass = "elsewhere", ptr.To("example.com/lb")
	pending := svc.DeepCopy()
	pending.Name, pending.Status = "pending", corev1.ServiceStatus{}
	slice := func(name, node string, addrs ...string) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: addrs, NodeName: ptr.To(node), Zone: ptr.To("z1"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true)}},
				{Addresses: []string{"198.19.9.9"}, NodeName: ptr.To("b"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false), Terminating: ptr.To(true)}},
			},
			Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)},
				{Name: ptr.To("dns"), Port: ptr.To[int32](5353), Protocol: ptr.To(corev1.ProtocolUDP)}},
		}
	}
	classes := Classes{HandleDefaultClass: true}
	opts := cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}, netip.AddrPort{})
	key := types.NamespacedName{Namespace: "ns", Name: "web"}
	for _, tc := range []struct {
		name   string
		slices []*discoveryv1.EndpointSlice
	}{
		{"no slice", nil},
		{"one slice", []*discoveryv1.EndpointSlice{slice("web-1", "a", "198.19.1.2", "198.19.1.3")}},
		{"two slices", []*discoveryv1.EndpointSlice{slice("web-1", "a", "198.19.1.3"), slice("web-2", "a", "198.19.1.2", "198.19.1.3")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := ServiceFrom(svc, tc.slices, "a")
			services, slices := newCaches()
			transform := cacheObject("a", classes)
			for _, o := range []any{svc.DeepCopy(), other.DeepCopy(), pending.DeepCopy()} {
				if err := services.Add(must(transform(o))); err != nil {
					t.Fatal(err)
				}
			}
			for _, es := range tc.slices {
				if err := slices.Add(must(transform(es.DeepCopy()))); err != nil {
					t.Fatal(err)
				}
			}
			src := informerSource{services: services, slices: slices}
			got, ok := src.Service(key)
			if !ok {
				t.Fatalf("the cache does not hand out %v", key)
			}
			if diff := cmp.Diff(want, got, opts); diff != "" {
				t.Errorf("cached Service (-from the API objects +from the cache):\n%s", diff)
			}
			if diff := cmp.Diff([]types.NamespacedName{key}, src.Keys()); diff != "" {
				t.Errorf("Keys (-want +got):\n%s", diff)
			}
			for _, name := range []string{"elsewhere", "pending"} {
				if _, ok := src.Service(types.NamespacedName{Namespace: "ns", Name: name}); ok {
					t.Errorf("the cache hands out %s, which berth does not announce", name)
				}
			}
			// What the cache hands out is shared: a second read sees the same.
			again, _ := src.Service(key)
			if diff := cmp.Diff(want, again, opts); diff != "" {
				t.Errorf("second read (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCacheTransformIdempotent: client-go may hand the transform an object it already
// transformed; it must come back unchanged.
func TestCacheTransformIdempotent(t *testing.T) {
	transform := cacheObject("a", Classes{HandleDefaultClass: true})
	svc := must(transform(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}}))
	if again := must(transform(svc)); again != svc {
		t.Errorf("transform changed a cached Service: %#v", again)
	}
	es := must(transform(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-1"}}))
	if again := must(transform(es)); again != es {
		t.Errorf("transform changed a cached slice: %#v", again)
	}
}
