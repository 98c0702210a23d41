//go:build integration && privileged

package lab

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
	"k8s.io/klog/v2/ktesting"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/lab/agent"
	"github.com/berthlb/berth/lab/echo"
	"github.com/berthlb/berth/lab/netns"
)

// startSite starts a site for one test under a temporary base directory and closes it with
// the test, checking that nothing of the run is left; a failed test gets the site's report.
func startSite(t *testing.T, opts SiteOptions) *Site {
	t.Helper()
	if opts.BaseDir == "" {
		opts.BaseDir = baseDir(t)
	}
	_, ctx := ktesting.NewTestContext(t)
	begin := time.Now()
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("site up in %v: %d nodes, prefix %s, admin kubeconfig %s",
		time.Since(begin).Round(time.Millisecond), len(s.Nodes()), s.Prefix(), s.AdminKubeconfig())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if t.Failed() {
			var b strings.Builder
			s.Report(ctx, &b)
			t.Logf("site report:\n%s", b.String())
		}
		fp := footprintOf(t, s.Network())
		begin := time.Now()
		if err := s.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		t.Logf("site closed in %v", time.Since(begin).Round(time.Millisecond))
		fp.assertGone(t)
	})
	return s
}

// askUntil asks addr from ns until a reply satisfies ok (kube-proxy programs a change
// within a second), logging how long that took.
func askUntil(t *testing.T, ns netns.NS, proto string, addr netip.AddrPort, ok func(echo.Reply) bool) {
	t.Helper()
	took := Eventually(t, 15*time.Second, fmt.Sprintf("%s %s from %s", proto, addr, ns), func(ctx context.Context) (string, bool) {
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

const siteTestNS = "site"

// webService selects app=web on TCP and UDP port 80 → 8080, on both families.
func webService(name string, typ corev1.ServiceType) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: siteTestNS},
		Spec: corev1.ServiceSpec{
			Type:           typ,
			Selector:       map[string]string{"app": "web"},
			IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyRequireDualStack),
			Ports: []corev1.ServicePort{
				{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)},
				{Name: "udp", Protocol: corev1.ProtocolUDP, Port: 80, TargetPort: intstr.FromInt32(8080)},
			},
		},
	}
}

// readyWebPods lists the Running, Ready, not deleted app=web pods with IPs of both families,
// and a description of all app=web pods.
func readyWebPods(ctx context.Context, c kubernetes.Interface) ([]corev1.Pod, string) {
	pods, err := c.CoreV1().Pods(siteTestNS).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		return nil, err.Error()
	}
	var ready []corev1.Pod
	var seen []string
	for _, p := range pods.Items {
		isReady := slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
			return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
		})
		seen = append(seen, fmt.Sprintf("%s(%s ready=%t ips=%v node=%s)", p.Name, p.Status.Phase, isReady, p.Status.PodIPs, p.Spec.NodeName))
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && isReady && len(p.Status.PodIPs) == 2 {
			ready = append(ready, p)
		}
	}
	return ready, strings.Join(seen, ", ")
}

// readyEndpoints returns the ready endpoint addresses of a Service's EndpointSlices, sorted.
func readyEndpoints(ctx context.Context, c kubernetes.Interface, svc string) ([]string, error) {
	list, err := c.DiscoveryV1().EndpointSlices(siteTestNS).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if ptr.Deref(e.Conditions.Ready, false) {
				out = append(out, e.Addresses...)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// TestSite brings up the default site (3 nodes, FRR and BIRD, kube-proxy) and shows its
// parts working together: the routers answer queries; a Deployment of 3 replicas becomes 3
// Ready Pods with EndpointSlices; a ClusterIP and a NodePort Service answer through
// kube-proxy from inside the site; the routed client behind FRR reaches the NodePorts and,
// once FRR has a static route to a node's pod CIDRs, that node's pod directly; scaling to 1
// removes the other Pods with their namespaces. startSite's cleanup then checks that Close
// leaves no namespace, link, mount, process or directory of the run.
func TestSite(t *testing.T) {
	s := startSite(t, SiteOptions{})
	n, c, ctx := s.Network(), s.Client(), t.Context()
	if len(s.Nodes()) != 3 || len(s.Agents()) != 3 {
		t.Fatalf("%d nodes and %d agents, want 3 each", len(s.Nodes()), len(s.Agents()))
	}

	// Both routers run and answer route queries.
	for _, f := range []netns.Family{netns.IPv4, netns.IPv6} {
		if _, err := n.FRR.BGPRoutes(ctx, f); err != nil {
			t.Errorf("FRR %v RIB: %v", f, err)
		}
		if _, err := n.BIRD.BGPRoutes(ctx, f); err != nil {
			t.Errorf("BIRD %v RIB: %v", f, err)
		}
	}

	// Every node is registered and Ready, with its kube-proxy running.
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ready []string
	for _, node := range nodes.Items {
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				ready = append(ready, node.Name)
			}
		}
		if p := s.KubeProxy(node.Name); p == nil || p.Exited() {
			t.Errorf("node %s: kube-proxy not running", node.Name)
		}
	}
	if want := []string{"node1", "node2", "node3"}; !slices.Equal(ready, want) {
		t.Errorf("Ready nodes %v, want %v", ready, want)
	}

	// A Deployment of 3 replicas behind a ClusterIP and a NodePort Service.
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: siteTestNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster, err := c.CoreV1().Services(siteTestNS).Create(ctx, webService("web", corev1.ServiceTypeClusterIP), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodePort, err := c.CoreV1().Services(siteTestNS).Create(ctx, webService("web-np", corev1.ServiceTypeNodePort), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: siteTestNS},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "echo", Image: "berth.dev/lab-echo",
					Ports: []corev1.ContainerPort{{ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
				}}},
			},
		},
	}
	if _, err := c.AppsV1().Deployments(siteTestNS).Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	took := Eventually(t, 30*time.Second, "3 ready pods", func(ctx context.Context) (string, bool) {
		var seen string
		pods, seen = readyWebPods(ctx, c)
		return seen, len(pods) == 3
	})
	t.Logf("Deployment created → 3 Ready pods in %v", took.Round(time.Millisecond))
	var podIPs, names []string
	for _, p := range pods {
		names = append(names, p.Name)
		for _, ip := range p.Status.PodIPs {
			podIPs = append(podIPs, ip.IP)
		}
	}
	sort.Strings(podIPs)
	for _, svc := range []string{"web", "web-np"} {
		Eventually(t, 10*time.Second, "EndpointSlices of "+svc, func(ctx context.Context) (string, bool) {
			got, err := readyEndpoints(ctx, c, svc)
			if err != nil {
				return err.Error(), false
			}
			return fmt.Sprint(got), slices.Equal(got, podIPs)
		})
	}
	isWeb := func(r echo.Reply) bool { return slices.Contains(names, r.Pod) }

	// The ClusterIP, from inside a node, on both families and protocols.
	node1 := s.Nodes()[0]
	for _, ip := range cluster.Spec.ClusterIPs {
		for _, proto := range []string{"tcp", "udp"} {
			askUntil(t, node1.NS, proto, netip.AddrPortFrom(netip.MustParseAddr(ip), 80), isWeb)
		}
	}
	// The NodePort on every node, from the routed client behind FRR (the nodes route
	// back through FRR, their default router) on both families, over TCP; and over UDP
	// from FRR's side of the node network.
	for _, node := range s.Nodes() {
		for _, ip := range []netip.Addr{node.Addr4, node.Addr6} {
			askUntil(t, n.Client.NS, "tcp", netip.AddrPortFrom(ip, uint16(nodePort.Spec.Ports[0].NodePort)), isWeb)
		}
	}
	askUntil(t, n.FRRHost.NS, "udp", netip.AddrPortFrom(node1.Addr4, uint16(nodePort.Spec.Ports[1].NodePort)), isWeb)

	// The routed client reaches a pod directly only once FRR routes the pod's node's pod
	// CIDRs to that node.
	pod := pods[0]
	node := n.Node(pod.Spec.NodeName)
	for _, ip := range pod.Status.PodIPs {
		addr := netip.AddrPortFrom(netip.MustParseAddr(ip.IP), 8080)
		actx, cancel := context.WithTimeout(ctx, time.Second)
		r, err := echo.Ask(actx, n.Client.NS, "tcp", addr)
		cancel()
		if err == nil {
			t.Errorf("client reached pod %s at %s before FRR had a route: %v", pod.Name, addr, r)
		}
	}
	for _, r := range []struct {
		dst netip.Prefix
		via netip.Addr
	}{{node.PodCIDR4, node.Addr4}, {node.PodCIDR6, node.Addr6}} {
		if err := n.FRR.AddStaticRoute(ctx, r.dst, r.via); err != nil {
			t.Fatal(err)
		}
	}
	for _, ip := range pod.Status.PodIPs {
		askUntil(t, n.Client.NS, "tcp", netip.AddrPortFrom(netip.MustParseAddr(ip.IP), 8080), func(r echo.Reply) bool {
			// No NAT on the way: the pod sees the client's own address.
			return r.Pod == pod.Name && (r.Client.Addr() == n.Client.Addr4 || r.Client.Addr() == n.Client.Addr6)
		})
	}

	// Scale to 1: two Pods go, with their namespaces and echo servers.
	running := map[string]agent.Pod{}
	for _, a := range s.Agents() {
		for _, p := range a.Pods() {
			running[p.Name] = p
		}
	}
	patch := []byte(`{"spec":{"replicas":1}}`)
	if _, err := c.AppsV1().Deployments(siteTestNS).Patch(ctx, "web", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var left []string
	took = Eventually(t, 30*time.Second, "one pod left", func(ctx context.Context) (string, bool) {
		list, err := c.CoreV1().Pods(siteTestNS).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err.Error(), false
		}
		left = left[:0]
		for _, p := range list.Items {
			left = append(left, p.Name)
		}
		return fmt.Sprint(left), len(left) == 1
	})
	t.Logf("scale 3 → 1: Pods gone in %v", took.Round(time.Millisecond))
	for _, name := range names {
		if slices.Contains(left, name) {
			continue
		}
		r, ok := running[name]
		if !ok {
			t.Errorf("pod %s: no agent ran it", name)
			continue
		}
		if r.NS.Exists() {
			t.Errorf("namespace %s of deleted pod %s left", r.NS, name)
		}
		if !r.Process.Exited() {
			t.Errorf("echo server of deleted pod %s (pid %d) still runs", name, r.Process.PID())
		}
	}
	Eventually(t, 10*time.Second, "EndpointSlices with one pod", func(ctx context.Context) (string, bool) {
		got, err := readyEndpoints(ctx, c, "web")
		if err != nil {
			return err.Error(), false
		}
		return fmt.Sprint(got), len(got) == 2
	})
}
