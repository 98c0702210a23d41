package controller

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/controller/allocator"
)

// ConditionProxyNodePorts is set on Services whose IPs are ipMode Proxy: berth's speakers
// deliver their traffic to this node's endpoints and to the other nodes' NodePorts. False
// when an externalTrafficPolicy: Cluster Service has no NodePorts
// (allocateLoadBalancerNodePorts: false), so that only endpoints on the receiving node
// can be reached.
const ConditionProxyNodePorts = "berth.dev/ProxyNodePorts"

// Reasons of ConditionProxyNodePorts; EventProxyWithoutNodePorts is also a Warning Event.
const (
	ReasonNodePortsAllocated   = "NodePortsAllocated"
	ReasonNodePortsNotNeeded   = "NodePortsNotNeeded"
	EventProxyWithoutNodePorts = "ProxyWithoutNodePorts"
)

// proxyNodePorts decides ConditionProxyNodePorts for a Service holding a; ok is false when
// its IPs are not Proxy mode and the Service must not carry the condition.
func proxyNodePorts(svc *corev1.Service, a allocator.Assignment) (c metav1.Condition, ok bool) {
	if a.IPMode != v1alpha1.IPModeProxy || len(a.IPs) == 0 {
		return c, false
	}
	c = metav1.Condition{Type: ConditionProxyNodePorts, Status: metav1.ConditionTrue, Reason: ReasonNodePortsAllocated,
		Message: "connections go to endpoints on the node they arrive at and to the other nodes' NodePorts"}
	if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		c.Reason, c.Message = ReasonNodePortsNotNeeded, "externalTrafficPolicy Local: connections go to endpoints on the node they arrive at"
		return c, true
	}
	for _, p := range svc.Spec.Ports {
		if p.NodePort == 0 {
			c.Status, c.Reason = metav1.ConditionFalse, EventProxyWithoutNodePorts
			c.Message = "ipMode Proxy with allocateLoadBalancerNodePorts false: port " + p.Name + " has no NodePort, so connections reach only endpoints on the node they arrive at; allocate NodePorts or use externalTrafficPolicy Local"
			if p.Name == "" {
				c.Message = "ipMode Proxy with allocateLoadBalancerNodePorts false: without NodePorts connections reach only endpoints on the node they arrive at; allocate NodePorts or use externalTrafficPolicy Local"
			}
			return c, true
		}
	}
	return c, true
}

// setProxyCondition writes or clears ConditionProxyNodePorts, with a Warning Event when
// it turns False.
func (l *LoadBalancer) setProxyCondition(ctx context.Context, svc *corev1.Service, a allocator.Assignment) error {
	c, ok := proxyNodePorts(svc, a)
	if !ok {
		return l.conditions.clear(ctx, svc, ConditionProxyNodePorts)
	}
	wrote, err := l.conditions.set(ctx, svc, c)
	if wrote && c.Status == metav1.ConditionFalse {
		l.recorder.Event(svc, corev1.EventTypeWarning, EventProxyWithoutNodePorts, c.Message)
	}
	return err
}
