package inspect

import (
	"bytes"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

// TestExplain covers the reasons a node does not announce: excluded, seen dead by the
// others, its L2 interface down, and (eTP Local) no endpoint; and the what-if.
func TestExplain(t *testing.T) {
	node := func(name string, labels map[string]string) corev1.Node {
		return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	}
	ann := func(name string, ifaces []string, members ...string) v1alpha1.NodeAnnouncement {
		return v1alpha1.NodeAnnouncement{ObjectMeta: metav1.ObjectMeta{Name: name},
			Status: v1alpha1.NodeAnnouncementStatus{DecisionVersion: 1, Members: members, L2Interfaces: ifaces}}
	}
	svc := lb("shop", "web", []string{"198.18.2.200"}, corev1.LoadBalancerIPModeVIP)
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	endpoint := func(node string) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{NodeName: ptr.To(node), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true)}}
	}
	in := ExplainInput{
		Service: &svc,
		Slices: []discoveryv1.EndpointSlice{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1"},
			Endpoints: []discoveryv1.Endpoint{endpoint("a"), endpoint("b"), endpoint("c"), endpoint("d")}}},
		Nodes: []corev1.Node{node("a", nil), node("b", nil), node("c", nil), node("d", nil),
			node("e", map[string]string{"node.kubernetes.io/exclude-from-external-load-balancers": ""})},
		Announcements: []v1alpha1.NodeAnnouncement{
			ann("a", []string{"eth1"}, "a", "b", "c"),
			ann("b", []string{"eth1"}, "a", "b", "c"),
			ann("c", nil, "a", "b", "c"),                   // eth1 down
			ann("d", []string{"eth1"}, "a", "b", "c", "d"), // the others see d dead
			ann("e", []string{"eth1"}, "a", "b", "c", "e"),
		},
		Resources: config.Resources{
			Pools: []v1alpha1.IPPool{
				{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.18.2.192/26"}, AutoAssign: ptr.To(true)}},
				{ObjectMeta: metav1.ObjectMeta{Name: "edge"}, Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.18.3.0/24"}, AutoAssign: ptr.To(true),
					ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "edge"}}}},
				{ObjectMeta: metav1.ObjectMeta{Name: "spare"}, Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.18.4.0/24"}, AutoAssign: ptr.To(false)}},
			},
			L2Advertisements: []v1alpha1.L2Advertisement{{ObjectMeta: metav1.ObjectMeta{Name: "lan"},
				Spec: v1alpha1.L2AdvertisementSpec{AdvertisementTarget: v1alpha1.AdvertisementTarget{IPPools: []v1alpha1.ObjectName{"lan"}}, Interfaces: []v1alpha1.InterfaceName{"eth1"}}}},
		},
		Classes: Classes{LoadBalancerClass: "berth.dev/lb", HandleDefaultClass: true},
	}
	var buf bytes.Buffer
	if err := WriteExplanation(&buf, FormatTable, Explain(in)); err != nil {
		t.Fatal(err)
	}
	golden(t, "explain.golden", buf.String())

	svc.Spec.Type = corev1.ServiceTypeNodePort
	buf.Reset()
	_ = WriteExplanation(&buf, FormatTable, Explain(in))
	golden(t, "explain-not-handled.golden", buf.String())
}
