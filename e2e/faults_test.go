//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/echo"
)

// TestFaultControllerRestart: a crashed berth-controller is restarted (as a container in its
// Pod: same identity, so it takes its Lease back at once), keeps every address, and
// allocates again; traffic never depends on it.
func TestFaultControllerRestart(t *testing.T) {
	ns := namespace(t)
	deployment(t, ns, "web", 1)
	for _, name := range []string{"a", "b", "c"} {
		lbService(t, ns, name, "web", dualStack)
	}
	before := map[string][]netip.Addr{}
	for _, name := range []string{"a", "b", "c"} {
		before[name] = ingress(t, ns, name, 2)
	}
	// Held down, the addresses keep answering: the speakers announce from status.
	c := env.berth.Controller
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.Stop(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = c.Start(ctx)
	})
	answers(t, l2Client(), before["a"])
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// A crash: restarted by its supervisor, as by a kubelet.
	restarts := c.Restarts()
	if err := c.Process().Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	lab.Eventually(t, 30*time.Second, "berth-controller restarted", func(context.Context) (string, bool) {
		return fmt.Sprintf("%d restarts", c.Restarts()), c.Restarts() > restarts
	})
	lbService(t, ns, "after", "web", nil)
	ingress(t, ns, "after", 1)
	t.Logf("killed → restarted → a new Service allocated in %v", time.Since(killed).Round(time.Millisecond))
	for name, ips := range before {
		svc, err := env.kc.CoreV1().Services(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ingressOf(svc); !slices.Equal(got, ips) {
			t.Errorf("%s: %v after the restart, %v before", name, got, ips)
		}
	}
}

// TestFaultSpeakerKill: a SIGKILLed speaker's L2 addresses move to another node and keep
// answering, and its BGP next hop leaves the routers; a restarted speaker comes back.
func TestFaultSpeakerKill(t *testing.T) {
	ns, l2, bgp, victim := l2AndBGP(t)

	silence := l2Failover(t, l2, victim)
	t.Logf("L2 %s: owner %s killed, the client's longest silence %v", l2, victim, silence.Round(time.Millisecond))
	if silence > 5*time.Second {
		t.Errorf("L2 failover took %v, bound 5s", silence)
	}
	waitL2Owner(t, ns, "l2", l2, func(n string) bool { return n != victim })
	survivors := slices.DeleteFunc(slices.Clone(env.nodes), func(n string) bool { return n == victim })
	waitNextHops(t, bgp, survivors, 10*time.Second)
	reply(t, routedClient(), "tcp", bgp)

	startSpeaker(t, victim)
	waitNextHops(t, bgp, env.nodes, 30*time.Second)
}

// l2AndBGP makes a namespace with a 3-replica echo Deployment behind the Services "l2"
// (lan pool) and "bgp" (bgp pool), waits until FRR routes the BGP address via every node,
// and returns the namespace, both addresses and the L2 owner.
func l2AndBGP(t *testing.T) (ns string, l2, bgp netip.Addr, owner string) {
	t.Helper()
	ns = namespace(t)
	deployment(t, ns, "web", 3)
	waitPods(t, ns, "web", 3)
	lbService(t, ns, "l2", "web", nil)
	lbService(t, ns, "bgp", "web", bgpPool)
	l2, bgp = ingress(t, ns, "l2", 1)[0], ingress(t, ns, "bgp", 1)[0]
	waitNextHops(t, bgp, env.nodes, 30*time.Second)
	return ns, l2, bgp, waitL2Owner(t, ns, "l2", l2, func(string) bool { return true })
}

// l2Failover kills the speaker of owner with SIGKILL (held down; startSpeaker brings it
// back) while a prober on the L2 client sends to ip every 20 ms, and returns the longest
// time the client heard nothing.
func l2Failover(t *testing.T, ip netip.Addr, owner string) time.Duration {
	t.Helper()
	p := startProber(t, l2Client(), ip, 20*time.Millisecond, false)
	lab.Eventually(t, 10*time.Second, "the prober hears "+ip.String(), func(context.Context) (string, bool) {
		return "", len(echo.ParseProbeLog(p.Log())) > 3
	})
	killed := time.Now()
	stopSpeaker(t, owner, syscall.SIGKILL)
	// Replies resumed for a while: the failover is over.
	lab.Eventually(t, 30*time.Second, ip.String()+" answers again", func(context.Context) (string, bool) {
		rs := echo.ParseProbeLog(p.Log())
		return fmt.Sprintf("%d replies", len(rs)), len(rs) > 0 && rs[len(rs)-1].At.After(killed.Add(500*time.Millisecond)) &&
			echo.LongestSilence(rs, rs[len(rs)-1].At.Add(-300*time.Millisecond), rs[len(rs)-1].At) < 200*time.Millisecond
	})
	rs := echo.ParseProbeLog(p.Log())
	return echo.LongestSilence(rs, killed, rs[len(rs)-1].At)
}

// stopSpeaker holds node's speaker down after sig (Supervised.Stop) until startSpeaker, or
// the end of the test, which brings it back whatever happened.
func stopSpeaker(t *testing.T, node string, sig syscall.Signal) {
	t.Helper()
	t.Cleanup(func() { startSpeaker(t, node) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := env.berth.Speakers[node].Stop(ctx, sig); err != nil {
		t.Error(err) // t.Fatal is not for the goroutine TestBGPWithdrawSLO calls this on
	}
}

// startSpeaker ends a Stop of node's speaker (nothing if it runs).
func startSpeaker(t *testing.T, node string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := env.berth.Speakers[node].Start(ctx); err != nil {
		t.Error(err)
	}
}
