package controller

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/controller/allocator"
)

func TestProxyNodePorts(t *testing.T) {
	proxy := allocator.Assignment{Pool: "p", IPs: []netip.Addr{netip.MustParseAddr("198.51.100.1")}, IPMode: v1alpha1.IPModeProxy}
	vip := proxy
	vip.IPMode = v1alpha1.IPModeVIP
	svc := func(etp corev1.ServiceExternalTrafficPolicy, nodePort int32) *corev1.Service {
		return &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: etp,
			AllocateLoadBalancerNodePorts: ptr.To(nodePort != 0),
			Ports:                         []corev1.ServicePort{{Name: "http", Port: 80, NodePort: nodePort}}}}
	}
	for _, tt := range []struct {
		name   string
		svc    *corev1.Service
		a      allocator.Assignment
		ok     bool
		status metav1.ConditionStatus
		reason string
	}{
		{"VIP: no condition", svc(corev1.ServiceExternalTrafficPolicyCluster, 0), vip, false, "", ""},
		{"Proxy with NodePorts", svc(corev1.ServiceExternalTrafficPolicyCluster, 30080), proxy, true, metav1.ConditionTrue, ReasonNodePortsAllocated},
		{"Proxy without NodePorts", svc(corev1.ServiceExternalTrafficPolicyCluster, 0), proxy, true, metav1.ConditionFalse, EventProxyWithoutNodePorts},
		{"Proxy, Local, without NodePorts", svc(corev1.ServiceExternalTrafficPolicyLocal, 0), proxy, true, metav1.ConditionTrue, ReasonNodePortsNotNeeded},
	} {
		c, ok := proxyNodePorts(tt.svc, tt.a)
		if ok != tt.ok || c.Status != tt.status || c.Reason != tt.reason {
			t.Errorf("%s: %+v, %t; want %s %s, %t", tt.name, c, ok, tt.status, tt.reason, tt.ok)
		}
	}
}
