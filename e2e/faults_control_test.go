//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/controlplane"
	"github.com/berthlb/berth/lab/echo"
	"github.com/berthlb/berth/lab/proc"
)

// Fault tests of the control plane: the apiserver or etcd down, the controller killed
// while Services come and go, two controllers at once. Each checks that no address is
// lost, duplicated or moved without cause, and prints how long recovery took.

// controllerLease is berth-controller's leader Lease (in lab.BerthNamespace), and
// controllerUser the ServiceAccount its replicas run as.
const (
	controllerLease = "berth-controller"
	controllerUser  = "system:serviceaccount:" + lab.BerthNamespace + ":" + lab.ControllerAccount
)

// TestFaultAPIServerDown: the apiserver is down for 60 s. Traffic to L2 and BGP
// addresses keeps flowing; the controller loses its Lease, exits, and is restarted by its
// supervisor once the apiserver is back, takes the Lease again and allocates; the
// speakers' watches resume (a new Service answers); no address moved.
func TestFaultAPIServerDown(t *testing.T) {
	controlPlaneOutage(t, controlplane.APIServer, 60*time.Second)
}

// TestFaultEtcdRestart: etcd is stopped for 30 s (its data kept) and started again: the
// apiserver stays up but can neither read nor write, so everything of
// TestFaultAPIServerDown holds too.
func TestFaultEtcdRestart(t *testing.T) {
	controlPlaneOutage(t, controlplane.Etcd, 30*time.Second)
}

// controlPlaneOutage stops component for outage and checks what TestFaultAPIServerDown
// describes. The outage is longer than the controller's lease renewal deadline (10 s).
func controlPlaneOutage(t *testing.T, component string, outage time.Duration) {
	ns, l2, bgp, _ := l2AndBGP(t)
	before := lbSnapshot(t)
	checkUnique(t, before)
	probers := map[string]*proc.Process{
		"L2 " + l2.String():   startProber(t, l2Client(), l2, 20*time.Millisecond, false),
		"BGP " + bgp.String(): startProber(t, routedClient(), bgp, 20*time.Millisecond, false),
	}
	for what, p := range probers {
		lab.Eventually(t, 10*time.Second, "the prober hears "+what, func(context.Context) (string, bool) {
			return "", len(echo.ParseProbeLog(p.Log())) > 3
		})
	}
	ctrl := env.berth.Controller
	ctrlLog := logFrom(ctrl)
	restarts := ctrl.Restarts()
	speakerRestarts := map[string]int{}
	for n, sp := range env.berth.Speakers {
		speakerRestarts[n] = sp.Restarts()
	}

	down := time.Now()
	stopComponent(t, component)
	// The lost-lease path: renewal fails for 10 s, the controller exits (its supervisor
	// then retries; a start needs a token, so it fails until the control plane is back).
	lab.Eventually(t, 45*time.Second, "berth-controller exits having lost its Lease", func(context.Context) (string, bool) {
		log := ctrlLog()
		return lastLines(log, 3), strings.Contains(log, "lost the leader lease")
	})
	t.Logf("%s down: berth-controller lost its Lease and exited within %v", component, time.Since(down).Round(time.Millisecond))
	select {
	case <-time.After(time.Until(down.Add(outage))):
	case <-t.Context().Done():
		t.Fatal(t.Context().Err())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	started := time.Now()
	if err := env.site.Cluster().Start(ctx, component); err != nil {
		t.Fatalf("start %s again: %v", component, err)
	}
	up := time.Now()
	t.Logf("%s down for %v, healthy again %v after its start", component, started.Sub(down).Round(time.Millisecond),
		up.Sub(started).Round(time.Millisecond))

	// Traffic never depended on the control plane.
	for what, p := range probers {
		rs := echo.ParseProbeLog(p.Log())
		silence := echo.LongestSilence(rs, down, up)
		t.Logf("%s: the client's longest silence during the outage %v", what, silence.Round(time.Millisecond))
		if silence > 2*time.Second {
			t.Errorf("%s: the client heard nothing for %v during the outage, bound 2s", what, silence)
		}
	}

	// Allocation resumes: a new Service of each kind gets an address, and the speakers
	// (whose watches must have resumed) announce it.
	lbService(t, ns, "after-l2", "web", nil)
	lbService(t, ns, "after-bgp", "web", bgpPool)
	newL2 := waitIngress(t, ns, "after-l2", 1, 90*time.Second)
	allocated := time.Since(up)
	newBGP := waitIngress(t, ns, "after-bgp", 1, 30*time.Second)
	waitSpeakersSee(t, ns, "after-l2", 30*time.Second)
	waitSpeakersSee(t, ns, "after-bgp", 30*time.Second)
	seen := time.Since(up)
	// The speakers announce a Service once it has serving endpoints, which
	// kube-controller-manager writes when its own watches are back (not berth's doing).
	waitEndpoints(t, ns, "after-l2", 2*time.Minute)
	waitEndpoints(t, ns, "after-bgp", 30*time.Second)
	endpoints := time.Since(up)
	waitL2Owner(t, ns, "after-l2", newL2[0], func(string) bool { return true })
	waitNextHops(t, newBGP[0], env.nodes, 30*time.Second)
	announced := time.Since(up)
	answers(t, l2Client(), newL2)
	answers(t, routedClient(), newBGP)
	t.Logf("%s up → a new Service allocated in %v (controller restarts %d), in every speaker's decisions in %v; "+
		"its endpoints in %v, announced (L2 owner, FRR via every node) in %v, answering in %v",
		component, allocated.Round(time.Millisecond), ctrl.Restarts()-restarts, seen.Round(time.Millisecond),
		endpoints.Round(time.Millisecond), announced.Round(time.Millisecond), time.Since(up).Round(time.Millisecond))

	if ctrl.Restarts() <= restarts {
		t.Errorf("berth-controller was not restarted (%d restarts)", ctrl.Restarts())
	}
	waitLeader(t, lab.ControllerIdentity, up, 30*time.Second)
	checkControllerLog(t, ctrlLog())
	for n, sp := range env.berth.Speakers {
		if sp.Restarts() != speakerRestarts[n] {
			t.Errorf("berth-speaker on %s restarted during the outage (%d → %d restarts)", n, speakerRestarts[n], sp.Restarts())
		}
	}
	checkRefusals(t, started, up)
	after := lbSnapshot(t)
	checkUnchanged(t, before, after)
	checkUnique(t, after)
}

// checkRefusals: since from, the apiserver refused (403) no request of berth's
// ServiceAccounts but before ready, while it was starting: its RBAC authorizer syncs
// after it starts serving (Cluster.Forbidden leaves those out too).
func checkRefusals(t *testing.T, from, ready time.Time) {
	t.Helper()
	events, err := controlplane.ReadAuditFile(env.site.Cluster().AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	starting := 0
	for _, e := range events {
		if e.Stage != "ResponseComplete" || e.Code() != 403 || e.RequestReceivedTimestamp.Before(from) ||
			!controlplane.ServiceAccountsIn(lab.BerthNamespace)(e.User.Username) ||
			strings.Contains(e.ResponseStatus.Message, "because it is being terminated") {
			continue
		}
		if e.RequestReceivedTimestamp.Before(ready) {
			starting++
			continue
		}
		t.Errorf("refused once the apiserver was ready: %s: %s", e, e.ResponseStatus.Message)
	}
	t.Logf("%d requests of berth's ServiceAccounts refused (403) while the apiserver was starting", starting)
}

// TestFaultControllerKilledDuringChurn: Services of a 16-address pool are created and
// deleted a few times a second while the controller is SIGKILLed three times (its
// supervisor restarts it). Afterwards every surviving Service has exactly one address, no
// address is held twice, the pool counts exactly the addresses in use, and every other
// address can still be allocated: the pool fills up exactly, then says PoolExhausted.
func TestFaultControllerKilledDuringChurn(t *testing.T) {
	ns := namespace(t)
	name := ns // cluster-scoped objects of this test carry its namespace's unique name
	const poolSize = 16
	create(t, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.18.2.144/28"}, AutoAssign: ptr.To(false)}})
	before := lbSnapshot(t)

	newService := func(svc string) *corev1.Service { // no Pods: only allocation matters here
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: svc, Annotations: map[string]string{"berth.dev/pool": name}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "none"},
				Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}},
		}
	}
	// The churn: every 100–300 ms create a Service or delete one, keeping 8–13 of them.
	churnCtx, stopChurn := context.WithCancel(t.Context())
	defer stopChurn()
	var ( // the churn's, read once it has ended
		wg               sync.WaitGroup
		created, deleted int
		churnErrs        []error
		live             []string
	)
	wg.Go(func() {
		for n := 0; churnCtx.Err() == nil; {
			select {
			case <-churnCtx.Done():
				return
			case <-time.After(time.Duration(100+rand.IntN(200)) * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(churnCtx, 10*time.Second)
			var err error
			if len(live) < 8 || (len(live) < 13 && rand.IntN(2) == 0) {
				svc := fmt.Sprintf("c-%d", n)
				n++
				if _, err = env.kc.CoreV1().Services(ns).Create(ctx, newService(svc), metav1.CreateOptions{}); err == nil {
					live = append(live, svc)
					created++
				}
			} else {
				i := rand.IntN(len(live))
				if err = env.kc.CoreV1().Services(ns).Delete(ctx, live[i], metav1.DeleteOptions{}); err == nil || apierrors.IsNotFound(err) {
					live = slices.Delete(live, i, i+1)
					deleted++
					err = nil
				}
			}
			cancel()
			if err != nil && churnCtx.Err() == nil {
				churnErrs = append(churnErrs, err)
			}
		}
	})

	ctrl := env.berth.Controller
	ctrlLog := logFrom(ctrl)
	var lastKill time.Time
	for i := range 3 {
		select {
		case <-time.After(5 * time.Second):
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
		restarts := ctrl.Restarts()
		if err := ctrl.Process().Kill(); err != nil {
			t.Fatal(err)
		}
		lastKill = time.Now()
		took := lab.Eventually(t, 60*time.Second, fmt.Sprintf("kill %d: berth-controller restarted and leading", i+1), func(ctx context.Context) (string, bool) {
			l, err := env.kc.CoordinationV1().Leases(lab.BerthNamespace).Get(ctx, controllerLease, metav1.GetOptions{})
			if err != nil {
				return err.Error(), false
			}
			return fmt.Sprintf("%d restarts, holder %s renewed %v", ctrl.Restarts(), ptr.Deref(l.Spec.HolderIdentity, ""), l.Spec.RenewTime),
				ctrl.Restarts() > restarts && l.Spec.RenewTime != nil && l.Spec.RenewTime.After(lastKill) &&
					ptr.Deref(l.Spec.HolderIdentity, "") == lab.ControllerIdentity
		})
		t.Logf("kill %d during churn: restarted and leading again in %v", i+1, took.Round(time.Millisecond))
		checkUnique(t, lbSnapshot(t)) // mid-churn too: a List is one consistent snapshot
	}
	select {
	case <-time.After(5 * time.Second):
	case <-t.Context().Done():
	}
	stopChurn()
	wg.Wait()
	if len(churnErrs) > 0 {
		t.Errorf("%d churn requests failed, e.g. %v", len(churnErrs), churnErrs[0])
	}
	t.Logf("churn: %d Services created, %d deleted, %d left", created, deleted, len(live))

	// Settled: the deleted are gone (finalizers removed), each survivor has one address.
	var addrs map[netip.Addr]string
	settled := lab.Eventually(t, 90*time.Second, "deleted Services gone, survivors allocated once", func(ctx context.Context) (string, bool) {
		list, err := env.kc.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err.Error(), false
		}
		addrs = map[netip.Addr]string{}
		var problems []string
		for _, s := range list.Items {
			ips := ingressOf(&s)
			switch {
			case s.DeletionTimestamp != nil:
				problems = append(problems, s.Name+" still terminating")
			case len(ips) != 1:
				problems = append(problems, fmt.Sprintf("%s has %v", s.Name, ips))
			case addrs[ips[0]] != "":
				problems = append(problems, fmt.Sprintf("%s and %s both have %s", s.Name, addrs[ips[0]], ips[0]))
			default:
				addrs[ips[0]] = s.Name
			}
		}
		if len(list.Items) != len(live) {
			problems = append(problems, fmt.Sprintf("%d Services, %d expected", len(list.Items), len(live)))
		}
		return strings.Join(problems, "; "), len(problems) == 0
	})
	t.Logf("churn stopped → every deleted Service gone and every survivor allocated in %v (%v after the last kill)",
		settled.Round(time.Millisecond), time.Since(lastKill).Round(time.Millisecond))
	checkUnique(t, lbSnapshot(t))
	waitPoolInUse(t, name, len(live))

	// No address leaked: the rest of the pool can be allocated, and not one more.
	fillStart := time.Now()
	for i := range poolSize - len(live) {
		create(t, newService(fmt.Sprintf("fill-%d", i)))
	}
	for i := range poolSize - len(live) {
		ip := waitIngress(t, ns, fmt.Sprintf("fill-%d", i), 1, 30*time.Second)[0]
		if other := addrs[ip]; other != "" {
			t.Errorf("fill-%d got %s, which %s holds", i, ip, other)
		}
		addrs[ip] = fmt.Sprintf("fill-%d", i)
	}
	t.Logf("the %d free addresses allocated in %v", poolSize-len(live), time.Since(fillStart).Round(time.Millisecond))
	create(t, newService("over"))
	condition(t, ns, "over", condAllocated, metav1.ConditionFalse, "PoolExhausted", 30*time.Second)
	waitPoolInUse(t, name, poolSize)
	checkControllerLog(t, ctrlLog())
	after := lbSnapshot(t)
	checkUnchanged(t, before, after)
	checkUnique(t, after)
}

// TestFaultTwoControllers: a second berth-controller replica starts while the first one
// restarts after a SIGKILL. Exactly one of them allocates at any time: the Lease names
// one holder, and the apiserver's audit log shows writes to Services only from the
// replica holding it. Killing the leader hands over to the other without moving any
// address.
func TestFaultTwoControllers(t *testing.T) {
	ns := namespace(t)
	deployment(t, ns, "web", 1)
	lbService(t, ns, "a", "web", dualStack)
	lbService(t, ns, "b", "web", bgpPool)
	ingress(t, ns, "a", 2)
	ingress(t, ns, "b", 1)
	before := lbSnapshot(t)
	checkUnique(t, before)

	leases := watchLease(t)
	since := time.Now()
	first := env.berth.Controller
	firstLog := logFrom(first)
	restarts := first.Restarts()
	if err := first.Process().Kill(); err != nil {
		t.Fatal(err)
	}
	const identity = "lab-2"
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute) // bounds every stop and start
	defer cancel()
	second, err := env.berth.StartController(ctx, identity)
	if err != nil {
		t.Fatal(err)
	}
	replicas := map[string]*lab.Supervised{lab.ControllerIdentity: first, identity: second}
	t.Cleanup(func() {
		// The second replica releases the Lease as it stops; the first takes it back.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := first.Start(ctx); err != nil {
			t.Error(err)
		}
		if err := second.Close(); err != nil {
			t.Errorf("stop %s: %v", identity, err)
		}
		// Not lab.Eventually: the test's context has ended.
		for {
			l, err := env.kc.CoordinationV1().Leases(lab.BerthNamespace).Get(ctx, controllerLease, metav1.GetOptions{})
			if err == nil && ptr.Deref(l.Spec.HolderIdentity, "") == lab.ControllerIdentity {
				return
			}
			select {
			case <-ctx.Done():
				t.Errorf("%s did not take berth-controller's Lease back: %v", lab.ControllerIdentity, err)
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	lab.Eventually(t, 60*time.Second, "the first replica restarted", func(context.Context) (string, bool) {
		return fmt.Sprintf("%d restarts", first.Restarts()), first.Restarts() > restarts
	})
	// Both run; the first keeps the Lease (same identity: it renews its own).
	leader := waitLeader(t, "", since, 60*time.Second)
	lbService(t, ns, "both", "web", nil)
	waitIngress(t, ns, "both", 1, 60*time.Second)
	t.Logf("both replicas run; %s leads", leader)

	// The leader dies (held down): the other takes over when the Lease expires.
	other := identity
	if leader == identity {
		other = lab.ControllerIdentity
	}
	if err := replicas[leader].Stop(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitLeader(t, other, killed, 60*time.Second)
	took := time.Since(killed)
	lbService(t, ns, "taken-over", "web", nil)
	waitIngress(t, ns, "taken-over", 1, 60*time.Second)
	t.Logf("leader %s killed → %s holds the Lease in %v, allocates a new Service in %v",
		leader, other, took.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	after := lbSnapshot(t)
	checkUnchanged(t, before, after)
	checkUnique(t, after)

	// The killed one comes back as a standby; the Lease stays.
	if err := replicas[leader].Start(ctx); err != nil {
		t.Fatal(err)
	}
	lbService(t, ns, "standby-back", "web", nil)
	sb := waitIngress(t, ns, "standby-back", 1, 60*time.Second)
	// Its Announced condition too: no write of the leader is in flight when it stops.
	waitL2Owner(t, ns, "standby-back", sb[0], func(string) bool { return true })
	if h := leases.holder(t); h != other {
		t.Errorf("the Lease moved to %q when %s came back as a standby", h, leader)
	}

	// The leader stops gracefully (SIGTERM, as a rollout would): it releases the Lease
	// and the standby takes it at its next try.
	if err := replicas[other].Stop(ctx, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	waitLeader(t, leader, stopped, 30*time.Second)
	lbService(t, ns, "handed-back", "web", nil)
	waitIngress(t, ns, "handed-back", 1, 60*time.Second)
	t.Logf("leader %s stopped → %s holds the Lease and allocates in %v", other, leader, time.Since(stopped).Round(time.Millisecond))
	if err := replicas[other].Start(ctx); err != nil {
		t.Fatal(err)
	}
	after = lbSnapshot(t)
	checkUnchanged(t, before, after)
	checkUnique(t, after)

	// The audit log: every write to a Service came from the replica holding the Lease.
	checkSingleWriter(t, since, leases)
	checkControllerLog(t, firstLog())
	b, err := os.ReadFile(second.Process().LogPath())
	if err != nil {
		t.Fatal(err)
	}
	checkControllerLog(t, string(b))
}

// stopComponent stops a control-plane component; the test's end starts it again if the
// test did not.
func stopComponent(t *testing.T, component string) {
	t.Helper()
	c := env.site.Cluster()
	t.Cleanup(func() {
		if c.Process(component) != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := c.Start(ctx, component); err != nil {
			t.Errorf("start %s again: %v", component, err)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := c.Stop(ctx, component); err != nil {
		t.Fatal(err)
	}
}

// waitSpeakersSee waits until every speaker's /decisions lists the Service: their
// Service watches work.
func waitSpeakersSee(t *testing.T, ns, svc string, within time.Duration) {
	t.Helper()
	lab.Eventually(t, within, fmt.Sprintf("every speaker sees %s/%s", ns, svc), func(ctx context.Context) (string, bool) {
		var blind []string
		for _, node := range env.nodes {
			b, err := lab.AskSocket(ctx, env.site.SpeakerSocket(node), "/decisions")
			var d struct {
				Services []struct{ Namespace, Name string }
			}
			if err == nil {
				err = json.Unmarshal(b, &d)
			}
			if err != nil || !slices.ContainsFunc(d.Services, func(s struct{ Namespace, Name string }) bool {
				return s.Namespace == ns && s.Name == svc
			}) {
				blind = append(blind, fmt.Sprintf("%s (%v)", node, err))
			}
		}
		return fmt.Sprint("not seen by ", blind), len(blind) == 0
	})
}

// waitEndpoints waits until an EndpointSlice of the Service has a ready endpoint.
func waitEndpoints(t *testing.T, ns, svc string, within time.Duration) {
	t.Helper()
	lab.Eventually(t, within, fmt.Sprintf("%s/%s has a ready endpoint", ns, svc), func(ctx context.Context) (string, bool) {
		slices, err := env.kc.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
		if err != nil {
			return err.Error(), false
		}
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if ptr.Deref(e.Conditions.Ready, false) {
					return "", true
				}
			}
		}
		return fmt.Sprintf("%d slices, no ready endpoint", len(slices.Items)), false
	})
}

// waitPoolInUse waits until the pool's status counts n IPv4 addresses in use.
func waitPoolInUse(t *testing.T, pool string, n int) {
	t.Helper()
	lab.Eventually(t, 30*time.Second, fmt.Sprintf("pool %s counts %d addresses in use", pool, n), func(ctx context.Context) (string, bool) {
		var p v1alpha1.IPPool
		if err := env.cr.Get(ctx, client.ObjectKey{Name: pool}, &p); err != nil {
			return err.Error(), false
		}
		if p.Status.IPv4 == nil {
			return "no IPv4 status", false
		}
		return fmt.Sprintf("inUse %q of %q", p.Status.IPv4.InUse, p.Status.IPv4.Capacity), p.Status.IPv4.InUse == fmt.Sprint(n)
	})
}

// lbState is what a snapshot keeps of a LoadBalancer Service.
type lbState struct {
	ips         []netip.Addr
	sharingKey  string
	terminating bool
}

// lbSnapshot reads every LoadBalancer Service of the cluster, by namespace/name.
func lbSnapshot(t *testing.T) map[string]lbState {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	list, err := env.kc.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]lbState{}
	for _, s := range list.Items {
		if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		out[s.Namespace+"/"+s.Name] = lbState{ips: ingressOf(&s), sharingKey: s.Annotations["berth.dev/sharing-key"],
			terminating: s.DeletionTimestamp != nil}
	}
	return out
}

// checkUnchanged: every Service of before that still exists (and is not being deleted)
// has the same addresses: none lost, none moved.
func checkUnchanged(t *testing.T, before, after map[string]lbState) {
	t.Helper()
	n := 0
	for key, b := range before {
		a, ok := after[key]
		if !ok || a.terminating || b.terminating {
			continue
		}
		n++
		if !slices.Equal(a.ips, b.ips) {
			t.Errorf("%s: addresses %v, before the fault %v", key, a.ips, b.ips)
		}
	}
	t.Logf("%d Services kept their addresses", n)
}

// checkUnique: no two Services (not being deleted) hold one address, unless they share
// it by one sharing key.
func checkUnique(t *testing.T, snap map[string]lbState) {
	t.Helper()
	holders := map[netip.Addr][]string{}
	for key, s := range snap {
		if s.terminating {
			continue
		}
		for _, ip := range s.ips {
			holders[ip] = append(holders[ip], key)
		}
	}
	for ip, keys := range holders {
		if len(keys) < 2 {
			continue
		}
		shared := snap[keys[0]].sharingKey != ""
		for _, k := range keys[1:] {
			shared = shared && snap[k].sharingKey == snap[keys[0]].sharingKey
		}
		if !shared {
			slices.Sort(keys)
			t.Errorf("%s is held by %v without a common sharing key", ip, keys)
		}
	}
}

// logFrom returns a function that reads what the supervised program logged since now
// (its restarts append to the same file).
func logFrom(s *lab.Supervised) func() string {
	path := s.Process().LogPath()
	var offset int64
	if fi, err := os.Stat(path); err == nil {
		offset = fi.Size()
	}
	return func() string {
		b, err := os.ReadFile(path)
		if err != nil || int64(len(b)) < offset {
			return fmt.Sprintf("(log %s: %v)", path, err)
		}
		return string(b[offset:])
	}
}

// panicRE matches what a crashing Go program prints (and the race detector).
var panicRE = regexp.MustCompile(`(?m)^(panic: .*|fatal error: .*|goroutine \d+ \[running\]:|WARNING: DATA RACE)`)

// checkControllerLog: berth-controller crashed nowhere in log.
func checkControllerLog(t *testing.T, log string) {
	t.Helper()
	if m := panicRE.FindString(log); m != "" {
		t.Errorf("berth-controller logged %q", m)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// waitLeader waits until berth-controller's Lease names identity (any holder when
// empty) and was renewed after since, and returns the holder.
func waitLeader(t *testing.T, identity string, since time.Time, within time.Duration) string {
	t.Helper()
	var holder string
	lab.Eventually(t, within, fmt.Sprintf("%q holds berth-controller's Lease", identity), func(ctx context.Context) (string, bool) {
		l, err := env.kc.CoordinationV1().Leases(lab.BerthNamespace).Get(ctx, controllerLease, metav1.GetOptions{})
		if err != nil {
			return err.Error(), false
		}
		holder = ptr.Deref(l.Spec.HolderIdentity, "")
		renewed := l.Spec.RenewTime != nil && l.Spec.RenewTime.After(since)
		return fmt.Sprintf("holder %q renewed %v", holder, l.Spec.RenewTime), renewed && holder != "" && (identity == "" || holder == identity)
	})
	return holder
}

// leaseTerm is one holder's term of berth-controller's Lease: from its acquisition to
// the next one.
type leaseTerm struct {
	holder   string
	acquired time.Time
}

// leaseWatch records the Lease's terms as observed by polling every 20 ms.
type leaseWatch struct {
	mu          sync.Mutex
	terms       []leaseTerm
	transitions []int32 // leaseTransitions first and last seen
	err         error
}

// watchLease polls berth-controller's Lease until the test ends.
func watchLease(t *testing.T) *leaseWatch {
	t.Helper()
	w := &leaseWatch{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			l, err := env.kc.CoordinationV1().Leases(lab.BerthNamespace).Get(ctx, controllerLease, metav1.GetOptions{})
			if err == nil && l.Spec.AcquireTime != nil {
				term := leaseTerm{holder: ptr.Deref(l.Spec.HolderIdentity, ""), acquired: l.Spec.AcquireTime.Time}
				w.mu.Lock()
				if n := len(w.terms); n == 0 || w.terms[n-1] != term {
					w.terms = append(w.terms, term)
				}
				tr := ptr.Deref(l.Spec.LeaseTransitions, 0)
				if len(w.transitions) == 0 {
					w.transitions = []int32{tr, tr}
				}
				w.transitions[1] = tr
				w.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	lab.Eventually(t, 10*time.Second, "the Lease is read", func(context.Context) (string, bool) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return "", len(w.terms) > 0
	})
	return w
}

// holder is the last holder seen.
func (w *leaseWatch) holder(t *testing.T) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.terms[len(w.terms)-1].holder
}

// agentIdentity picks the replica's identity out of berth-controller's user agent,
// "berth-controller/<version> (<identity>)[ events|announced]".
var agentIdentity = regexp.MustCompile(`^berth-controller/\S+ \(([^)]*)\)`)

// checkSingleWriter reads the audit log since since: every write of berth-controller's
// ServiceAccount to a Service (or its status) came from the replica holding the Lease at
// the time, and the Lease changed hands only as observed.
func checkSingleWriter(t *testing.T, since time.Time, w *leaseWatch) {
	t.Helper()
	w.mu.Lock()
	terms := slices.Clone(w.terms)
	transitions := slices.Clone(w.transitions)
	w.mu.Unlock()
	// client-go counts a transition whenever a replica takes the Lease from another
	// holder, or after a release (holder "").
	changes := 0
	for i := 1; i < len(terms); i++ {
		if terms[i].holder != terms[i-1].holder && terms[i].holder != "" {
			changes++
		}
	}
	var desc []string
	for _, term := range terms {
		desc = append(desc, fmt.Sprintf("%q from %s", term.holder, term.acquired.Format("15:04:05.000")))
	}
	t.Logf("Lease terms: %s; leaseTransitions %v", strings.Join(desc, ", "), transitions)
	if d := int(transitions[1] - transitions[0]); d != changes {
		t.Errorf("leaseTransitions went %d → %d, but %d hand-overs were observed: a term was missed", transitions[0], transitions[1], changes)
	}
	events, err := controlplane.ReadAuditFile(env.site.Cluster().AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	writes := map[string]int{}
	for _, e := range events {
		r := e.ObjectRef
		if e.Stage != "ResponseComplete" || e.User.Username != controllerUser || e.RequestReceivedTimestamp.Before(since) ||
			r == nil || r.Resource != "services" || r.APIGroup != "" || !slices.Contains([]string{"create", "update", "patch", "delete"}, e.Verb) {
			continue
		}
		m := agentIdentity.FindStringSubmatch(e.UserAgent)
		if m == nil {
			t.Errorf("a write by an unknown agent %q: %s", e.UserAgent, e)
			continue
		}
		writes[m[1]]++
		at := e.RequestReceivedTimestamp
		holder := ""
		for _, term := range terms {
			if !term.acquired.After(at) {
				holder = term.holder
			}
		}
		if holder != m[1] {
			t.Errorf("%s by %s at %s, while the Lease was %q's", e, m[1], at.Format("15:04:05.000000"), holder)
		}
	}
	t.Logf("writes to Services by replica: %v", writes)
	if len(writes) == 0 {
		t.Error("no write to a Service in the audit log")
	}
}
