package speaker

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestEndpointFrom(t *testing.T) {
	for _, tc := range []struct {
		name                        string
		ready, serving, terminating *bool
		node                        *string
		want                        Endpoint
	}{
		{name: "nil conditions mean ready and serving", node: ptr.To("n1"),
			want: Endpoint{Node: "n1", Ready: true, Serving: true}},
		{name: "not ready, not serving", ready: ptr.To(false), serving: ptr.To(false), node: ptr.To("n1"),
			want: Endpoint{Node: "n1"}},
		{name: "terminating and serving", ready: ptr.To(false), serving: ptr.To(true), terminating: ptr.To(true), node: ptr.To("n1"),
			want: Endpoint{Node: "n1", Serving: true, Terminating: true}},
		{name: "terminating, no serving field: falls back to ready", ready: ptr.To(false), terminating: ptr.To(true),
			want: Endpoint{Terminating: true}},
		{name: "ready but terminating is not ready", ready: ptr.To(true), terminating: ptr.To(true),
			want: Endpoint{Serving: true, Terminating: true}},
		{name: "without nodeName", want: Endpoint{Ready: true, Serving: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := discoveryv1.Endpoint{NodeName: tc.node, Conditions: discoveryv1.EndpointConditions{
				Ready: tc.ready, Serving: tc.serving, Terminating: tc.terminating}}
			if diff := cmp.Diff(tc.want, endpointFrom(&e)); diff != "" {
				t.Errorf("endpointFrom (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNodeFrom(t *testing.T) {
	plain := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"zone": "a"}}}
	labelled := plain.DeepCopy()
	labelled.Labels[ExcludeLabel] = ""
	noNet := plain.DeepCopy()
	noNet.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue}}
	netOK := plain.DeepCopy()
	netOK.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse}}
	for _, tc := range []struct {
		name     string
		node     *corev1.Node
		excluded bool
	}{
		{"plain", plain, false},
		{"exclude label, any value", labelled, true},
		{"network unavailable", noNet, true},
		{"network available", netOK, false},
	} {
		if got := NodeFrom(tc.node).Excluded; got != tc.excluded {
			t.Errorf("%s: Excluded = %v, want %v", tc.name, got, tc.excluded)
		}
	}
	heartbeat := plain.DeepCopy()
	heartbeat.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if !SameNode(NodeFrom(plain), NodeFrom(heartbeat)) {
		t.Errorf("a heartbeat changes how the node decides")
	}
	if SameNode(NodeFrom(plain), NodeFrom(labelled)) {
		t.Errorf("the exclude label does not change how the node decides")
	}
}

func TestClassesAndServiceFrom(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", Labels: map[string]string{"app": "web"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			LoadBalancerSourceRanges: []string{"198.51.100.0/24", " 2001:db8::/32 ", "garbage"},
			Ports:                    []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30080}}},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
			{IP: "198.18.2.193"}, {Hostname: "lb.example"}, {IP: "2001:db8:18:2::1:5"}}}},
	}
	berth := Classes{LoadBalancerClass: "berth.dev/lb", HandleDefaultClass: true}
	if !berth.Handles(svc) {
		t.Errorf("a class-less Service with an IP is not handled with HandleDefaultClass")
	}
	if (Classes{LoadBalancerClass: "berth.dev/lb"}).Handles(svc) {
		t.Errorf("a class-less Service is handled without HandleDefaultClass")
	}
	other := svc.DeepCopy()
	other.Spec.LoadBalancerClass = ptr.To("other.example/lb")
	if berth.Handles(other) {
		t.Errorf("another provider's Service is handled")
	}
	pending := svc.DeepCopy()
	pending.Status.LoadBalancer.Ingress = nil
	if berth.Handles(pending) {
		t.Errorf("a Service without an IP is handled")
	}

	httpPort := []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}}
	slices := []*discoveryv1.EndpointSlice{
		{Endpoints: []discoveryv1.Endpoint{{NodeName: ptr.To("n1"), Addresses: []string{"198.19.1.2"}}}, Ports: httpPort},
		{Endpoints: []discoveryv1.Endpoint{
			{NodeName: ptr.To("n2"), Addresses: []string{"198.19.2.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
			{NodeName: ptr.To("n1"), Addresses: []string{"198.19.1.3"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}},
			{NodeName: ptr.To("n1"), Addresses: []string{"198.19.1.4"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}}, // neither
		}, Ports: httpPort},
	}
	got := ServiceFrom(svc, slices, "n1")
	want := Service{Namespace: "ns", Name: "web", Labels: map[string]string{"app": "web"}, TrafficPolicy: TrafficPolicyLocal,
		Ingress: ingress("198.18.2.193", "2001:db8:18:2::1:5"), Ports: []Port{{Name: "http", Protocol: "TCP", Port: 80, NodePort: 30080}},
		Endpoints:    []Endpoint{{Node: "n1", Ready: true, Serving: true}, {Node: "n2"}, {Node: "n1", Serving: true, Terminating: true}, {Node: "n1"}},
		SourceRanges: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("::/128")},
		// This node's serving endpoints, with their addresses.
		Local: []LocalEndpoint{
			{PortName: "http", Addr: netip.MustParseAddrPort("198.19.1.2:8080"), Ready: true},
			{PortName: "http", Addr: netip.MustParseAddrPort("198.19.1.3:8080")},
		}}
	if diff := cmp.Diff(want, got, decisionOpts()); diff != "" {
		t.Errorf("ServiceFrom (-want +got):\n%s", diff)
	}
}
