//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/capture"
	"github.com/berthlb/berth/lab/echo"
	"github.com/berthlb/berth/lab/netns"
)

// TestFaultSpeakerFrozen: the owner's speaker is SIGSTOPped (its node keeps forwarding);
// the others take the address over. When it wakes it holds L2 until membership settles:
// at no time do two MACs answer one ARP request, and the woken node sends nothing for the
// address inside its hold.
func TestFaultSpeakerFrozen(t *testing.T) {
	ns, ip, _, owner := l2AndBGP(t)
	w := watchARP(t, ip)
	p := startProber(t, l2Client(), ip, 20*time.Millisecond, false)

	sp := env.berth.Speakers[owner].Process()
	if err := sp.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Resume() })
	frozen := time.Now()
	now := waitL2Owner(t, ns, "l2", ip, func(n string) bool { return n != owner })
	waitClientSends(t, ip, now)
	silence := echo.LongestSilence(echo.ParseProbeLog(p.Log()), frozen, time.Now())

	woke := time.Now()
	if err := sp.Resume(); err != nil {
		t.Fatal(err)
	}
	// Membership settles: every node reports every other alive again.
	waitMembers(t, env.nodes)
	settled := waitStableOwner(t, ns, ip)
	frames := w.frames()
	if d := duplicateAnswers(w, ip, map[string]time.Time{"the freeze": frozen, "waking": woke}); len(d) > 0 {
		t.Errorf("%d ARP requests for %s got answers from two MACs: %v", len(d), ip, d)
	}
	for _, a := range arpFrom(frames, ip, nodeMAC(owner), woke, woke.Add(freezeHold)) {
		t.Errorf("%s sent %s inside its hold (%v after waking)", owner, a.a, a.at.Sub(woke).Round(time.Millisecond))
	}
	t.Logf("%s frozen %v: the client's longest silence %v, owner %s; woke → every member alive and one owner (%s) for 2 s in %v; %d ARP frames checked",
		owner, woke.Sub(frozen).Round(time.Millisecond), silence.Round(time.Millisecond), now, settled,
		time.Since(woke).Round(time.Millisecond), len(frames))
}

// TestFaultNodePartitioned: the owner's node loses its node network (memberlist, BGP and
// the apiserver) while its L2 segment stays connected. The others take its address; the
// cut-off node, now a minority of one, stops answering for it (reason Minority) instead of
// answering beside them for as long as the partition lasts. After the partition heals,
// the node comes back; two MACs answer only in short bursts around each hand-over.
func TestFaultNodePartitioned(t *testing.T) {
	ns, ip, bgp, owner := l2AndBGP(t)
	w := watchARP(t, ip)
	p := startProber(t, l2Client(), ip, 20*time.Millisecond, false)
	node := env.site.Network().Node(owner)

	heal := partition(t, node.NS)
	cut := time.Now()
	now := waitL2Owner(t, ns, "l2", ip, func(n string) bool { return n != owner })
	waitClientSends(t, ip, now)
	silence := echo.LongestSilence(echo.ParseProbeLog(p.Log()), cut, time.Now())
	others := slices.DeleteFunc(slices.Clone(env.nodes), func(n string) bool { return n == owner })
	// FRR drops the node's session when its 9 s hold timer expires.
	waitNextHops(t, bgp, others, 30*time.Second)
	bgpGone := time.Since(cut)
	reply(t, routedClient(), "tcp", bgp)

	heal()
	healed := time.Now()
	waitMembers(t, env.nodes)
	waitNextHops(t, bgp, env.nodes, 60*time.Second)
	settled := waitStableOwner(t, ns, ip)
	// Each side notices the other gone (or back) at about the same moment: requests sent
	// then may be answered by both. Such overlaps must be short bursts, at most one while
	// cut off (the hand-over) and one after healing (the hand-back, whenever membership
	// merges): no split brain lasts.
	const burst = time.Second
	d := duplicateAnswers(w, ip, map[string]time.Time{"the cut": cut, "healing": healed})
	var before, after []time.Time // burst starts
	var last time.Time
	for _, a := range d {
		if !last.IsZero() && a.at.Sub(last) <= 100*time.Millisecond {
			last = a.at
			continue // the same burst
		}
		if a.at.Before(healed) {
			before = append(before, a.at)
		} else {
			after = append(after, a.at)
		}
		last = a.at
	}
	if len(before) > 1 || len(after) > 1 {
		t.Errorf("two MACs answered for %s in %d bursts while cut off and %d after healing, want at most one each: %v", ip, len(before), len(after), d)
	}
	for _, a := range d {
		if starts := append(before, after...); !slices.ContainsFunc(starts, func(s time.Time) bool { return !a.at.Before(s) && a.at.Sub(s) <= burst }) {
			t.Errorf("two MACs answered for %s over a second after the overlap began: %s", ip, a)
		}
	}
	t.Logf("%s cut off: L2 owner %s, the client's longest silence %v; its BGP path gone from FRR %v after the cut (hold time 9 s); healed → every member alive, BGP via all, one owner (%s) in %v; requests answered by two MACs: %d %v",
		owner, now, silence.Round(time.Millisecond), bgpGone.Round(time.Millisecond), settled, time.Since(healed).Round(time.Millisecond), len(d), d)
}

// TestFaultL2LinkDown: the owner's L2 interface goes down; the others take its address
// (the node stays a member: its node network is up), and it can own addresses again once
// the link is back.
func TestFaultL2LinkDown(t *testing.T) {
	ns, ip, _, owner := l2AndBGP(t)
	p := startProber(t, l2Client(), ip, 20*time.Millisecond, false)
	node := env.site.Network().Node(owner)
	setL2Link(t, node.NS, false)
	down := time.Now()
	t.Cleanup(func() { setL2Link(t, node.NS, true) })
	now := waitL2Owner(t, ns, "l2", ip, func(n string) bool { return n != owner })
	waitClientSends(t, ip, now)
	silence := echo.LongestSilence(echo.ParseProbeLog(p.Log()), down, time.Now())
	took := time.Since(down)
	reply(t, l2Client(), "tcp", ip)

	setL2Link(t, node.NS, true)
	up := time.Now()
	waitL2Interfaces(t, owner, netLabL2Dev)
	t.Logf("%s's %s down: owner %s, the client sends there after %v (longest silence %v); link up → %s offers %s again in %v",
		owner, netLabL2Dev, now, took.Round(time.Millisecond), silence.Round(time.Millisecond), owner, netLabL2Dev, time.Since(up).Round(time.Millisecond))
}

// TestFaultRouterRestart: FRR restarts; every node's session comes back and the routes are
// advertised again; BIRD's sessions never drop.
func TestFaultRouterRestart(t *testing.T) {
	_, _, bgp, _ := l2AndBGP(t)
	waitSessions(t)
	bird := birdSince(t)
	frr := env.site.Network().FRR
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start := time.Now()
	if err := frr.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Since(start)
	took := waitNextHops(t, bgp, env.nodes, 60*time.Second)
	reply(t, routedClient(), "tcp", bgp)
	if after := birdSince(t); !maps.Equal(bird, after) {
		t.Errorf("BIRD sessions changed while FRR restarted: before %v, after %v", bird, after)
	}
	t.Logf("FRR restarted in %v; %s routed via every node again %v later; BIRD's sessions untouched", restarted.Round(time.Millisecond), bgp, took.Round(time.Millisecond))
}

// TestFaultPeerFlapping: FRR resets its session with one node every second for 60 s. That
// node's reconnects back off (status shows failures and a longer retry interval), and no
// other session, route or Service notices.
func TestFaultPeerFlapping(t *testing.T) {
	ns, _, bgp, _ := l2AndBGP(t)
	waitSessions(t)
	victim := env.nodes[0]
	others := slices.DeleteFunc(slices.Clone(env.nodes), func(n string) bool { return n == victim })
	before := peerSince(t)
	restarts := env.berth.Controller.Restarts()
	svc, err := env.kc.CoreV1().Services(ns).Get(t.Context(), "bgp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addr := env.site.Network().Node(victim).Addr4
	frr := env.site.Network().FRR

	var maxRetry time.Duration
	var maxFailures int32
	end := time.Now().Add(60 * time.Second)
	for i := 0; time.Now().Before(end); i++ {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		cmd := "neighbor " + addr.String() + " shutdown"
		if i%2 == 1 {
			cmd = "no " + cmd
		}
		_, err := frr.VTYSH(ctx, "configure terminal", "router bgp 64500", cmd)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		// Every other route keeps going through the other nodes.
		hops, err := nextHops(t.Context(), bgp)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range others {
			if !slices.Contains(hops, n) {
				t.Errorf("%v into the flapping: FRR routes %s via %v, without %s", time.Until(end).Round(time.Second), bgp, hops, n)
			}
		}
		if st, ok := peerStatus(t, "frr", victim); ok {
			if d := st.RetryInterval; d != nil && d.Duration > maxRetry {
				maxRetry = d.Duration
			}
			maxFailures = max(maxFailures, st.Failures)
		}
		time.Sleep(time.Second) // the fault's own rhythm: one change a second
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := frr.VTYSH(ctx, "configure terminal", "router bgp 64500", "no neighbor "+addr.String()+" shutdown"); err != nil {
		t.Fatal(err)
	}
	if maxRetry <= time.Second || maxFailures < 2 {
		t.Errorf("the frr session of %s flapped for 60 s but its status never showed a backoff: retry interval at most %v, failures at most %d", victim, maxRetry, maxFailures)
	}
	back := waitNextHops(t, bgp, env.nodes, 3*time.Minute)
	after := peerSince(t)
	for key, since := range before {
		if strings.HasPrefix(key, "frr/"+victim) {
			continue
		}
		if !after[key].Equal(since) {
			t.Errorf("session %s changed while another flapped: established since %v, now %v", key, since, after[key])
		}
	}
	if got := env.berth.Controller.Restarts(); got != restarts {
		t.Errorf("berth-controller restarted %d times during the flapping", got-restarts)
	}
	now, err := env.kc.CoreV1().Services(ns).Get(t.Context(), "bgp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ingressOf(now), ingressOf(svc)) {
		t.Errorf("the Service's address changed: %v → %v", ingressOf(svc), ingressOf(now))
	}
	t.Logf("frr ↔ %s flapped every second for 60 s: status showed up to %d failures and a %v retry interval; other sessions untouched; the route via %s back %v after the flapping ended",
		victim, maxFailures, maxRetry, victim, back.Round(time.Millisecond))
}

// freezeHold is the speaker's L2 hold after waking from a freeze (speaker.Options.FreezeHold).
const freezeHold = 2 * time.Second

// netLabL2Dev is the nodes' L2 service segment interface.
const netLabL2Dev = lab.L2Dev

// arpWatch captures the L2 client's frames while it broadcasts an ARP request for one
// address every 50 ms (forged on the capture's socket, so that the client's own neighbour
// state does not pace it), so that every node that would answer does.
type arpWatch struct {
	c    *capture.Capture
	mu   *sync.Mutex
	sent *[]time.Time // when each request went out: a socket does not capture its own frames
}

func watchARP(t *testing.T, ip netip.Addr) arpWatch {
	t.Helper()
	client := l2Client()
	c, err := capture.Start(t.Context(), client.NS, client.Dev)
	if err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		<-done
		_ = c.Close()
	})
	request := capture.ARPRequestFrame(client.MAC, client.Addr4, ip)
	w := arpWatch{c: c, mu: new(sync.Mutex), sent: new([]time.Time)}
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				w.mu.Lock()
				*w.sent = append(*w.sent, time.Now())
				w.mu.Unlock()
				if err := c.Send(request); err != nil {
					t.Errorf("ARP request for %s: %v", ip, err)
					return
				}
			}
		}
	}()
	return w
}

// requests returns when each request was sent.
func (w arpWatch) requests() []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(*w.sent)
}

func (w arpWatch) frames() []capture.Frame { return w.c.Frames() }

// dupAnswer is an ARP request that got replies from more than one MAC.
type dupAnswer struct {
	at   time.Time // when it was sent
	text string
}

func (d dupAnswer) String() string { return d.text }

// duplicateAnswers lists the client's ARP requests for ip that got replies from more than
// one MAC (each reply belongs to the latest request sent before it), each described with
// its replies and its time relative to the events named in marks.
func duplicateAnswers(w arpWatch, ip netip.Addr, marks map[string]time.Time) []dupAnswer {
	frames, sent := w.frames(), w.requests()
	var out []dupAnswer
	var at time.Time
	var replies []string
	macs := map[string]bool{}
	flush := func() {
		if len(macs) > 1 {
			var rel []string
			for name, m := range marks {
				rel = append(rel, fmt.Sprintf("%v after %s", at.Sub(m).Round(time.Millisecond), name))
			}
			slices.Sort(rel)
			out = append(out, dupAnswer{at, fmt.Sprintf("request %s: replies %v", strings.Join(rel, ", "), replies)})
		}
		clear(macs)
		replies = nil
	}
	for _, f := range frames {
		a, ok := f.ARP()
		if !ok {
			continue
		}
		for len(sent) > 0 && !sent[0].After(f.Time) {
			flush()
			at, sent = sent[0], sent[1:]
		}
		if a.Op == capture.ARPReply && a.SenderIP == ip && !a.Gratuitous() && !f.Outgoing {
			macs[a.SenderMAC.String()] = true
			replies = append(replies, fmt.Sprintf("%s +%v", a.SenderMAC, f.Time.Sub(at).Round(time.Microsecond)))
		}
	}
	flush()
	return out
}

// longestUnanswered is the longest time the client's ARP requests for ip went without any
// reply (from the first unanswered request to the next answered one, or the last sent).
func longestUnanswered(w arpWatch, ip netip.Addr) time.Duration {
	frames, sent := w.frames(), w.requests()
	answered := make([]bool, len(sent))
	i := -1 // the latest request sent before the frame
	for _, f := range frames {
		for i+1 < len(sent) && !sent[i+1].After(f.Time) {
			i++
		}
		if a, ok := f.ARP(); ok && i >= 0 && a.Op == capture.ARPReply && a.SenderIP == ip && !a.Gratuitous() && !f.Outgoing {
			answered[i] = true
		}
	}
	var longest time.Duration
	start := -1
	for j, ok := range answered {
		switch {
		case !ok && start < 0:
			start = j
		case ok && start >= 0:
			longest = max(longest, sent[j].Sub(sent[start]))
			start = -1
		}
	}
	if start >= 0 && start < len(sent)-1 {
		longest = max(longest, sent[len(sent)-1].Sub(sent[start]))
	}
	return longest
}

type timedARP struct {
	at time.Time
	a  capture.ARP
}

// arpFrom returns what mac sent claiming ip between from and to.
func arpFrom(frames []capture.Frame, ip netip.Addr, mac []byte, from, to time.Time) []timedARP {
	var out []timedARP
	for _, f := range frames {
		if a, ok := f.ARP(); ok && a.SenderIP == ip && bytes.Equal(a.SenderMAC, mac) && !f.Time.Before(from) && f.Time.Before(to) {
			out = append(out, timedARP{f.Time, a})
		}
	}
	return out
}

func nodeMAC(name string) []byte { return env.site.Network().Node(name).L2MAC }

// waitClientSends waits until the L2 client's neighbour entry for ip names node's MAC.
func waitClientSends(t *testing.T, ip netip.Addr, node string) {
	t.Helper()
	want := nodeMAC(node)
	lab.Eventually(t, 30*time.Second, fmt.Sprintf("the client sends %s to %s", ip, node), func(ctx context.Context) (string, bool) {
		mac, err := l2Client().NS.NeighborMAC(ctx, ip)
		return fmt.Sprint(mac, err), err == nil && bytes.Equal(mac, want)
	})
}

// waitStableOwner waits until the Announced condition and the client's neighbour entry
// name the same owner of ip for 2 s, and returns it.
func waitStableOwner(t *testing.T, ns string, ip netip.Addr) string {
	t.Helper()
	var owner string
	var since time.Time
	lab.Eventually(t, 60*time.Second, fmt.Sprintf("one owner of %s for 2 s", ip), func(ctx context.Context) (string, bool) {
		now := waitL2Owner(t, ns, "l2", ip, func(string) bool { return true })
		mac, err := l2Client().NS.NeighborMAC(ctx, ip)
		if err != nil || !bytes.Equal(mac, nodeMAC(now)) {
			since = time.Time{}
			return fmt.Sprintf("owner %s, client → %v %v", now, mac, err), false
		}
		if now != owner || since.IsZero() {
			owner, since = now, time.Now()
		}
		return "owner " + owner, time.Since(since) >= 2*time.Second
	})
	return owner
}

// waitMembers waits until every node's NodeAnnouncement lists all of nodes as members.
func waitMembers(t *testing.T, nodes []string) {
	t.Helper()
	lab.Eventually(t, 60*time.Second, fmt.Sprintf("every node sees %v", nodes), func(ctx context.Context) (string, bool) {
		var list v1alpha1.NodeAnnouncementList
		if err := env.cr.List(ctx, &list); err != nil {
			return err.Error(), false
		}
		var b strings.Builder
		ok := len(list.Items) >= len(nodes)
		for _, na := range list.Items {
			members := slices.Sorted(slices.Values(na.Status.Members))
			fmt.Fprintf(&b, "%s: %v; ", na.Name, members)
			for _, n := range nodes {
				ok = ok && slices.Contains(members, n)
			}
		}
		return b.String(), ok
	})
}

// waitL2Interfaces waits until node's NodeAnnouncement offers dev for L2.
func waitL2Interfaces(t *testing.T, node, dev string) {
	t.Helper()
	lab.Eventually(t, 30*time.Second, node+" offers "+dev+" for L2", func(ctx context.Context) (string, bool) {
		var na v1alpha1.NodeAnnouncement
		if err := env.cr.Get(ctx, client.ObjectKey{Name: node}, &na); err != nil {
			return err.Error(), false
		}
		return fmt.Sprint(na.Status.L2Interfaces), slices.Contains(na.Status.L2Interfaces, dev)
	})
}

// partition drops everything in and out of the node's node-network interface (the L2
// segment stays up); the returned func heals it, and so does the test's end.
func partition(t *testing.T, ns netns.NS) (heal func()) {
	t.Helper()
	var faults []netns.Fault
	for _, match := range []string{"iifname " + lab.NodeDev, "oifname " + lab.NodeDev} {
		f, err := ns.Drop(t.Context(), match)
		if err != nil {
			t.Fatal(err)
		}
		faults = append(faults, f)
	}
	healed := false
	heal = func() {
		if healed {
			return
		}
		healed = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, f := range faults {
			if err := f.Remove(ctx); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(heal)
	return heal
}

// setL2Link sets the node's L2 segment interface up or down.
func setL2Link(t *testing.T, ns netns.NS, up bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ns.SetLinkUp(ctx, lab.L2Dev, up); err != nil {
		t.Error(err)
	}
}

// birdSince maps BIRD's sessions to whether they are established.
func birdSince(t *testing.T) map[string]bool {
	t.Helper()
	ss, err := env.site.Network().BIRD.Sessions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, s := range ss {
		out[s.Neighbor.String()] = s.Established
	}
	return out
}

// peerSince maps "peer/node" to when each established session came up, from the
// BGPPeers' status.
func peerSince(t *testing.T) map[string]time.Time {
	t.Helper()
	var list v1alpha1.BGPPeerList
	if err := env.cr.List(t.Context(), &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Time{}
	for _, p := range list.Items {
		for _, n := range p.Status.Nodes {
			if n.State == v1alpha1.SessionEstablished && n.Since != nil {
				out[p.Name+"/"+n.Node] = n.Since.Time
			}
		}
	}
	return out
}

// waitSessions waits until every node's session with every demo peer is established, as
// the BGPPeers' status and BIRD say.
func waitSessions(t *testing.T) {
	t.Helper()
	lab.Eventually(t, 60*time.Second, "every BGP session established", func(ctx context.Context) (string, bool) {
		var list v1alpha1.BGPPeerList
		if err := env.cr.List(ctx, &list); err != nil {
			return err.Error(), false
		}
		var b strings.Builder
		ok := len(list.Items) > 0
		for _, p := range list.Items {
			up := 0
			for _, n := range p.Status.Nodes {
				if n.State == v1alpha1.SessionEstablished {
					up++
				}
			}
			fmt.Fprintf(&b, "%s: %d of %d; ", p.Name, up, len(env.nodes))
			ok = ok && up == len(env.nodes)
		}
		ss, err := env.site.Network().BIRD.Sessions(ctx)
		if err != nil {
			return err.Error(), false
		}
		for _, s := range ss {
			if !s.Established {
				fmt.Fprintf(&b, "BIRD ↔ %s %s; ", s.Neighbor, s.State)
				ok = false
			}
		}
		return b.String(), ok
	})
}

// peerStatus is node's entry in the BGPPeer's status.
func peerStatus(t *testing.T, peer, node string) (v1alpha1.PeerNodeStatus, bool) {
	t.Helper()
	var p v1alpha1.BGPPeer
	if err := env.cr.Get(t.Context(), client.ObjectKey{Name: peer}, &p); err != nil {
		t.Fatal(err)
	}
	for _, n := range p.Status.Nodes {
		if n.Node == node {
			return n, true
		}
	}
	return v1alpha1.PeerNodeStatus{}, false
}
