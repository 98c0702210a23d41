//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/echo"
)

// TestProxyMode: addresses of an ipMode Proxy pool show ipMode Proxy in the Service's
// status and are delivered by berth's datapath, not kube-proxy: every Pod of an
// externalTrafficPolicy Cluster Service answers through the owner (its own and other
// nodes' Pods), and a Local Service's Pod sees the client's address.
func TestProxyMode(t *testing.T) {
	ns := namespace(t)
	name := ns
	create(t, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.IPPoolSpec{
		Addresses: []v1alpha1.AddressRange{"198.18.2.160/29"}, IPMode: v1alpha1.IPModeProxy, AutoAssign: ptr.To(false)}})
	create(t, &v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.L2AdvertisementSpec{AdvertisementTarget: v1alpha1.AdvertisementTarget{IPPools: []v1alpha1.ObjectName{v1alpha1.ObjectName(name)}}}})
	for i, n := range env.nodes {
		echoPod(t, ns, fmt.Sprintf("web-%d", i), n, "web")
	}
	lbService(t, ns, "cluster", "web", pool(name))
	lbService(t, ns, "local", "web", all(pool(name), local))
	for _, svc := range []string{"cluster", "local"} {
		lab.Eventually(t, 30*time.Second, svc+" shows ipMode Proxy", func(ctx context.Context) (string, bool) {
			s, err := env.kc.CoreV1().Services(ns).Get(ctx, svc, metav1.GetOptions{})
			if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
				return fmt.Sprint(err), false
			}
			m := s.Status.LoadBalancer.Ingress[0].IPMode
			return fmt.Sprint(s.Status.LoadBalancer.Ingress), m != nil && *m == corev1.LoadBalancerIPModeProxy
		})
	}
	cluster := ingress(t, ns, "cluster", 1)[0]
	answers(t, l2Client(), []netip.Addr{cluster})
	// Connections spread over every node's Pod (each node gets one share): wait to see all.
	seen := map[string]bool{}
	lab.Eventually(t, 30*time.Second, "every Pod answers through "+cluster.String(), func(ctx context.Context) (string, bool) {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if r, err := echo.Ask(ctx, l2Client().NS, "tcp", netip.AddrPortFrom(cluster, 80)); err == nil {
			seen[r.Pod] = true
		}
		return fmt.Sprint(seen), len(seen) == len(env.nodes)
	})
	owner := waitL2Owner(t, ns, "cluster", cluster, func(string) bool { return true })
	t.Logf("Proxy %s (owner %s): Pods %v answered", cluster, owner, slices.Sorted(maps.Keys(seen)))

	localIP := ingress(t, ns, "local", 1)[0]
	r := reply(t, l2Client(), "tcp", localIP)
	if want := l2Client().Addr4; r.Client.Addr() != want {
		t.Errorf("Proxy Local %s: the Pod saw %s, want the client's %s", localIP, r.Client.Addr(), want)
	}
}
