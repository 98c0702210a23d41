package agent

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// KubeletVersion is what the Node reports as its kubelet's version: the control plane's.
const KubeletVersion = "v1.37.2"

// capacity is what every lab node offers the scheduler: enough that placement is never
// limited by resources, only by what the test asks for.
func capacity() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("8"),
		corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
	}
}

// leaseDuration is the node Lease's duration, kubelet's default.
const leaseDuration = 40

// register creates the Node (or takes over an existing one) with its pod CIDRs and labels,
// then writes its status.
func (a *Agent) register(ctx context.Context) error {
	nodes := a.cfg.Client.CoreV1().Nodes()
	want := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: a.node.Name, Labels: a.labels()}}
	for _, p := range a.node.PodCIDRs {
		want.Spec.PodCIDRs = append(want.Spec.PodCIDRs, p.String())
	}
	want.Spec.PodCIDR = want.Spec.PodCIDRs[0]
	_, err := nodes.Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		var cur *corev1.Node
		if cur, err = nodes.Get(ctx, a.node.Name, metav1.GetOptions{}); err == nil {
			n := cur.DeepCopy()
			if n.Labels == nil {
				n.Labels = map[string]string{}
			}
			maps.Copy(n.Labels, want.Labels)
			if len(n.Spec.PodCIDRs) == 0 { // immutable once set
				n.Spec.PodCIDR, n.Spec.PodCIDRs = want.Spec.PodCIDR, want.Spec.PodCIDRs
			}
			_, err = nodes.Update(ctx, n, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		return fmt.Errorf("register node %s: %w", a.node.Name, err)
	}
	if err := a.writeNodeStatus(ctx); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Node registered", "addresses", a.node.Addrs)
	return nil
}

func (a *Agent) labels() map[string]string {
	l := map[string]string{
		corev1.LabelHostname:   a.node.Name,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: runtime.GOARCH,
	}
	maps.Copy(l, a.node.Labels)
	return l
}

// heartbeat renews the node's Lease and Ready condition every Heartbeat, and writes the
// Ready condition at once when SetNodeReady changes it.
func (a *Agent) heartbeat(ctx context.Context) {
	logger := klog.FromContext(ctx)
	t := time.NewTicker(a.cfg.Heartbeat)
	defer t.Stop()
	for {
		if err := a.renewLease(ctx); err != nil && ctx.Err() == nil {
			logger.Error(err, "Lease renewal failed")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.kick:
		}
		if err := a.writeNodeStatus(ctx); err != nil && ctx.Err() == nil {
			logger.Error(err, "Node status update failed")
		}
	}
}

// writeNodeStatus writes addresses, capacity, conditions and node info, with a fresh
// heartbeat on every condition.
func (a *Agent) writeNodeStatus(ctx context.Context) error {
	nodes := a.cfg.Client.CoreV1().Nodes()
	cur, err := nodes.Get(ctx, a.node.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("status of node %s: %w", a.node.Name, err)
	}
	a.mu.Lock()
	ready := a.nodeReady
	a.mu.Unlock()
	n := cur.DeepCopy()
	now := metav1.Now()
	st := &n.Status
	st.Addresses = nil
	for _, ip := range a.node.Addrs {
		st.Addresses = append(st.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip.String()})
	}
	st.Addresses = append(st.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: a.node.Name})
	st.Capacity, st.Allocatable = capacity(), capacity()
	st.NodeInfo = corev1.NodeSystemInfo{
		KubeletVersion: KubeletVersion, OperatingSystem: "linux", Architecture: runtime.GOARCH,
		ContainerRuntimeVersion: "berth-lab://1", OSImage: "berth lab",
	}
	st.DaemonEndpoints.KubeletEndpoint.Port = 10250 // nothing listens: there are no logs or exec
	readyReason, readyMsg := "KubeletReady", "kubelet is posting ready status"
	if !ready {
		readyReason, readyMsg = "KubeletNotReady", "the lab made this node not ready"
	}
	setNodeCondition(st, corev1.NodeReady, ready, readyReason, readyMsg, now)
	for _, typ := range []corev1.NodeConditionType{corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure} {
		setNodeCondition(st, typ, false, "KubeletHasNo"+string(typ), "", now)
	}
	n, err = nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("status of node %s: %w", a.node.Name, err)
	}
	return a.writeNotReadyTaint(ctx, n, ready)
}

// notReadyTaint is what the TaintNodesByCondition admission plugin puts on every new Node
// and node-lifecycle-controller keeps in line with the Ready condition. The lab runs no
// such controller (it would evict every pod), so the agent does that part of its job.
func notReadyTaint() corev1.Taint {
	return corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}
}

// writeNotReadyTaint sets or clears the not-ready taint, writing only on a change.
func (a *Agent) writeNotReadyTaint(ctx context.Context, n *corev1.Node, ready bool) error {
	taint := notReadyTaint()
	isNotReady := func(t corev1.Taint) bool { return t.MatchTaint(&taint) }
	has := slices.ContainsFunc(n.Spec.Taints, isNotReady)
	if has != ready {
		return nil
	}
	n = n.DeepCopy()
	if ready {
		n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, isNotReady)
	} else {
		taint.TimeAdded = ptr.To(metav1.Now())
		n.Spec.Taints = append(n.Spec.Taints, taint)
	}
	if _, err := a.cfg.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("taints of node %s: %w", a.node.Name, err)
	}
	return nil
}

func setNodeCondition(st *corev1.NodeStatus, typ corev1.NodeConditionType, ok bool, reason, msg string, now metav1.Time) {
	status := corev1.ConditionFalse
	if ok {
		status = corev1.ConditionTrue
	}
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type == typ {
			if c.Status != status {
				c.LastTransitionTime = now
			}
			c.Status, c.Reason, c.Message, c.LastHeartbeatTime = status, reason, msg, now
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.NodeCondition{Type: typ, Status: status, Reason: reason,
		Message: msg, LastHeartbeatTime: now, LastTransitionTime: now})
}

// renewLease creates or renews the node's Lease in kube-node-lease, as kubelet does.
func (a *Agent) renewLease(ctx context.Context) error {
	leases := a.cfg.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NowMicro()
	l, err := leases.Get(ctx, a.node.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		node, err := a.cfg.Client.CoreV1().Nodes().Get(ctx, a.node.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("lease of node %s: %w", a.node.Name, err)
		}
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: a.node.Name, Namespace: corev1.NamespaceNodeLease,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(a.node.Name),
				LeaseDurationSeconds: ptr.To[int32](leaseDuration), RenewTime: &now},
		}
		_, err = leases.Create(ctx, l, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("lease of node %s: %w", a.node.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("lease of node %s: %w", a.node.Name, err)
	}
	l.Spec.RenewTime = &now
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("lease of node %s: %w", a.node.Name, err)
	}
	return nil
}
