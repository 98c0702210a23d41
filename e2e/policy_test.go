//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestScaleMovesAnnouncements: with externalTrafficPolicy Local, scaling a Deployment
// moves the BGP next hops and the L2 owner with its Pods; at zero replicas nothing is
// announced, and the route comes back with a Pod.
func TestScaleMovesAnnouncements(t *testing.T) {
	ns := namespace(t)
	deployment(t, ns, "web", 1)
	lbService(t, ns, "bgp", "web", all(local, bgpPool))
	lbService(t, ns, "l2", "web", local)
	bgp, l2 := ingress(t, ns, "bgp", 1)[0], ingress(t, ns, "l2", 1)[0]
	for _, replicas := range []int32{1, 3, 0, 2} {
		scale(t, ns, "web", replicas)
		nodes, _ := podNodes(t.Context(), ns, "web")
		nodes = slices.Compact(nodes)
		took := waitNextHops(t, bgp, nodes, 30*time.Second)
		if replicas == 0 {
			condition(t, ns, "l2", condAnnounced, metav1.ConditionFalse, "NotAnnounced", 30*time.Second)
			t.Logf("0 replicas: no route, L2 not announced")
			continue
		}
		owner := waitL2Owner(t, ns, "l2", l2, func(n string) bool { return slices.Contains(nodes, n) })
		reply(t, routedClient(), "tcp", bgp)
		reply(t, l2Client(), "tcp", l2)
		t.Logf("%d replicas on %v: FRR next hops follow in %v, L2 owner %s", replicas, nodes, took.Round(time.Millisecond), owner)
	}
}

// TestNodeExcluded: a Node labelled node.kubernetes.io/exclude-from-external-load-balancers
// stops announcing (BGP next hop gone, never the L2 owner), and announces again when the
// label goes.
func TestNodeExcluded(t *testing.T) {
	ns, l2, bgp, excluded := l2AndBGP(t)

	label := func(value *string) {
		t.Helper()
		patch := fmt.Sprintf(`{"metadata":{"labels":{"node.kubernetes.io/exclude-from-external-load-balancers":%s}}}`, jsonOrNull(value))
		if _, err := env.kc.CoreV1().Nodes().Patch(context.Background(), excluded, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	label(new("true"))
	t.Cleanup(func() { label(nil) })
	others := slices.DeleteFunc(slices.Clone(env.nodes), func(n string) bool { return n == excluded })
	waitNextHops(t, bgp, others, 10*time.Second)
	owner := waitL2Owner(t, ns, "l2", l2, func(n string) bool { return n != excluded })
	answers(t, l2Client(), []netip.Addr{l2})
	answers(t, routedClient(), []netip.Addr{bgp})
	t.Logf("%s excluded: BGP via %v, L2 owner %s", excluded, others, owner)

	label(nil)
	waitNextHops(t, bgp, env.nodes, 10*time.Second)
}

func jsonOrNull(s *string) string {
	if s == nil {
		return "null"
	}
	return fmt.Sprintf("%q", *s)
}
