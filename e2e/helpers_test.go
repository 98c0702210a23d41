//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/echo"
	"github.com/berthlb/berth/lab/netns"
)

// Conditions berth writes on Services (docs/controller.md).
const (
	condAllocated = "berth.dev/Allocated"
	condAnnounced = "berth.dev/Announced"
)

// echoPort is the port the lab's echo servers listen on (the Pods' containerPort).
const echoPort = 8080

// namespace makes a namespace for one test and deletes it when the test ends.
func namespace(t *testing.T) string {
	t.Helper()
	name := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-"))
	name = fmt.Sprintf("e2e-%.30s-%04x", strings.Trim(name, "-"), rand.IntN(1<<16))
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	return name
}

// create creates obj and deletes it when the test ends (a namespace's objects go with it).
func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := env.cr.Create(t.Context(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
	if obj.GetNamespace() != "" {
		return
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := env.cr.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %T %s: %v", obj, obj.GetName(), err)
		}
	})
}

// echoPod runs one echo Pod on node with labels app=app.
func echoPod(t *testing.T, ns, name, node, app string) {
	t.Helper()
	create(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": app}},
		Spec:       corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: ptr.To[int64](0), Containers: []corev1.Container{echoContainer()}},
	})
}

func echoContainer() corev1.Container {
	return corev1.Container{Name: "echo", Image: "berth.dev/lab-echo",
		Ports: []corev1.ContainerPort{{ContainerPort: echoPort, Protocol: corev1.ProtocolTCP}}}
}

// deployment runs an echo Deployment of replicas with labels app=name.
func deployment(t *testing.T, ns, name string, replicas int32) {
	t.Helper()
	labels := map[string]string{"app": name}
	create(t, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: appsv1.DeploymentSpec{
		Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](0), Containers: []corev1.Container{echoContainer()}}},
	}})
}

// scale sets a Deployment's replicas and waits for them (waitPods).
func scale(t *testing.T, ns, name string, replicas int32) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := env.kc.AppsV1().Deployments(ns).GetScale(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.Replicas = replicas
		_, err = env.kc.AppsV1().Deployments(ns).UpdateScale(t.Context(), name, s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	waitPods(t, ns, name, replicas)
}

// waitPods waits until replicas Pods labelled app=app are ready and no other is left.
func waitPods(t *testing.T, ns, app string, replicas int32) {
	t.Helper()
	lab.Eventually(t, 60*time.Second, fmt.Sprintf("%s/%s has %d ready Pods", ns, app, replicas), func(ctx context.Context) (string, bool) {
		nodes, all := podNodes(ctx, ns, app)
		return fmt.Sprintf("ready on %v, %d Pods", nodes, all), len(nodes) == int(replicas) && all == int(replicas)
	})
}

// podNodes lists the nodes of the ready Pods labelled app=app (a node once per Pod), and
// counts all of them.
func podNodes(ctx context.Context, ns, app string) ([]string, int) {
	pods, err := env.kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil, 0
	}
	var nodes []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(&p) {
			nodes = append(nodes, p.Spec.NodeName)
		}
	}
	slices.Sort(nodes)
	return nodes, len(pods.Items)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// lbService is a LoadBalancer Service for the Pods labelled app=app, port 80 to the echo
// port over TCP and UDP; change edits it before it is created.
func lbService(t *testing.T, ns, name, app string, change func(*corev1.Service)) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": app},
			Ports: []corev1.ServicePort{
				{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(echoPort)},
				{Name: "udp", Protocol: corev1.ProtocolUDP, Port: 80, TargetPort: intstr.FromInt32(echoPort)},
			}},
	}
	if change != nil {
		change(svc)
	}
	create(t, svc)
	return svc
}

// Service edits.
func dualStack(s *corev1.Service) {
	s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
	s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
}
func ipv6Only(s *corev1.Service) {
	s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicySingleStack)
	s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
}
func local(s *corev1.Service) {
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
}
func pool(name string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Annotations["berth.dev/pool"] = name }
}
func bgpPool(s *corev1.Service) { pool("bgp")(s) }
func all(changes ...func(*corev1.Service)) func(*corev1.Service) {
	return func(s *corev1.Service) {
		for _, c := range changes {
			if c != nil {
				c(s)
			}
		}
	}
}

// ingress waits until the Service has n ingress addresses and returns them, sorted.
func ingress(t *testing.T, ns, name string, n int) []netip.Addr {
	t.Helper()
	return waitIngress(t, ns, name, n, 30*time.Second)
}

// waitIngress is ingress with a bound of its own.
func waitIngress(t *testing.T, ns, name string, n int, within time.Duration) []netip.Addr {
	t.Helper()
	var ips []netip.Addr
	lab.Eventually(t, within, fmt.Sprintf("Service %s/%s gets %d addresses", ns, name, n), func(ctx context.Context) (string, bool) {
		svc, err := env.kc.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error(), false
		}
		ips = ingressOf(svc)
		return fmt.Sprintf("ingress %v, conditions %v", ips, svc.Status.Conditions), len(ips) == n
	})
	return ips
}

func ingressOf(svc *corev1.Service) []netip.Addr {
	var ips []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil {
			ips = append(ips, a)
		}
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return ips
}

// condition waits until the Service's condition of type has status and reason, and
// returns its message.
func condition(t *testing.T, ns, name, typ string, status metav1.ConditionStatus, reason string, within time.Duration) string {
	t.Helper()
	var msg string
	lab.Eventually(t, within, fmt.Sprintf("%s/%s: %s=%s %s", ns, name, typ, status, reason), func(ctx context.Context) (string, bool) {
		svc, err := env.kc.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error(), false
		}
		c := meta.FindStatusCondition(svc.Status.Conditions, typ)
		if c == nil {
			return "no condition", false
		}
		msg = c.Message
		return fmt.Sprintf("%s %s %q", c.Status, c.Reason, c.Message), c.Status == status && c.Reason == reason
	})
	return msg
}

// reply asks the echo server behind addr:80 from the client, over network ("tcp": HTTP,
// or "udp"), until it answers.
func reply(t *testing.T, client lab.Host, network string, addr netip.Addr) echo.Reply {
	t.Helper()
	return replyAt(t, client, network, netip.AddrPortFrom(addr, 80))
}

// replyAt asks the echo server behind addr from the client until it answers.
func replyAt(t *testing.T, client lab.Host, network string, addr netip.AddrPort) echo.Reply {
	t.Helper()
	var r echo.Reply
	lab.Eventually(t, 30*time.Second, fmt.Sprintf("%s %s answers from %s", network, addr, client.Name), func(ctx context.Context) (string, bool) {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		var err error
		r, err = echo.Ask(ctx, client.NS, network, addr)
		return fmt.Sprint(err), err == nil
	})
	return r
}

// answers checks that every address answers over TCP and UDP from the client.
func answers(t *testing.T, client lab.Host, ips []netip.Addr) {
	t.Helper()
	for _, ip := range ips {
		for _, network := range []string{"tcp", "udp"} {
			reply(t, client, network, ip)
		}
	}
}

// l2Client and routedClient are the site's clients: on the L2 segment, and behind FRR.
func l2Client() lab.Host     { return env.site.Network().L2Client }
func routedClient() lab.Host { return env.site.Network().Client }

// nodeOf maps a node's address on the node network to its name: IPv4, IPv6, or the
// link-local address FRR prefers as an IPv6 next hop (EUI-64 of the node's MAC).
func nodeOf(a netip.Addr) string {
	for _, n := range env.site.Nodes() {
		if n.Addr4 == a || n.Addr6 == a || linkLocal(n.MAC) == a {
			return n.Name
		}
	}
	return a.String()
}

func linkLocal(mac []byte) netip.Addr {
	if len(mac) != 6 {
		return netip.Addr{}
	}
	return netip.AddrFrom16([16]byte{0xfe, 0x80, 8: mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]})
}

// nextHops are the nodes FRR's kernel routes ip through (ECMP), sorted; none when it
// has no route.
func nextHops(ctx context.Context, ip netip.Addr) ([]string, error) {
	f := netns.IPv4
	if ip.Is6() {
		f = netns.IPv6
	}
	routes, err := env.site.Network().FRR.KernelRoutes(ctx, f)
	if err != nil {
		return nil, err
	}
	var hops []string
	for _, r := range routes {
		if r.Dst != netip.PrefixFrom(ip, ip.BitLen()) {
			continue
		}
		for _, h := range r.Gateways {
			hops = append(hops, nodeOf(h))
		}
	}
	slices.Sort(hops)
	return hops, nil
}

// waitNextHops waits until FRR routes ip through exactly nodes (none: no route).
func waitNextHops(t *testing.T, ip netip.Addr, nodes []string, within time.Duration) time.Duration {
	t.Helper()
	want := slices.Sorted(slices.Values(nodes))
	return lab.Eventually(t, within, fmt.Sprintf("FRR routes %s via %v", ip, want), func(ctx context.Context) (string, bool) {
		hops, err := nextHops(ctx, ip)
		if err != nil {
			return err.Error(), false
		}
		return fmt.Sprint(hops), slices.Equal(hops, want)
	})
}

// l2Owners reads the berth.dev/Announced condition: the node answering ARP/NDP for each
// of the Service's L2 addresses ("L2 <ips> from <node> (<interfaces>)").
func l2Owners(msg string) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for _, clause := range strings.Split(msg, "; ") {
		rest, ok := strings.CutPrefix(clause, "L2 ")
		if !ok {
			continue
		}
		ips, from, ok := strings.Cut(rest, " from ")
		if !ok {
			continue
		}
		node, _, _ := strings.Cut(from, " ")
		for _, s := range strings.Split(ips, ", ") {
			if a, err := netip.ParseAddr(s); err == nil {
				out[a] = strings.TrimSuffix(node, ",")
			}
		}
	}
	return out
}

// waitL2Owner waits until the Service's Announced condition names an L2 owner for ip
// that keep accepts, and returns it.
func waitL2Owner(t *testing.T, ns, name string, ip netip.Addr, keep func(node string) bool) string {
	t.Helper()
	var owner string
	lab.Eventually(t, 30*time.Second, fmt.Sprintf("%s/%s: an accepted L2 owner of %s", ns, name, ip), func(ctx context.Context) (string, bool) {
		svc, err := env.kc.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error(), false
		}
		c := meta.FindStatusCondition(svc.Status.Conditions, condAnnounced)
		if c == nil {
			return "no Announced condition", false
		}
		owner = l2Owners(c.Message)[ip]
		return c.Message, owner != "" && keep(owner)
	})
	return owner
}

// nodeIP is the node address a Pod's reply shows when a node forwarded the connection
// (SNAT for externalTrafficPolicy Cluster).
func isNodeAddr(a netip.Addr) bool {
	for _, n := range env.site.Nodes() {
		if n.Addr4 == a || n.Addr6 == a || n.L2Addr4 == a || n.L2Addr6 == a {
			return true
		}
	}
	return false
}
