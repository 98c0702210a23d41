//go:build integration && privileged && timing

package speaker_test

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/controlplane"
)

// TestSpeakersSLO runs three speakers in a lab site and checks, from their decision
// endpoints: one L2 owner per IP that all agree on; an eTP=Local endpoint move followed
// within 1 s and shown in the Service's condition; failover within 1 s of a SIGKILL; and
// an apiserver outage that changes nothing but still lets L2 IPs move off a dead node.
func TestSpeakersSLO(t *testing.T) {
	w := startWorld(t, worldOptions{nodes: 3})
	w.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}})
	for i, n := range w.nodes {
		w.pod(fmt.Sprintf("web-%d", i), n, "web")
	}
	w.pod("local-a", w.nodes[0], "local")
	const webServices = 8
	for i := range webServices {
		w.service(fmt.Sprintf("web-%d", i), "web", corev1.ServiceExternalTrafficPolicyCluster)
	}
	w.service("local", "local", corev1.ServiceExternalTrafficPolicyLocal)
	services := webServices + 1

	var owners map[string]string
	lab.Eventually(t, 30*time.Second, "speakers agree on one L2 owner per IP", func(ctx context.Context) (string, bool) {
		views, err := w.l2Views(ctx, w.nodes)
		if err != nil {
			return err.Error(), false
		}
		o, why := agree(views, w.nodes, services)
		if o != nil && len(o) != services {
			return fmt.Sprintf("%d IPs, want %d", len(o), services), false
		}
		owners = o
		return why, o != nil
	})
	perNode := map[string]int{}
	for _, o := range owners {
		perNode[o]++
	}
	t.Logf("L2 owners: %v (IPs per node %v)", owners, perNode)

	t.Run("endpoint move", func(t *testing.T) { w.endpointMove(t) })
	t.Run("failover", func(t *testing.T) { w.failover(t, services) })
	t.Run("apiserver outage", func(t *testing.T) { w.outage(t, services) })
}

// localIP returns the IP of the eTP=Local Service.
func (w *world) localIP(ctx context.Context) string {
	svc, err := w.kc.CoreV1().Services("demo").Get(ctx, "local", metav1.GetOptions{})
	if err != nil || len(svc.Status.LoadBalancer.Ingress) == 0 {
		w.t.Fatalf("Service local has no IP: %v", err)
	}
	return svc.Status.LoadBalancer.Ingress[0].IP
}

func (w *world) endpointMove(t *testing.T) {
	ip := w.localIP(t.Context())
	var samples []time.Duration
	from := w.nodes[0]
	for i, to := range []string{w.nodes[1], w.nodes[2], w.nodes[0]} {
		name := fmt.Sprintf("local-%d", i)
		w.pod(name, to, "local")
		old := "local-a"
		if i > 0 {
			old = fmt.Sprintf("local-%d", i-1)
		}
		if err := w.kc.CoreV1().Pods("demo").Delete(t.Context(), old, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatal(err)
		}
		// The clock starts when the EndpointSlice says the endpoint moved, as the speakers
		// see it too.
		lab.Eventually(t, 30*time.Second, "endpoint of local moves to "+to, func(ctx context.Context) (string, bool) {
			got := w.readyNodes(ctx, "local")
			return fmt.Sprint(got), slices.Equal(got, []string{to})
		})
		moved := time.Now()
		lab.Eventually(t, 10*time.Second, "speakers follow the endpoint to "+to, func(ctx context.Context) (string, bool) {
			views, err := w.l2Views(ctx, w.nodes)
			if err != nil {
				return err.Error(), false
			}
			var seen []string
			for _, n := range w.nodes {
				seen = append(seen, n+":"+views[n].owners[ip])
				if views[n].owners[ip] != to || views[n].announced[ip] != (n == to) {
					return fmt.Sprint(seen), false
				}
			}
			return "", true
		})
		samples = append(samples, time.Since(moved))
		lab.Eventually(t, 10*time.Second, "condition berth.dev/Announced names "+to, func(ctx context.Context) (string, bool) {
			svc, err := w.kc.CoreV1().Services("demo").Get(ctx, "local", metav1.GetOptions{})
			if err != nil {
				return err.Error(), false
			}
			c := meta.FindStatusCondition(svc.Status.Conditions, "berth.dev/Announced")
			if c == nil {
				return "no condition", false
			}
			return c.Message, c.Status == metav1.ConditionTrue && strings.Contains(c.Message, "L2") &&
				strings.Contains(c.Message, to) && !strings.Contains(c.Message, from)
		})
		from = to
	}
	lab.SLO(t, "eTP=Local endpoint move → decision", samples, time.Second)
}

// failover SIGKILLs the speaker owning the most IPs, five times, and measures until both
// survivors' decisions give its IPs to live nodes.
func (w *world) failover(t *testing.T, services int) {
	var samples []time.Duration
	for i := range 5 {
		views, err := w.l2Views(t.Context(), w.nodes)
		if err != nil {
			t.Fatal(err)
		}
		owners, why := agree(views, w.nodes, services)
		if owners == nil {
			t.Fatalf("before kill %d: %s", i, why)
		}
		victim := busiest(owners)
		survivors := w.others(victim)
		if err := w.speakers[victim].Kill(); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		lab.Eventually(t, 10*time.Second, fmt.Sprintf("kill %d: survivors take %s's IPs", i, victim), func(ctx context.Context) (string, bool) {
			return w.tookOver(ctx, survivors, victim, owners)
		})
		samples = append(samples, time.Since(killed))
		if i == 0 {
			w.conditionDropsDead(t, victim, owners)
		}
		w.startSpeaker(victim)
		lab.Eventually(t, 20*time.Second, fmt.Sprintf("%s rejoins", victim), func(ctx context.Context) (string, bool) {
			views, err := w.l2Views(ctx, w.nodes)
			if err != nil {
				return err.Error(), false
			}
			o, why := agree(views, w.nodes, services)
			return why, o != nil && busiest(o) != "" && contains(o, victim)
		})
	}
	lab.SLO(t, "SIGKILL → survivors' decisions", samples, time.Second)
}

// conditionDropsDead waits until the condition of a Service the dead node owned names the
// new owner and no longer the dead node, whose NodeAnnouncement still lists it.
func (w *world) conditionDropsDead(t *testing.T, dead string, before map[string]string) {
	var ip string
	for a, o := range before {
		if o == dead && (ip == "" || a < ip) {
			ip = a
		}
	}
	survivor := w.others(dead)[0]
	views, err := w.l2Views(t.Context(), []string{survivor})
	if err != nil {
		t.Fatal(err)
	}
	svc, owner := views[survivor].service[ip], views[survivor].owners[ip]
	lab.Eventually(t, 10*time.Second, fmt.Sprintf("condition of %s names %s, not the dead %s", svc, owner, dead), func(ctx context.Context) (string, bool) {
		s, err := w.kc.CoreV1().Services("demo").Get(ctx, svc, metav1.GetOptions{})
		if err != nil {
			return err.Error(), false
		}
		c := meta.FindStatusCondition(s.Status.Conditions, "berth.dev/Announced")
		if c == nil {
			return "no condition", false
		}
		return c.Message, strings.Contains(c.Message, owner) && !strings.Contains(c.Message, dead)
	})
}

// tookOver checks that no survivor still gives victim an IP, that survivors agree, and that
// the new owner of each of victim's IPs announces it.
func (w *world) tookOver(ctx context.Context, survivors []string, victim string, before map[string]string) (string, bool) {
	views, err := w.l2Views(ctx, survivors)
	if err != nil {
		return err.Error(), false
	}
	for ip, owner := range before {
		if owner != victim {
			continue
		}
		now := views[survivors[0]].owners[ip]
		for _, n := range survivors {
			if got := views[n].owners[ip]; got != now || got == victim {
				return fmt.Sprintf("%s: %s says owner %q", ip, n, got), false
			}
		}
		if now != "" && !views[now].announced[ip] {
			return fmt.Sprintf("%s: new owner %s does not announce it yet", ip, now), false
		}
	}
	return "", true
}

func busiest(owners map[string]string) string {
	count := map[string]int{}
	best := ""
	for _, o := range owners {
		count[o]++
	}
	for n, c := range count {
		if n != "" && (best == "" || c > count[best] || c == count[best] && n < best) {
			best = n
		}
	}
	return best
}

func contains(owners map[string]string, node string) bool {
	for _, o := range owners {
		if o == node {
			return true
		}
	}
	return false
}

// outage stops the apiserver for 30 s: the speakers' decisions must not change, and a
// speaker killed meanwhile must have its L2 IPs taken by the others.
func (w *world) outage(t *testing.T, services int) {
	api := w.site.Cluster().Process(controlplane.APIServer)
	if api == nil {
		t.Fatal("no apiserver process")
	}
	views, err := w.l2Views(t.Context(), w.nodes)
	if err != nil {
		t.Fatal(err)
	}
	before, why := agree(views, w.nodes, services)
	if before == nil {
		t.Fatalf("before the outage: %s", why)
	}
	if err := api.Pause(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := api.Resume(); err != nil {
				t.Errorf("resume apiserver: %v", err)
			}
			t.Logf("apiserver resumed after %v", time.Since(stopped).Round(time.Millisecond))
		}
	}
	defer resume()

	// Unchanged for 10 s.
	for time.Since(stopped) < 10*time.Second {
		views, err := w.l2Views(t.Context(), w.nodes)
		if err != nil {
			t.Fatalf("decision endpoint during the outage: %v", err)
		}
		if now, why := agree(views, w.nodes, services); now == nil || !maps.Equal(now, before) {
			t.Fatalf("decisions changed during the outage: %s; before %v, now %v", why, before, now)
		}
		time.Sleep(200 * time.Millisecond) // sampling, not waiting for a condition
	}
	victim := busiest(before)
	survivors := w.others(victim)
	if err := w.speakers[victim].Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	lab.Eventually(t, 5*time.Second, "survivors take "+victim+"'s IPs during the outage", func(ctx context.Context) (string, bool) {
		return w.tookOver(ctx, survivors, victim, before)
	})
	took := time.Since(killed)
	t.Logf("during the outage, %s's IPs were taken over in %v (bound 2s)", victim, took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("takeover during the outage took %v, want ≤ 2s", took)
	}
	views, err = w.l2Views(t.Context(), survivors)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := agree(views, survivors, services)
	for time.Since(stopped) < 30*time.Second {
		views, err := w.l2Views(t.Context(), survivors)
		if err != nil {
			t.Fatalf("decision endpoint during the outage: %v", err)
		}
		if now, why := agree(views, survivors, services); now == nil || !maps.Equal(now, after) {
			t.Fatalf("decisions changed during the outage after the takeover: %s", why)
		}
		time.Sleep(200 * time.Millisecond)
	}
	resume()
	w.startSpeaker(victim)
	lab.Eventually(t, 30*time.Second, "all three agree after the outage", func(ctx context.Context) (string, bool) {
		views, err := w.l2Views(ctx, w.nodes)
		if err != nil {
			return err.Error(), false
		}
		o, why := agree(views, w.nodes, services)
		return why, o != nil
	})
	// The status catches up: every NodeAnnouncement lists what its speaker announces.
	lab.Eventually(t, 10*time.Second, "NodeAnnouncements match the decisions", func(ctx context.Context) (string, bool) {
		views, err := w.l2Views(ctx, w.nodes)
		if err != nil {
			return err.Error(), false
		}
		for _, n := range w.nodes {
			var na v1alpha1.NodeAnnouncement
			if err := w.cr.Get(ctx, client.ObjectKey{Name: n}, &na); err != nil {
				if apierrors.IsNotFound(err) {
					return n + ": no NodeAnnouncement", false
				}
				return err.Error(), false
			}
			if int(na.Status.L2) != len(views[n].announced) {
				return fmt.Sprintf("%s: NodeAnnouncement lists %d L2 IPs, decisions %d", n, na.Status.L2, len(views[n].announced)), false
			}
		}
		return "", true
	})
}

// TestSpeakerMemorySLO reports a speaker's resident memory once it decided 10,000
// Services with their EndpointSlices, and how long its start took. Target ≤ 150 MB. The
// objects exist before the speaker starts: creating 30,000 objects is the apiserver's
// work, not the speaker's, and runs faster without a watcher.
func TestSpeakerMemorySLO(t *testing.T) {
	const target = 150 << 20
	services := 10000
	if n, err := strconv.Atoi(os.Getenv("BERTH_SLO_SERVICES")); err == nil && n > 0 {
		services = n // a smaller run while debugging; CI runs 10,000
	}
	w := startWorld(t, worldOptions{nodes: 1, noController: true, noSpeakers: true})
	w.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}})
	cfg := rest.CopyConfig(w.site.Config())
	cfg.QPS, cfg.Burst = 5000, 5000
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	node := w.nodes[0]
	begin := time.Now()
	work := make(chan int)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range work {
				if i%1000 == 999 {
					t.Logf("%d Services created after %v", i+1, time.Since(begin).Round(time.Millisecond))
				}
				if err := createLoaded(t.Context(), kc, i, node); err != nil {
					errs <- err
					return
				}
			}
		})
	}
feed:
	for i := range services {
		select {
		case work <- i:
		case err := <-errs:
			t.Error(err)
			break feed
		}
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("created %d Services with ingress and EndpointSlices in %v", services, time.Since(begin).Round(time.Millisecond))
	begin = time.Now()
	w.startSpeaker(node)
	lab.Eventually(t, 2*time.Minute, "the speaker decides every Service", func(ctx context.Context) (string, bool) {
		v, err := w.decisions(ctx, node)
		if err != nil {
			return err.Error(), false
		}
		announced := 0
		for _, s := range v.Services {
			if len(s.IPs) == 1 && s.IPs[0].L2.Announce {
				announced++
			}
		}
		return fmt.Sprintf("%d of %d announced", announced, len(v.Services)), announced == services
	})
	t.Logf("the speaker started and decided all %d in %v", services, time.Since(begin).Round(time.Millisecond))
	rss, hwm, anon := procMemory(t, w.speakers[node].PID())
	t.Logf("berth-speaker with %d Services: RSS %d MiB (anonymous %d MiB), peak %d MiB (target ≤ %d MiB)", services, rss>>20, anon>>20, hwm>>20, target>>20)
	if m, err := lab.AskSocket(t.Context(), w.site.SpeakerSocket(node), "/metrics"); err == nil {
		t.Logf("its Go heap: in use %d MiB, idle %d MiB of which released %d MiB; GC goal %d MiB", metric(m, "go_memstats_heap_inuse_bytes")>>20,
			metric(m, "go_memstats_heap_idle_bytes")>>20, metric(m, "go_memstats_heap_released_bytes")>>20, metric(m, "go_gc_heap_goal_bytes")>>20)
	}
	if file := os.Getenv("BERTH_SLO_HEAP_PROFILE"); file != "" { // for `go tool pprof`
		if p, err := lab.AskSocket(t.Context(), w.site.SpeakerSocket(node), "/debug/pprof/heap"); err != nil {
			t.Errorf("heap profile: %v", err)
		} else if err := os.WriteFile(file, p, 0o644); err != nil {
			t.Error(err)
		}
	}
	if rss > target {
		t.Errorf("RSS %d MiB > %d MiB", rss>>20, target>>20)
	}
}

// metric reads one unlabelled value from a Prometheus text exposition; 0 when missing.
func metric(exposition []byte, name string) int64 {
	for _, line := range strings.Split(string(exposition), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int64(f)
		}
	}
	return 0
}

// createLoaded creates Service i of the memory test: an IPv6 ingress from the L2 pool,
// and an EndpointSlice with a ready endpoint on node and one without a node.
func createLoaded(ctx context.Context, kc kubernetes.Interface, i int, node string) error {
	name := fmt.Sprintf("svc-%05d", i)
	svc, err := kc.CoreV1().Services("demo").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: ptr.To(false),
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	ip := netip.MustParseAddr("2001:db8:18:2::1:0")
	b := ip.As16()
	b[14], b[15] = byte(i>>8), byte(i)
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: netip.AddrFrom16(b).String()}}
	if _, err := kc.CoreV1().Services("demo").UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("ingress of %s: %w", name, err)
	}
	_, err = kc.DiscoveryV1().EndpointSlices("demo").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "demo", Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"198.19.1.2"}, NodeName: ptr.To(node), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"198.19.9.2"}},
		},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("endpoints of %s: %w", name, err)
	}
	return nil
}

// procMemory reads a process's resident set and its peak from /proc.
func procMemory(t *testing.T, pid int) (rss, hwm, anon int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		case "RssAnon:":
			anon = kb << 10
		}
	}
	if rss == 0 {
		t.Fatalf("no VmRSS in /proc/%d/status", pid)
	}
	return rss, hwm, anon
}
