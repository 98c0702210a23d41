//go:build integration && privileged && timing

package speaker_test

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/echo"
)

// TestProxyModeSLO runs three speakers with the real kube-proxy on an L2 pool in Proxy mode,
// so kube-proxy leaves the LB IPs alone and berth's table delivers them. From the L2
// client, over TCP and UDP, IPv4 and IPv6: an eTP=Cluster Service is answered by its
// pods, reached both directly from the owner (the pod sees the client) and through the
// other nodes' NodePorts (the pod sees the node that forwarded it); nothing in the nodes
// listens on the NodePort; an eTP=Local Service's pod sees the client's address; a
// Service whose loadBalancerSourceRanges hold the client answers it, one whose ranges do
// not (IPv4 only: its IPv6 IP lets nobody in) does not; a node
// whose kube-proxy stops answering its health check drops out of the owner's backends and
// gets no connections until it answers again, while the Service keeps answering.
func TestProxyModeSLO(t *testing.T) {
	w := startWorld(t, worldOptions{nodes: 3, kubeProxy: true})
	ctx := t.Context()
	var lan v1alpha1.IPPool
	if err := w.cr.Get(ctx, client.ObjectKey{Name: "lan"}, &lan); err != nil {
		t.Fatal(err)
	}
	lan.Spec.IPMode = v1alpha1.IPModeProxy
	if err := w.cr.Update(ctx, &lan); err != nil {
		t.Fatal(err)
	}
	w.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}})
	for i, n := range w.nodes {
		w.pod(fmt.Sprintf("web-%d", i), n, "web")
	}
	w.pod("local-0", w.nodes[0], "local")
	client := w.site.Network().L2Client
	for _, s := range []struct {
		name, app string
		etp       corev1.ServiceExternalTrafficPolicy
		ranges    []string
	}{
		{"web", "web", corev1.ServiceExternalTrafficPolicyCluster, nil},
		{"local", "local", corev1.ServiceExternalTrafficPolicyLocal, nil},
		// loadBalancerSourceRanges: the L2 client's addresses, or only someone else's.
		{"ranged", "web", corev1.ServiceExternalTrafficPolicyCluster, []string{client.Addr4.String() + "/32", client.Addr6.String() + "/128"}},
		{"fenced", "web", corev1.ServiceExternalTrafficPolicyCluster, []string{"198.51.100.0/24"}},
	} {
		w.create(&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: s.name},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": s.app},
				ExternalTrafficPolicy: s.etp, IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyRequireDualStack),
				LoadBalancerSourceRanges: s.ranges,
				Ports: []corev1.ServicePort{
					{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)},
					{Name: "udp", Protocol: corev1.ProtocolUDP, Port: 80, TargetPort: intstr.FromInt32(8080)},
				}},
		})
	}
	webIP, webIP6 := w.ingressIPs(t, "web")
	localIP, localIP6 := w.ingressIPs(t, "local")
	rangedIP, rangedIP6 := w.ingressIPs(t, "ranged")
	fencedIP, fencedIP6 := w.ingressIPs(t, "fenced")
	svc, err := w.kc.CoreV1().Services("demo").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ing.IPMode == nil || *ing.IPMode != corev1.LoadBalancerIPModeProxy {
			t.Fatalf("web's ingress %s: ipMode %v, want Proxy", ing.IP, ing.IPMode)
		}
	}
	ownerOf := func(t *testing.T, ip netip.Addr) string { t.Helper(); return w.waitAgree(t, 4)[ip.String()] }
	owner := ownerOf(t, webIP)
	t.Logf("web %s %s and local %s %s; web's IPv4 owner %s", webIP, webIP6, localIP, localIP6, owner)

	// via names the node a connection went through, from the address the pod saw: the
	// client's own means the owner delivered it; a node's address, that node's kube-proxy.
	via := func(saw netip.Addr) string {
		if saw == client.Addr4 || saw == client.Addr6 {
			return "direct"
		}
		for _, n := range w.site.Network().Nodes {
			if saw == n.Addr4 || saw == n.Addr6 || n.PodCIDR4.Contains(saw) || n.PodCIDR6.Contains(saw) {
				return n.Name
			}
		}
		return "unknown " + saw.String()
	}
	// spread asks n times and counts the pods and the paths.
	spread := func(t *testing.T, network string, ip netip.Addr, n int) (pods, paths map[string]int) {
		t.Helper()
		pods, paths = map[string]int{}, map[string]int{}
		for range n {
			var r echo.Reply
			lab.Eventually(t, 10*time.Second, fmt.Sprintf("%s to %s:80 from the L2 client", network, ip), func(ctx context.Context) (string, bool) {
				var err error
				r, err = echo.Ask(ctx, client.NS, network, netip.AddrPortFrom(ip, 80))
				return fmt.Sprint(r, err), err == nil
			})
			pods[r.Pod]++
			paths[via(r.Client.Addr())]++
		}
		return pods, paths
	}

	t.Run("eTP=Cluster: the pods answer, directly and through the other nodes' NodePorts", func(t *testing.T) {
		for _, ip := range []netip.Addr{webIP, webIP6} {
			own := ownerOf(t, ip)
			for _, network := range []string{"tcp", "udp"} {
				pods, paths := spread(t, network, ip, 30)
				t.Logf("%s %s (owner %s): pods %v, paths %v", network, ip, own, pods, paths)
				for p := range pods {
					if !strings.HasPrefix(p, "web-") {
						t.Errorf("%s %s answered by %s", network, ip, p)
					}
				}
				// Each of the three nodes gets a third: every path shows in 30 tries but
				// for (2/3)^30 each.
				for _, n := range w.nodes {
					want := n
					if n == own {
						want = "direct"
					}
					if paths[want] == 0 {
						t.Errorf("%s %s: no connection went %s: paths %v", network, ip, want, paths)
					}
				}
			}
		}
	})

	t.Run("nothing listens on the NodePort", func(t *testing.T) {
		for _, p := range svc.Spec.Ports {
			for _, n := range w.site.Network().Nodes {
				out, err := exec.CommandContext(ctx, "ip", "netns", "exec", string(n.NS), "ss", "-Hlnt", "-u", "sport = :"+strconv.Itoa(int(p.NodePort))).CombinedOutput()
				if err != nil {
					t.Fatalf("ss in %s: %v: %s", n.Name, err, out)
				}
				if s := strings.TrimSpace(string(out)); s != "" {
					t.Errorf("%s listens on NodePort %d: %s", n.Name, p.NodePort, s)
				}
			}
		}
	})

	t.Run("eTP=Local: the pod sees the client", func(t *testing.T) {
		for _, ip := range []netip.Addr{localIP, localIP6} {
			if o := ownerOf(t, ip); o != w.nodes[0] {
				t.Errorf("%s owned by %s, want %s, the node with the endpoint", ip, o, w.nodes[0])
			}
			for _, network := range []string{"tcp", "udp"} {
				pods, paths := spread(t, network, ip, 5)
				if pods["local-0"] != 5 || paths["direct"] != 5 {
					t.Errorf("%s %s: pods %v, paths %v; want local-0 seeing the client each time", network, ip, pods, paths)
				}
			}
		}
	})

	t.Run("loadBalancerSourceRanges", func(t *testing.T) {
		for _, ip := range []netip.Addr{rangedIP, rangedIP6} {
			for _, network := range []string{"tcp", "udp"} {
				if pods, _ := spread(t, network, ip, 3); pods["web-0"]+pods["web-1"]+pods["web-2"] != 3 {
					t.Errorf("%s %s, the client in range: answered by %v", network, ip, pods)
				}
			}
		}
		for _, ip := range []netip.Addr{fencedIP, fencedIP6} {
			for _, network := range []string{"tcp", "udp"} {
				actx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
				r, err := echo.Ask(actx, client.NS, network, netip.AddrPortFrom(ip, 80))
				cancel()
				if err == nil {
					t.Errorf("%s %s, the client out of range: answered by %s", network, ip, r.Pod)
				}
			}
		}
	})

	t.Run("throughput: LB IP against the NodePort", func(t *testing.T) {
		// The same pod (local-0) by two paths into its node: the LB IP, which berth's table
		// DNATs, and the node's primary address and NodePort, which kube-proxy DNATs. The
		// L2 client reaches that address through the node's L2 address.
		node := w.site.Network().Node(w.nodes[0])
		if err := client.NS.Batch(ctx, fmt.Sprintf("route add %s/32 via %s", node.Addr4, node.L2Addr4)); err != nil {
			t.Fatal(err)
		}
		defer client.NS.Batch(context.Background(), fmt.Sprintf("route del %s/32", node.Addr4))
		local, err := w.kc.CoreV1().Services("demo").Get(ctx, "local", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		paths := map[string]netip.AddrPort{
			"LB IP":    netip.AddrPortFrom(localIP, 80),
			"NodePort": netip.AddrPortFrom(node.Addr4, uint16(local.Spec.Ports[0].NodePort)),
		}
		samples := map[string][]float64{}
		order := []string{"LB IP", "NodePort"}
		for run := range 10 {
			if run%2 == 1 {
				slices.Reverse(order) // alternate which goes first
			}
			for _, p := range order {
				bps, err := echo.Pull(ctx, client.NS, paths[p], 500*time.Millisecond)
				if err != nil {
					t.Fatalf("%s %s: %v", p, paths[p], err)
				}
				if run > 0 { // the first run warms caches and conntrack
					samples[p] = append(samples[p], bps*8/1e9)
				}
			}
		}
		median := func(xs []float64) float64 { s := slices.Clone(xs); slices.Sort(s); return s[len(s)/2] }
		lb, np := median(samples["LB IP"]), median(samples["NodePort"])
		ratio := lb / np
		t.Logf("FIGURE throughput to one pod, 9 alternated 0.5 s pulls each: LB IP (berth's DNAT) median %.2f Gbit/s %v, NodePort (kube-proxy's DNAT) median %.2f Gbit/s %v; ratio %.2f (CI bound ≥ 0.8, goal ≥ 0.9)",
			lb, samples["LB IP"], np, samples["NodePort"], ratio)
		if ratio < 0.8 {
			t.Errorf("LB IP throughput is %.2f of the NodePort's, want ≥ 0.8", ratio)
		}
	})

	t.Run("a node whose kube-proxy fails its health check gets no traffic", func(t *testing.T) {
		sick := w.nodes[0]
		if sick == owner {
			sick = w.nodes[1]
		}
		sickNode := w.site.Network().Node(sick)
		kp := w.site.KubeProxy(sick)
		if err := kp.Pause(); err != nil {
			t.Fatal(err)
		}
		paused := time.Now()
		defer kp.Resume()
		ownerNS := w.site.Network().Node(owner).NS
		took := lab.Eventually(t, 10*time.Second, fmt.Sprintf("%s leaves %s's backends", sick, owner), func(ctx context.Context) (string, bool) {
			out, err := exec.CommandContext(ctx, "ip", "netns", "exec", string(ownerNS), "nft", "list", "table", "inet", "berth").CombinedOutput()
			return string(out), err == nil && !strings.Contains(string(out), sickNode.Addr4.String()+" . ")
		})
		t.Logf("%s's kube-proxy stopped: out of %s's backends after %v (checks every 1 s, 1 s timeout, 2 failures)", sick, owner, took.Round(time.Millisecond))
		if since := time.Since(paused); since > 5*time.Second {
			t.Errorf("took %v, want ≤ 5 s", since)
		}
		_, paths := spread(t, "tcp", webIP, 20)
		if paths[sick] > 0 {
			t.Errorf("%s still got %d of 20 connections: %v", sick, paths[sick], paths)
		}
		if err := kp.Resume(); err != nil {
			t.Fatal(err)
		}
		lab.Eventually(t, 10*time.Second, fmt.Sprintf("%s back in %s's backends", sick, owner), func(ctx context.Context) (string, bool) {
			out, err := exec.CommandContext(ctx, "ip", "netns", "exec", string(ownerNS), "nft", "list", "table", "inet", "berth").CombinedOutput()
			return string(out), err == nil && strings.Contains(string(out), sickNode.Addr4.String()+" . ")
		})
		_, paths = spread(t, "tcp", webIP, 30)
		if paths[sick] == 0 {
			t.Errorf("%s back but got none of 30 connections: %v", sick, paths)
		}
	})
}
