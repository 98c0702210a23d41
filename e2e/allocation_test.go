//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/lab"
)

// TestRequestedIPs: a Service gets the addresses it asks for, in both families, and they
// answer; one asking for an address outside every pool gets none and says why.
func TestRequestedIPs(t *testing.T) {
	ns := namespace(t)
	deployment(t, ns, "web", 1)
	want := []netip.Addr{netip.MustParseAddr("198.18.2.250"), netip.MustParseAddr("2001:db8:18:2::1:fa")}
	lbService(t, ns, "asks", "web", all(dualStack, func(s *corev1.Service) {
		s.Annotations["berth.dev/load-balancer-ips"] = "198.18.2.250,2001:db8:18:2::1:fa"
	}))
	if got := ingress(t, ns, "asks", 2); !slices.Equal(got, want) {
		t.Fatalf("ingress %v, want %v", got, want)
	}
	answers(t, l2Client(), want)

	lbService(t, ns, "outside", "web", func(s *corev1.Service) { s.Annotations["berth.dev/load-balancer-ips"] = "198.51.100.7" })
	msg := condition(t, ns, "outside", condAllocated, metav1.ConditionFalse, "RequestedIPNotInPool", 10*time.Second)
	t.Logf("outside every pool: %s", msg)
}

// TestIPSharing: two Services with one sharing key and different ports get one address,
// and each port reaches its own Service.
func TestIPSharing(t *testing.T) {
	ns := namespace(t)
	echoPod(t, ns, "a", env.nodes[0], "a")
	echoPod(t, ns, "b", env.nodes[1], "b")
	share := func(port int32) func(*corev1.Service) {
		return func(s *corev1.Service) {
			s.Annotations["berth.dev/sharing-key"] = "web"
			s.Spec.Ports = []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: port, TargetPort: intstr.FromInt32(echoPort)}}
		}
	}
	lbService(t, ns, "a", "a", share(80))
	lbService(t, ns, "b", "b", share(81))
	a, b := ingress(t, ns, "a", 1), ingress(t, ns, "b", 1)
	if a[0] != b[0] {
		t.Fatalf("a has %s, b has %s: want one shared address", a[0], b[0])
	}
	for port, pod := range map[uint16]string{80: "a", 81: "b"} {
		if r := replyAt(t, l2Client(), "tcp", netip.AddrPortFrom(a[0], port)); r.Pod != pod {
			t.Errorf("%s:%d answered by %s, want %s", a[0], port, r.Pod, pod)
		}
	}
	t.Logf("a and b share %s: :80 → a, :81 → b", a[0])
}

// TestClasses: berth takes Services of its class and those with none, and leaves other
// classes alone (no address, no condition, no finalizer).
func TestClasses(t *testing.T) {
	ns := namespace(t)
	deployment(t, ns, "web", 1)
	lbService(t, ns, "other", "web", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("example.com/other") })
	lbService(t, ns, "berth", "web", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("berth.dev/lb") })
	lbService(t, ns, "none", "web", nil)
	answers(t, l2Client(), ingress(t, ns, "berth", 1))
	answers(t, l2Client(), ingress(t, ns, "none", 1))
	// Both of berth's Services are done; the other class's, created first, stays untouched.
	svc, err := env.kc.CoreV1().Services(ns).Get(t.Context(), "other", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(svc.Status.LoadBalancer.Ingress) > 0 || len(svc.Status.Conditions) > 0 || len(svc.Finalizers) > 0 {
		t.Errorf("Service of another class was touched: ingress %v, conditions %v, finalizers %v",
			svc.Status.LoadBalancer.Ingress, svc.Status.Conditions, svc.Finalizers)
	}
}

// TestPoolExhausted: a Service that finds its pool full says PoolExhausted, and gets the
// address within 3 s of another Service freeing it.
func TestPoolExhausted(t *testing.T) {
	ns := namespace(t)
	deployment(t, ns, "web", 1)
	name := ns // cluster-scoped objects of this test carry its namespace's unique name
	create(t, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.18.2.170/32"}, AutoAssign: ptr.To(false)}})
	create(t, &v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.L2AdvertisementSpec{AdvertisementTarget: v1alpha1.AdvertisementTarget{IPPools: []v1alpha1.ObjectName{v1alpha1.ObjectName(name)}}}})
	lbService(t, ns, "first", "web", pool(name))
	ip := ingress(t, ns, "first", 1)
	answers(t, l2Client(), ip)
	lbService(t, ns, "second", "web", pool(name))
	msg := condition(t, ns, "second", condAllocated, metav1.ConditionFalse, "PoolExhausted", 10*time.Second)
	t.Logf("second: %s", msg)

	if err := env.kc.CoreV1().Services(ns).Delete(t.Context(), "first", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	took := lab.Eventually(t, 3*time.Second, "second gets the freed address within 3 s", func(ctx context.Context) (string, bool) {
		svc, err := env.kc.CoreV1().Services(ns).Get(ctx, "second", metav1.GetOptions{})
		if err != nil {
			return err.Error(), false
		}
		got := ingressOf(svc)
		return fmt.Sprint(got), slices.Equal(got, ip)
	})
	t.Logf("delete first → second has %s: %v (bound 3s)", ip[0], took.Round(time.Millisecond))
	answers(t, l2Client(), ip)
}
