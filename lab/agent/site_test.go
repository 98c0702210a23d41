//go:build integration && privileged

package agent_test

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2/ktesting"

	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/agent"
	"github.com/berthlb/berth/lab/controlplane"
	"github.com/berthlb/berth/lab/netns"
)

// site is a control plane, a lab network without routers, and one agent (and optionally
// kube-proxy) per node: what lab.Site will compose.
type site struct {
	cp     *controlplane.Cluster
	net    *lab.Network
	agents map[string]*agent.Agent
}

// clusterCIDRs are all the nodes' pod CIDRs (DESIGN.md: 198.19.N.0/24, 2001:db8:19:N::/64).
var clusterCIDRs = []netip.Prefix{netip.MustParsePrefix("198.19.0.0/16"), netip.MustParsePrefix("2001:db8:19::/48")}

func newSite(t *testing.T, nodes int, kubeProxy bool) *site {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	begin := time.Now()
	cp, err := controlplane.Up(ctx, controlplane.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cpUp := time.Since(begin)
	t.Cleanup(func() {
		if err := cp.Down(context.Background()); err != nil {
			t.Errorf("control plane down: %v", err)
		}
	})
	// The base directory must be traversable by FRR's user, which t.TempDir is not.
	base, err := os.MkdirTemp("/run", "berth-lab-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	n, err := lab.Up(ctx, lab.Options{Nodes: nodes, BaseDir: base, NoRouters: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("network close: %v", err)
		}
		assertNoNamespaces(t, n.Prefix)
	})

	s := &site{cp: cp, net: n, agents: map[string]*agent.Agent{}}
	for _, node := range n.Nodes {
		a, err := agent.New(agent.Config{
			Client: cp.Client, Runner: n.Runner(), Prefix: n.Prefix,
			Node: agent.Node{
				Name: node.Name, NS: node.NS, Bridge: lab.PodBridge,
				Addrs:    []netip.Addr{node.Addr4, node.Addr6},
				PodCIDRs: []netip.Prefix{node.PodCIDR4, node.PodCIDR6},
				Gateways: []netip.Addr{node.PodGateway4, node.PodGateway6},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		actx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Run(actx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent %s: %v", node.Name, err)
			}
		})
		select {
		case <-a.Started():
		case err := <-done:
			t.Fatalf("agent %s: %v", node.Name, err)
		}
		s.agents[node.Name] = a
	}
	if kubeProxy {
		for _, node := range n.Nodes {
			if _, err := n.ForwardHost(ctx, node.NS, cp.APIServer, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := cp.StartKubeProxy(ctx, controlplane.KubeProxyOptions{
				Node: node.Name, NetNS: node.NS, ClusterCIDRs: clusterCIDRs, Runner: n.Runner()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			s.dump(t)
		}
	})
	t.Logf("site up in %v (control plane %v): %d nodes, kube-proxy %t, prefix %s, admin kubeconfig %s",
		time.Since(begin).Round(time.Millisecond), cpUp.Round(time.Millisecond), nodes, kubeProxy, n.Prefix, cp.AdminKubeconfig)
	return s
}

// assertNoNamespaces checks that no namespace of the run is left (nodes, pods).
func assertNoNamespaces(t *testing.T, prefix string) {
	t.Helper()
	names, err := netns.List(context.Background())
	if err != nil {
		t.Error(err)
	}
	for _, name := range names {
		if strings.HasPrefix(name, prefix) {
			t.Errorf("namespace %s left", name)
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), "/run/netns/"+prefix) {
		t.Errorf("netns mount of %s left", prefix)
	}
}

// eventually polls cond until it holds, failing with the last state it reported.
func eventually(t *testing.T, timeout time.Duration, what string, cond func(context.Context) (string, bool)) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		seen, ok := cond(ctx)
		if ctx.Err() == nil { // the last call may only have seen the deadline
			last = seen
		}
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %v (%v); last: %s", what, timeout, err, last)
	}
	return time.Since(start)
}

// dump logs what a failed test needs to see: the objects and the components' last words.
func (s *site) dump(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := s.cp.Client
	if pods, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			t.Logf("pod %s/%s node=%q phase=%s ips=%v conditions=%v", p.Namespace, p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.PodIPs, p.Status.Conditions)
		}
	}
	if evs, err := c.CoreV1().Events("").List(ctx, metav1.ListOptions{}); err == nil {
		for _, e := range evs.Items {
			t.Logf("event %s %s/%s: %s %s", e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
	for _, p := range append(s.cp.Runner().Processes(), s.net.Runner().Processes()...) {
		log := p.Log()
		if i := len(log) - 3000; i > 0 {
			log = log[i:]
		}
		t.Logf("--- %s (pid %d) log tail:\n%s", p.Name(), p.PID(), log)
	}
}
