//go:build integration && privileged

package agent_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/agent"
	"github.com/berthlb/berth/lab/controlplane"
	"github.com/berthlb/berth/lab/echo"
	"github.com/berthlb/berth/lab/netns"
)

const testNS = "web"

func createNamespace(t *testing.T, c kubernetes.Interface) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}}
	if _, err := c.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// echoService selects app=<app> on TCP and UDP port 80 → 8080, on both families.
func echoService(name, app string, typ corev1.ServiceType, etp corev1.ServiceExternalTrafficPolicy) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS},
		Spec: corev1.ServiceSpec{
			Type:           typ,
			Selector:       map[string]string{"app": app},
			IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyRequireDualStack),
			Ports: []corev1.ServicePort{
				{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)},
				{Name: "udp", Protocol: corev1.ProtocolUDP, Port: 80, TargetPort: intstr.FromInt32(8080)},
			},
		},
	}
	if typ == corev1.ServiceTypeNodePort {
		svc.Spec.ExternalTrafficPolicy = etp
	}
	return svc
}

func podSpec() corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{
		Name: "echo", Image: "berth.dev/lab-echo",
		Ports: []corev1.ContainerPort{{ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
	}}}
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readyPods lists the Running, Ready, not deleted pods of app with IPs of both families.
func readyPods(ctx context.Context, c kubernetes.Interface, app string) ([]corev1.Pod, string) {
	pods, err := c.CoreV1().Pods(testNS).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil, err.Error()
	}
	var ready []corev1.Pod
	var seen []string
	for _, p := range pods.Items {
		seen = append(seen, fmt.Sprintf("%s(%s ready=%t ips=%v node=%s)", p.Name, p.Status.Phase, isReady(&p), p.Status.PodIPs, p.Spec.NodeName))
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && isReady(&p) && len(p.Status.PodIPs) == 2 {
			ready = append(ready, p)
		}
	}
	return ready, strings.Join(seen, ", ")
}

// slices returns the ready endpoint addresses of a Service's EndpointSlices, per family.
func sliceEndpoints(ctx context.Context, c kubernetes.Interface, svc string) (map[discoveryv1.AddressType][]string, error) {
	list, err := c.DiscoveryV1().EndpointSlices(testNS).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return nil, err
	}
	out := map[discoveryv1.AddressType][]string{}
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			state := "ready"
			if e.Conditions.Ready == nil || !*e.Conditions.Ready {
				state = "unready"
			}
			out[s.AddressType] = append(out[s.AddressType], fmt.Sprintf("%s@%s:%s", e.Addresses[0], ptr.Deref(e.NodeName, ""), state))
		}
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out, nil
}

// wantEndpoints is what sliceEndpoints should return for pods, with the pods in unready
// marked so.
func wantEndpoints(pods []corev1.Pod, unready map[string]bool) map[discoveryv1.AddressType][]string {
	out := map[discoveryv1.AddressType][]string{}
	for _, p := range pods {
		state := "ready"
		if unready[p.Name] {
			state = "unready"
		}
		for _, ip := range p.Status.PodIPs {
			typ := discoveryv1.AddressTypeIPv4
			if netip.MustParseAddr(ip.IP).Is6() {
				typ = discoveryv1.AddressTypeIPv6
			}
			out[typ] = append(out[typ], fmt.Sprintf("%s@%s:%s", ip.IP, p.Spec.NodeName, state))
		}
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out
}

// TestDeployment: a Deployment of 3 replicas becomes 3 Ready Pods, each in its own
// namespace on its node's bridge, with EndpointSlices for a Service; failing a pod's
// readiness turns its endpoints unready; scaling to 1 replica removes the other Pods and
// their namespaces and echo servers.
func TestDeployment(t *testing.T) {
	s := newSite(t, 2, false)
	c := s.cp.Client
	ctx := t.Context()
	createNamespace(t, c)
	if _, err := c.CoreV1().Services(testNS).Create(ctx, echoService("web", "web", corev1.ServiceTypeClusterIP, ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: testNS},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       podSpec(),
			},
		},
	}
	if _, err := c.AppsV1().Deployments(testNS).Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	took := lab.Eventually(t, 30*time.Second, "3 ready pods", func(ctx context.Context) (string, bool) {
		var seen string
		pods, seen = readyPods(ctx, c, "web")
		return seen, len(pods) == 3
	})
	t.Logf("Deployment created → 3 Ready pods in %v", took.Round(time.Millisecond))

	// Each pod runs in its own namespace with the addresses the API reports.
	running := map[string]agent.Pod{}
	for _, a := range s.agents {
		for _, p := range a.Pods() {
			running[p.Name] = p
		}
	}
	for _, p := range pods {
		r, ok := running[p.Name]
		if !ok || !r.NS.Exists() || r.Process.Exited() {
			t.Errorf("pod %s: agent runs %+v", p.Name, r)
			continue
		}
		node := s.net.Node(p.Spec.NodeName)
		for _, ip := range p.Status.PodIPs {
			a := netip.MustParseAddr(ip.IP)
			if !node.PodCIDR4.Contains(a) && !node.PodCIDR6.Contains(a) {
				t.Errorf("pod %s on %s: IP %s outside the node's pod CIDRs", p.Name, node.Name, a)
			}
		}
		addrs, err := r.NS.Addrs(ctx, agent.PodDev)
		if err != nil || len(addrs) != 2 {
			t.Errorf("pod %s: addresses in its namespace %v, %v", p.Name, addrs, err)
		}
	}

	took = lab.Eventually(t, 10*time.Second, "EndpointSlices of web", func(ctx context.Context) (string, bool) {
		got, err := sliceEndpoints(ctx, c, "web")
		if err != nil {
			return err.Error(), false
		}
		return fmt.Sprint(got), fmt.Sprint(got) == fmt.Sprint(wantEndpoints(pods, nil))
	})
	t.Logf("EndpointSlices complete %v after the pods were ready", took.Round(time.Millisecond))

	// Readiness fails on demand, and the endpoints follow.
	victim := pods[0]
	s.agents[victim.Spec.NodeName].SetReady(testNS, victim.Name, false)
	took = lab.Eventually(t, 10*time.Second, "endpoints of "+victim.Name+" unready", func(ctx context.Context) (string, bool) {
		got, err := sliceEndpoints(ctx, c, "web")
		if err != nil {
			return err.Error(), false
		}
		return fmt.Sprint(got), fmt.Sprint(got) == fmt.Sprint(wantEndpoints(pods, map[string]bool{victim.Name: true}))
	})
	t.Logf("SetReady(false) → endpoint unready in %v", took.Round(time.Millisecond))
	s.agents[victim.Spec.NodeName].SetReady(testNS, victim.Name, true)
	lab.Eventually(t, 10*time.Second, "endpoints of "+victim.Name+" ready again", func(ctx context.Context) (string, bool) {
		got, err := sliceEndpoints(ctx, c, "web")
		if err != nil {
			return err.Error(), false
		}
		return fmt.Sprint(got), fmt.Sprint(got) == fmt.Sprint(wantEndpoints(pods, nil))
	})

	// Scale to 1: two Pods go, with their namespaces and servers.
	patch := []byte(`{"spec":{"replicas":1}}`)
	if _, err := c.AppsV1().Deployments(testNS).Patch(ctx, "web", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	took = lab.Eventually(t, 30*time.Second, "one pod left", func(ctx context.Context) (string, bool) {
		list, err := c.CoreV1().Pods(testNS).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err.Error(), false
		}
		var names []string
		for _, p := range list.Items {
			names = append(names, p.Name)
		}
		return fmt.Sprint(names), len(list.Items) == 1
	})
	t.Logf("scale 3 → 1: Pods gone in %v", took.Round(time.Millisecond))
	var left []string
	for _, a := range s.agents {
		for _, p := range a.Pods() {
			left = append(left, p.Name)
		}
	}
	if len(left) != 1 {
		t.Errorf("agents still run %v, want one pod", left)
	}
	for _, p := range pods {
		if slices.Contains(left, p.Name) {
			continue
		}
		r := running[p.Name]
		if r.NS.Exists() {
			t.Errorf("namespace %s of deleted pod %s left", r.NS, p.Name)
		}
		if !r.Process.Exited() {
			t.Errorf("echo server of deleted pod %s (pid %d) still runs", p.Name, r.Process.PID())
		}
	}
	lab.Eventually(t, 10*time.Second, "EndpointSlices with one pod", func(ctx context.Context) (string, bool) {
		got, err := sliceEndpoints(ctx, c, "web")
		if err != nil {
			return err.Error(), false
		}
		return fmt.Sprint(got), len(got[discoveryv1.AddressTypeIPv4]) == 1 && len(got[discoveryv1.AddressTypeIPv6]) == 1
	})
}

// TestServices: a ClusterIP and a NodePort Service answer, over TCP and UDP and both
// families, through the real kube-proxy (nftables mode) in the node namespaces; with
// externalTrafficPolicy Local the pod sees the client's own address.
func TestServices(t *testing.T) {
	s := newSite(t, 2, true)
	c := s.cp.Client
	ctx := t.Context()
	createNamespace(t, c)
	// One pod per node, placed by name so the test knows which node holds which.
	for _, node := range s.net.Nodes {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "echo-" + node.Name, Namespace: testNS, Labels: map[string]string{"app": "echo"}},
			Spec:       podSpec(),
		}
		pod.Spec.NodeName = node.Name
		if _, err := c.CoreV1().Pods(testNS).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	lab.Eventually(t, 30*time.Second, "2 ready pods", func(ctx context.Context) (string, bool) {
		pods, seen := readyPods(ctx, c, "echo")
		return seen, len(pods) == 2
	})
	create := func(svc *corev1.Service) *corev1.Service {
		t.Helper()
		out, err := c.CoreV1().Services(testNS).Create(ctx, svc, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	cluster := create(echoService("cluster", "echo", corev1.ServiceTypeClusterIP, ""))
	nodePort := create(echoService("nodeport", "echo", corev1.ServiceTypeNodePort, corev1.ServiceExternalTrafficPolicyCluster))
	local := create(echoService("local", "echo", corev1.ServiceTypeNodePort, corev1.ServiceExternalTrafficPolicyLocal))

	node1, node2 := s.net.Nodes[0], s.net.Nodes[1]
	outside := s.net.FRRHost // a host on the node network, outside the cluster
	pods := []string{"echo-" + node1.Name, "echo-" + node2.Name}

	// ClusterIP, from inside node1 (host network), to both families and protocols;
	// either pod may answer.
	for _, ip := range cluster.Spec.ClusterIPs {
		for _, proto := range []string{"tcp", "udp"} {
			addr := netip.AddrPortFrom(netip.MustParseAddr(ip), 80)
			askUntil(t, node1.NS, proto, addr, func(r echo.Reply) bool { return slices.Contains(pods, r.Pod) })
		}
	}
	// Over a few requests both pods answer: node1 reaches node2's pod through the node
	// network's routes.
	seen := map[string]bool{}
	addr := netip.AddrPortFrom(netip.MustParseAddr(cluster.Spec.ClusterIPs[0]), 80)
	lab.Eventually(t, 10*time.Second, "both pods behind "+addr.String(), func(ctx context.Context) (string, bool) {
		if r, err := echo.Ask(ctx, node1.NS, "tcp", addr); err == nil {
			seen[r.Pod] = true
		}
		return fmt.Sprint(seen), len(seen) == 2
	})
	// It is kube-proxy's nftables mode that does it.
	out, err := node1.NS.Output(ctx, "nft", "list", "table", "ip", "kube-proxy")
	if err != nil || !strings.Contains(string(out), cluster.Spec.ClusterIPs[0]) {
		t.Errorf("kube-proxy's nftables table in node1 lacks %s: %v\n%s", cluster.Spec.ClusterIPs[0], err, out)
	}

	// NodePort (eTP=Cluster), from outside, on node1's address of each family.
	for _, nodeIP := range []netip.Addr{node1.Addr4, node1.Addr6} {
		for i, proto := range []string{"tcp", "udp"} {
			addr := netip.AddrPortFrom(nodeIP, uint16(nodePort.Spec.Ports[i].NodePort))
			askUntil(t, outside.NS, proto, addr, func(r echo.Reply) bool { return slices.Contains(pods, r.Pod) })
		}
	}
	// NodePort with eTP=Local: only node1's pod answers on node1, and it sees the
	// outside client's own address.
	for _, c := range []struct{ nodeIP, client netip.Addr }{{node1.Addr4, outside.Addr4}, {node1.Addr6, outside.Addr6}} {
		for i, proto := range []string{"tcp", "udp"} {
			addr := netip.AddrPortFrom(c.nodeIP, uint16(local.Spec.Ports[i].NodePort))
			askUntil(t, outside.NS, proto, addr, func(r echo.Reply) bool {
				return r.Pod == pods[0] && r.Client.Addr() == c.client
			})
		}
	}

	// kube-proxy and the controllers ran without a single refusal from RBAC.
	forbidden, err := s.cp.Forbidden(func(u string) bool {
		return u == controlplane.KubeProxyUser || strings.HasPrefix(u, "system:serviceaccount:kube-system:")
	})
	if err != nil {
		t.Fatal(err)
	}
	for u, evs := range forbidden {
		t.Errorf("%s was refused %d requests, e.g. %v", u, len(evs), evs[0])
	}
}

// askUntil asks addr from ns until a reply satisfies ok (kube-proxy programs rules within
// a second of a change), and logs how long that took.
func askUntil(t *testing.T, ns netns.NS, proto string, addr netip.AddrPort, ok func(echo.Reply) bool) {
	t.Helper()
	took := lab.Eventually(t, 15*time.Second, fmt.Sprintf("%s %s from %s", proto, addr, ns), func(ctx context.Context) (string, bool) {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		r, err := echo.Ask(actx, ns, proto, addr)
		if err != nil {
			return err.Error(), false
		}
		return r.String(), ok(r)
	})
	t.Logf("%s %s from %s answered after %v", proto, addr, ns, took.Round(time.Millisecond))
}
