//go:build integration && privileged

package agent_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"

	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/agent"
	"github.com/berthlb/berth/lab/controlplane"
	"github.com/berthlb/berth/lab/netns"
)

// site is what the agent tests use of a lab.Site: the control plane, the network (no
// routers) and the agents by node name.
type site struct {
	cp     *controlplane.Cluster
	net    *lab.Network
	agents map[string]*agent.Agent
}

// newSite starts a lab.Site of nodes nodes without routers, with kube-proxy if asked, and
// closes it with the test, checking that no namespace of the run (nodes, pods) is left.
func newSite(t *testing.T, nodes int, kubeProxy bool) *site {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	// The base directory must be traversable by FRR's user, which t.TempDir is not.
	base, err := os.MkdirTemp("/run", "berth-lab-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	begin := time.Now()
	s, err := lab.Start(ctx, lab.SiteOptions{Nodes: nodes, BaseDir: base, NoRouters: true, NoKubeProxy: !kubeProxy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if t.Failed() {
			var b strings.Builder
			s.Report(ctx, &b)
			t.Logf("site report:\n%s", b.String())
		}
		if err := s.Close(ctx); err != nil {
			t.Errorf("site close: %v", err)
		}
		assertNoNamespaces(t, s.Prefix())
	})
	t.Logf("site up in %v: %d nodes, kube-proxy %t, prefix %s, admin kubeconfig %s",
		time.Since(begin).Round(time.Millisecond), nodes, kubeProxy, s.Prefix(), s.AdminKubeconfig())
	out := &site{cp: s.Cluster(), net: s.Network(), agents: map[string]*agent.Agent{}}
	for _, a := range s.Agents() {
		out.agents[a.Node().Name] = a
	}
	return out
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
