//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/controlplane"
	"github.com/berthlb/berth/lab/echo"
	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
	"github.com/berthlb/berth/lab/router"
)

// Goals of issue 9, judged by lab.SLO: every sample ≤ 2× goal, median ≤ goal.
const (
	createReachableGoal = 2 * time.Second
	l2FailoverGoal      = time.Second
	bgpWithdrawGoal     = time.Second
)

// TestCreateReachableSLO: 20 L2 and 20 BGP Services, created at once, each answers its
// client within 2 s of its creation. Each asks for its address, so that a prober (a new
// UDP flow every 50 ms) listens from before the Service exists; the time is from the
// Service's creation to the first reply.
func TestCreateReachableSLO(t *testing.T) {
	t.Logf("kube-proxy min-sync-period %v (it programs the new addresses)", controlplane.KubeProxyMinSyncPeriod)
	for _, c := range []struct {
		kind   string
		client lab.Host
		first  netip.Addr
		change func(*corev1.Service)
	}{
		{"L2", l2Client(), netip.MustParseAddr("198.18.2.220"), nil},
		{"BGP", routedClient(), netip.MustParseAddr("203.0.113.200"), bgpPool},
	} {
		t.Run(c.kind, func(t *testing.T) {
			ns := namespace(t)
			deployment(t, ns, "web", 3)
			waitPods(t, ns, "web", 3)
			const n = 20
			probers := make([]*proc.Process, n)
			ips := make([]netip.Addr, n)
			ip := c.first
			for i := range n {
				ips[i] = ip
				// 50 ms: fine enough for a 2 s goal, light enough that 20 probers do not
				// load the 2 cores the measured parts run on.
				probers[i] = startProber(t, c.client, ip, 50*time.Millisecond, true)
				ip = ip.Next()
			}
			// Where the time goes: the address in status (a watch) and, for BGP, the route
			// in FRR's kernel table (ip monitor).
			addressed := watchAddressed(t, ns)
			var routes *netns.RouteMonitor
			if c.kind == "BGP" {
				var err error
				if routes, err = env.site.Network().FRR.NS().MonitorRoutes(t.Context()); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(routes.Stop)
			}
			created := make([]time.Time, n)
			for i := range n {
				created[i] = time.Now()
				lbService(t, ns, fmt.Sprintf("svc-%02d", i), "web", all(c.change, func(s *corev1.Service) {
					s.Annotations["berth.dev/load-balancer-ips"] = ips[i].String()
				}))
			}
			var samples, toStatus, toRoute []time.Duration
			for i, p := range probers {
				lab.Eventually(t, 30*time.Second, fmt.Sprintf("%s answers", ips[i]), func(context.Context) (string, bool) {
					return "no reply", len(echo.ParseProbeLog(p.Log())) > 0
				})
				took := echo.ParseProbeLog(p.Log())[0].At.Sub(created[i])
				if took < 0 {
					t.Errorf("%s answered %v before its Service was created", ips[i], -took)
				}
				samples = append(samples, took)
				if at, ok := addressed(fmt.Sprintf("svc-%02d", i)); ok {
					toStatus = append(toStatus, at.Sub(created[i]))
				}
				if routes != nil {
					if at, ok := routes.AddedAt(netip.PrefixFrom(ips[i], 32)); ok {
						toRoute = append(toRoute, at.Sub(created[i]))
					}
				}
			}
			lab.SLO(t, fmt.Sprintf("%s: create → reachable from the client, %d Services", c.kind, n), samples, createReachableGoal)
			t.Logf("%s: create → address in status: %s", c.kind, percentiles(toStatus))
			if routes != nil {
				t.Logf("%s: create → route in FRR's kernel table: %s", c.kind, percentiles(toRoute))
			}
		})
	}
}

// watchAddressed watches the Services of ns and returns when each was first seen with an
// address in its status.
func watchAddressed(t *testing.T, ns string) func(name string) (time.Time, bool) {
	t.Helper()
	w, err := env.kc.CoreV1().Services(ns).Watch(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	first := map[string]time.Time{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if svc, ok := ev.Object.(*corev1.Service); ok && len(svc.Status.LoadBalancer.Ingress) > 0 {
				mu.Lock()
				if _, seen := first[svc.Name]; !seen {
					first[svc.Name] = time.Now()
				}
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		w.Stop()
		<-done
	})
	return func(name string) (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		at, ok := first[name]
		return at, ok
	}
}

// percentiles is "p50 … max …" of samples, for figures that explain an SLO.
func percentiles(samples []time.Duration) string {
	if len(samples) == 0 {
		return "no samples"
	}
	s := slices.Sorted(slices.Values(samples))
	return fmt.Sprintf("p50 %v max %v (%d samples)", s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), len(s))
}

// startProber runs a UDP prober from client to ip:80 every interval until the test ends.
func startProber(t *testing.T, client lab.Host, ip netip.Addr, interval time.Duration, fresh bool) *proc.Process {
	t.Helper()
	p, err := env.site.StartProber(t.Context(), client.NS, netip.AddrPortFrom(ip, 80), interval, fresh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(time.Second) })
	return p
}

// TestL2FailoverSLO: the owner's speaker is SIGKILLed (its node stays up, still
// forwarding what reaches it); another node takes the address over, and the client's
// neighbour entry points at it within 1 s. The client's longest silence is printed too.
func TestL2FailoverSLO(t *testing.T) {
	ns, ip, _, _ := l2AndBGP(t)
	p := startProber(t, l2Client(), ip, 20*time.Millisecond, false)
	macs := map[string]string{}
	for _, n := range env.site.Nodes() {
		macs[n.L2MAC.String()] = n.Name
	}
	var takeovers, silences []time.Duration
	for i := range 5 {
		// The Announced condition follows the speakers' reports (≥ 1 s apart), the client
		// follows their ARP at once: start once both name the same owner.
		var owner string
		lab.Eventually(t, 30*time.Second, fmt.Sprintf("round %d: the client sends %s to its owner", i, ip), func(ctx context.Context) (string, bool) {
			mac, err := l2Client().NS.NeighborMAC(ctx, ip)
			if err != nil {
				return err.Error(), false
			}
			svc, err := env.kc.CoreV1().Services(ns).Get(ctx, "l2", metav1.GetOptions{})
			if err != nil {
				return err.Error(), false
			}
			owner = ""
			if c := meta.FindStatusCondition(svc.Status.Conditions, condAnnounced); c != nil {
				owner = l2Owners(c.Message)[ip]
			}
			return fmt.Sprintf("client → %s, owner %q", macs[mac.String()], owner), owner != "" && macs[mac.String()] == owner
		})
		killed := time.Now()
		stopSpeaker(t, owner, syscall.SIGKILL)
		var now string
		lab.Eventually(t, 10*time.Second, fmt.Sprintf("round %d: the client moves %s off %s", i, ip, owner), func(ctx context.Context) (string, bool) {
			mac, err := l2Client().NS.NeighborMAC(ctx, ip)
			now = macs[mac.String()]
			return fmt.Sprint(mac, err), err == nil && now != "" && now != owner
		})
		takeovers = append(takeovers, time.Since(killed))
		rs := echo.ParseProbeLog(p.Log())
		silences = append(silences, echo.LongestSilence(rs, killed, time.Now()))
		t.Logf("round %d: %s killed → client sends to %s after %v", i, owner, now, takeovers[i].Round(time.Millisecond))
		startSpeaker(t, owner)
	}
	lab.SLO(t, "L2 failover on speaker SIGKILL: kill → the client's neighbour entry names the new owner", takeovers, l2FailoverGoal)
	t.Logf("the client's longest UDP silence in those failovers (20 ms probes): %v", silences)
}

// TestBGPWithdrawSLO: a SIGTERMed speaker's path leaves BIRD within 1 s, through
// GRACEFUL_SHUTDOWN, and the routed client keeps reaching the Service through the others.
func TestBGPWithdrawSLO(t *testing.T) {
	_, _, ip, _ := l2AndBGP(t)
	bird := env.site.Network().BIRD
	addrOf := map[string]netip.Addr{}
	for _, n := range env.site.Nodes() {
		addrOf[n.Name] = n.Addr4
	}
	var samples []time.Duration
	for i := range 5 {
		victim := env.nodes[i%len(env.nodes)]
		waitNextHops(t, ip, env.nodes, 30*time.Second)
		lab.Eventually(t, 30*time.Second, fmt.Sprintf("round %d: BIRD has %s via %s", i, ip, victim), func(ctx context.Context) (string, bool) {
			path, err := birdPath(ctx, bird, ip, addrOf[victim])
			return fmt.Sprint(err), err == nil && path != nil
		})
		stopped := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			stopSpeaker(t, victim, syscall.SIGTERM)
		}()
		gshut := false
		lab.Eventually(t, 10*time.Second, fmt.Sprintf("round %d: %s's path leaves BIRD", i, victim), func(ctx context.Context) (string, bool) {
			path, err := birdPath(ctx, bird, ip, addrOf[victim])
			if path != nil {
				gshut = gshut || slices.Contains(path.Communities, "65535:0")
			}
			return fmt.Sprint(path, err), err == nil && path == nil
		})
		samples = append(samples, time.Since(stopped))
		<-done
		if !gshut {
			t.Errorf("round %d: BIRD never saw GRACEFUL_SHUTDOWN (65535:0) on %s's path before it went", i, victim)
		}
		reply(t, routedClient(), "tcp", ip)
		startSpeaker(t, victim)
	}
	lab.SLO(t, "BGP withdraw on speaker SIGTERM: signal → path gone from BIRD", samples, bgpWithdrawGoal)
}

// birdPath is BIRD's BGP path to ip via next hop, nil when it has none.
func birdPath(ctx context.Context, bird *router.BIRD, ip, hop netip.Addr) (*router.Route, error) {
	routes, err := bird.BGPRoutes(ctx, netns.FamilyOf(ip))
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		if r.Prefix == netip.PrefixFrom(ip, ip.BitLen()) && r.NextHop == hop {
			return &r, nil
		}
	}
	return nil, nil
}
