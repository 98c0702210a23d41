package agent

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// writeStatus reports the pod Running with its IPs and readiness, writing only when
// something changed.
func (a *Agent) writeStatus(ctx context.Context, pod *corev1.Pod, sb *sandbox) error {
	key := cache.MetaObjectToName(pod)
	a.mu.Lock()
	ready := !a.notReady[key]
	a.mu.Unlock()
	status := podStatus(pod, sb, a.node.Addrs, ready, metav1.Now().Rfc3339Copy())
	if apiequality.Semantic.DeepEqual(pod.Status, status) {
		return nil
	}
	p := pod.DeepCopy() // the lister's copy is shared
	p.Status = status
	if _, err := a.cfg.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("status of pod %s: %w", key, err)
	}
	klog.FromContext(ctx).V(4).Info("Pod status written", "pod", klog.KObj(pod), "ready", ready, "running", !sb.echo.Exited())
	return nil
}

// podStatus is the status kubelet would report for a pod with one running container per
// spec container, all served by the echo server. Conditions keep their transition time
// while their status stays, so an unchanged pod compares equal.
func podStatus(pod *corev1.Pod, sb *sandbox, hostIPs []netip.Addr, ready bool, now metav1.Time) corev1.PodStatus {
	st := *pod.Status.DeepCopy() // keeps what others own: qosClass, the scheduler's condition
	running := !sb.echo.Exited()
	ready = ready && running
	st.Phase = corev1.PodRunning
	st.Message, st.Reason = "", ""
	st.StartTime = &sb.started
	st.HostIP, st.HostIPs = hostIPs[0].String(), nil
	for _, ip := range hostIPs {
		st.HostIPs = append(st.HostIPs, corev1.HostIP{IP: ip.String()})
	}
	st.PodIP, st.PodIPs = sb.ips[0].String(), nil
	for _, ip := range sb.ips {
		st.PodIPs = append(st.PodIPs, corev1.PodIP{IP: ip.String()})
	}
	notReady := ""
	if !ready {
		notReady = "ContainersNotReady"
	}
	if !hasCondition(st, corev1.PodScheduled) { // the scheduler's, unless the pod named its node
		setCondition(&st, corev1.PodScheduled, true, "", now)
	}
	setCondition(&st, corev1.PodReadyToStartContainers, true, "", now)
	setCondition(&st, corev1.PodInitialized, true, "", now)
	setCondition(&st, corev1.ContainersReady, ready, notReady, now)
	setCondition(&st, corev1.PodReady, ready, notReady, now)

	old := map[string]corev1.ContainerStatus{}
	for _, c := range pod.Status.ContainerStatuses {
		old[c.Name] = c
	}
	st.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		cs := corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ImageID:     c.Image,
			ContainerID: "berth-lab://" + strconv.Itoa(sb.echo.PID()),
			Ready:       ready,
			Started:     &running,
		}
		if running {
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: sb.started}
		} else {
			code := int32(-1)
			if ps := sb.echo.State(); ps != nil {
				code = int32(ps.ExitCode())
			}
			// The first time seen is the finish time; keep it across later writes.
			finished := now
			if o, ok := old[c.Name]; ok && o.State.Terminated != nil {
				finished = o.State.Terminated.FinishedAt
			}
			cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: code, Reason: "Error",
				StartedAt: sb.started, FinishedAt: finished, ContainerID: cs.ContainerID}
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	return st
}

// setCondition sets a pod condition, keeping its transition time when the status stays.
func setCondition(st *corev1.PodStatus, typ corev1.PodConditionType, ok bool, reason string, now metav1.Time) {
	status := corev1.ConditionFalse
	if ok {
		status = corev1.ConditionTrue
	}
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type != typ {
			continue
		}
		if c.Status != status {
			c.Status, c.LastTransitionTime = status, now
		}
		c.Reason, c.Message = reason, ""
		return
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: typ, Status: status, Reason: reason, LastTransitionTime: now})
}

func hasCondition(st corev1.PodStatus, typ corev1.PodConditionType) bool {
	for _, c := range st.Conditions {
		if c.Type == typ {
			return true
		}
	}
	return false
}
