//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/echo"
)

// TestFaultConfigErrors: while Services come and go and clients send to an L2 and a BGP
// address, three mistakes are made in turn: a pool overlapping the demo's, a wrong
// password on the BIRD peer, and a pool deleted while a Service holds one of its
// addresses. Each is reported where the user looks, and nothing else moves: the clients
// keep their answers, the other sessions stay up, every churned Service gets an address.
func TestFaultConfigErrors(t *testing.T) {
	ns, l2, bgp, _ := l2AndBGP(t)
	waitSessions(t)
	l2Probe := startProber(t, l2Client(), l2, 20*time.Millisecond, false)
	bgpProbe := startProber(t, routedClient(), bgp, 20*time.Millisecond, false)
	sessions := peerSince(t)
	begin := time.Now()
	stopChurn := churn(t, ns)

	// 1. A pool overlapping the demo's L2 pool: refused, the older pool keeps serving.
	overlap := "e2e-overlap-" + suffix(ns)
	create(t, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: overlap},
		Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.18.2.250/32"}}})
	msg := objectCondition(t, &v1alpha1.IPPool{}, overlap, "Accepted", metav1.ConditionFalse, "PoolOverlap")
	t.Logf("overlapping pool: Accepted=False PoolOverlap: %s", msg)

	// 2. A wrong password on the BIRD peer (BIRD expects none): its sessions fail and say
	// so; FRR's sessions and BIRD's IPv6 ones do not move.
	secret := "e2e-wrong-password-" + suffix(ns)
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: lab.BerthNamespace, Name: secret},
		StringData: map[string]string{"password": "not-birds"}})
	t.Cleanup(func() {
		_ = env.kc.CoreV1().Secrets(lab.BerthNamespace).Delete(context.Background(), secret, metav1.DeleteOptions{})
	})
	patchPeerPassword(t, "bird", &v1alpha1.SecretKeyRef{Name: secret, Key: "password"})
	t.Cleanup(func() { patchPeerPassword(t, "bird", nil) })
	lab.Eventually(t, 90*time.Second, "every node's bird session down, failing, with a reason", func(ctx context.Context) (string, bool) {
		var p v1alpha1.BGPPeer
		if err := env.cr.Get(ctx, client.ObjectKey{Name: "bird"}, &p); err != nil {
			return err.Error(), false
		}
		down := 0
		for _, n := range p.Status.Nodes {
			if n.State != v1alpha1.SessionEstablished && n.Reason != "" && n.Failures > 0 {
				down++
			}
		}
		return fmt.Sprintf("%+v", p.Status.Nodes), down == len(env.nodes)
	})
	st, _ := peerStatus(t, "bird", env.nodes[0])
	t.Logf("wrong password: bird on %s is %s, %s: %s (failures %d)", env.nodes[0], st.State, st.Reason, st.Message, st.Failures)
	patchPeerPassword(t, "bird", nil)
	waitSessions(t)

	// 3. A pool deleted while in use: it stays (finalizer) for its holder, hands out no
	// new address, and goes once the holder does.
	tmp := "e2e-tmp-" + suffix(ns)
	create(t, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: tmp},
		Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.18.2.171/32", "198.18.2.172/32"}, AutoAssign: ptr.To(false)}})
	lbService(t, ns, "holder", "web", pool(tmp))
	held := ingress(t, ns, "holder", 1)
	if err := env.cr.Delete(t.Context(), &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: tmp}}); err != nil {
		t.Fatal(err)
	}
	// A Service naming the pool gets nothing from it once the controller saw the deletion;
	// one created before that is an ordinary holder, removed and tried again.
	var latecomer string
	lab.Eventually(t, 30*time.Second, "a Service naming "+tmp+" is refused", func(ctx context.Context) (string, bool) {
		if latecomer != "" {
			_ = env.kc.CoreV1().Services(ns).Delete(ctx, latecomer, metav1.DeleteOptions{})
		}
		latecomer = fmt.Sprintf("latecomer-%d", time.Now().UnixNano()%1e6)
		lbService(t, ns, latecomer, "web", pool(tmp))
		if addressed(ns, latecomer, time.Second) {
			return latecomer + " got an address", false
		}
		msg = condition(t, ns, latecomer, condAllocated, metav1.ConditionFalse, "PoolNotFound", 10*time.Second)
		return msg, strings.Contains(msg, "being deleted")
	})
	var p v1alpha1.IPPool
	if err := env.cr.Get(t.Context(), client.ObjectKey{Name: tmp}, &p); err != nil {
		t.Fatalf("pool %s gone while %v in use: %v", tmp, held, err)
	}
	if got := ingress(t, ns, "holder", 1); !slices.Equal(got, held) {
		t.Errorf("holder: %v after its pool was deleted, %v before", got, held)
	}
	if err := env.kc.CoreV1().Services(ns).Delete(t.Context(), "holder", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 30*time.Second, "pool "+tmp+" gone with its last holder", func(ctx context.Context) (string, bool) {
		err := env.cr.Get(ctx, client.ObjectKey{Name: tmp}, &v1alpha1.IPPool{})
		return fmt.Sprint(err), apierrors.IsNotFound(err)
	})
	t.Logf("pool deleted in use: kept for %s %v, latecomer: %s", "holder", held, msg)

	created, failed := stopChurn()
	if failed > 0 {
		t.Errorf("%d of %d churned Services got no address", failed, created)
	}
	for name, rs := range map[string][]echo.ProbeReply{"L2": echo.ParseProbeLog(l2Probe.Log()), "BGP": echo.ParseProbeLog(bgpProbe.Log())} {
		if s := echo.LongestSilence(rs, begin, time.Now()); s > time.Second {
			t.Errorf("%s client: silent for %v while the config was wrong, bound 1s", name, s.Round(time.Millisecond))
		} else {
			t.Logf("%s client: longest silence %v over %v", name, s.Round(time.Millisecond), time.Since(begin).Round(time.Second))
		}
	}
	after := peerSince(t)
	for key, since := range sessions {
		if strings.HasPrefix(key, "bird/") {
			continue
		}
		if !after[key].Equal(since) {
			t.Errorf("session %s moved while another peer was misconfigured: since %v, now %v", key, since, after[key])
		}
	}
	t.Logf("%d Services created and deleted meanwhile, all allocated", created)
}

// suffix is the random part of a test namespace's name, to name cluster-scoped objects.
func suffix(ns string) string { return ns[strings.LastIndex(ns, "-")+1:] }

// objectCondition waits until obj named name has condition typ with status and reason, and
// returns its message.
func objectCondition(t *testing.T, obj client.Object, name, typ string, status metav1.ConditionStatus, reason string) string {
	t.Helper()
	var msg string
	lab.Eventually(t, 30*time.Second, fmt.Sprintf("%s %s: %s=%s %s", obj.GetObjectKind().GroupVersionKind().Kind, name, typ, status, reason), func(ctx context.Context) (string, bool) {
		if err := env.cr.Get(ctx, client.ObjectKey{Name: name}, obj); err != nil {
			return err.Error(), false
		}
		var conds []metav1.Condition
		switch o := obj.(type) {
		case *v1alpha1.IPPool:
			conds = o.Status.Conditions
		case *v1alpha1.BGPPeer:
			conds = o.Status.Conditions
		}
		c := meta.FindStatusCondition(conds, typ)
		if c == nil {
			return "no condition", false
		}
		msg = c.Message
		return fmt.Sprintf("%s %s: %s", c.Status, c.Reason, c.Message), c.Status == status && c.Reason == reason
	})
	return msg
}

// patchPeerPassword sets or (nil) removes a BGPPeer's password.
func patchPeerPassword(t *testing.T, peer string, ref *v1alpha1.SecretKeyRef) {
	t.Helper()
	patch := `{"spec":{"password":null}}`
	if ref != nil {
		patch = fmt.Sprintf(`{"spec":{"password":{"name":%q,"key":%q}}}`, ref.Name, ref.Key)
	}
	obj := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: peer}}
	if err := env.cr.Patch(context.Background(), obj, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Errorf("patch BGPPeer %s: %v", peer, err)
	}
}

// churn creates and deletes Services in ns, one every 200 ms, each deleted once it has
// an address, until the returned func stops it and reports how many were created and how
// many never got an address within 10 s.
func churn(t *testing.T, ns string) (stop func() (created, failed int)) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var created, failed int
	wg.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			name := fmt.Sprintf("churn-%d", i)
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
					Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}
			if _, err := env.kc.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				if ctx.Err() == nil {
					t.Errorf("churn: create %s: %v", name, err)
				}
				return
			}
			wg.Go(func() {
				got := addressed(ns, name, 10*time.Second)
				mu.Lock()
				created++
				if !got {
					failed++
				}
				mu.Unlock()
				_ = env.kc.CoreV1().Services(ns).Delete(context.Background(), name, metav1.DeleteOptions{})
			})
		}
	})
	return func() (int, int) {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return created, failed
	}
}

// addressed waits up to within for the Service to have an ingress address.
func addressed(ns, name string, within time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for ctx.Err() == nil {
		svc, err := env.kc.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && len(ingressOf(svc)) > 0 {
			return true
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}
