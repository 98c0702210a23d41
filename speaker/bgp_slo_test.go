//go:build integration && privileged && timing

package speaker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/echo"
	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/router"
	"github.com/berthlb/berth/speaker"
)

// nodeASN is the nodes' AS: eBGP to both routers (FRR 64500, BIRD 64501).
const nodeASN = 64512

// TCP-MD5 passwords of the IPv6 sessions: FRR's Secret exists from the start, BIRD's
// only later.
const frrPassword, birdPassword = "frr-md5-s3cret", "bird-md5-s3cret"

// TestBGPSpeakersSLO runs three speakers with real FRR and BIRD peers, over IPv4 and
// (with TCP-MD5) IPv6: a dual-stack eTP=Cluster Service's IPs reach both routers with every
// node as next hop (and the advertisement's community), an eTP=Local one only from the
// nodes with its endpoints (ECMP over exactly those in FRR's kernel table), the client
// behind FRR reaches both and the Local one's pod sees the client's address; a peer whose
// password Secret is missing gets no session and an Event until the Secret appears; a
// wrong password shows as AuthMismatchLikely in every node's entry of BGPPeer.status and
// restarts none of the other sessions; Service status → route in the routers' kernels is
// timed over 100 Services; a SIGKILLed speaker's next hop leaves FRR's kernel route within
// 1 s (its socket closes; graceful restart off), a SIGSTOPped or nft-partitioned one's
// within the hold time (3 s) + 1 s, and a SIGTERMed one's leaves BIRD within 1 s with
// GRACEFUL_SHUTDOWN seen first.
func TestBGPSpeakersSLO(t *testing.T) {
	w := startWorld(t, worldOptions{nodes: 3, routers: true, kubeProxy: true})
	ctx := t.Context()
	n := w.site.Network()
	nodeAddr, nodeAddr6 := map[string]netip.Addr{}, map[string]netip.Addr{}
	var all, all6 []netip.Addr
	for _, node := range w.site.Nodes() {
		nodeAddr[node.Name], nodeAddr6[node.Name] = node.Addr4, node.Addr6
		all, all6 = append(all, node.Addr4), append(all6, node.Addr6)
		for _, nb := range []struct {
			r interface {
				AddNeighbor(context.Context, router.Neighbor) error
			}
			n router.Neighbor
		}{
			{n.FRR, router.Neighbor{Addr: node.Addr4, ASN: nodeASN}},
			{n.BIRD, router.Neighbor{Addr: node.Addr4, ASN: nodeASN}},
			{n.FRR, router.Neighbor{Addr: node.Addr6, ASN: nodeASN, Password: frrPassword}},
			{n.BIRD, router.Neighbor{Addr: node.Addr6, ASN: nodeASN, Password: birdPassword}},
		} {
			if err := nb.r.AddNeighbor(ctx, nb.n); err != nil {
				t.Fatal(err)
			}
		}
	}
	slices.SortFunc(all, netip.Addr.Compare)
	slices.SortFunc(all6, netip.Addr.Compare)
	w.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "berth-system", Name: "frr-md5"},
		Data: map[string][]byte{"password": []byte(frrPassword)}})
	hold := &metav1.Duration{Duration: 9 * time.Second}
	connect := &metav1.Duration{Duration: time.Second}
	for _, p := range []struct {
		name     string
		addr     netip.Addr
		asn      uint32
		password *v1alpha1.SecretKeyRef
	}{
		{"frr", n.FRRHost.Addr4, n.FRR.ASN(), nil},
		{"bird", n.BIRDHost.Addr4, n.BIRD.ASN(), nil},
		{"frr6", n.FRRHost.Addr6, n.FRR.ASN(), &v1alpha1.SecretKeyRef{Name: "frr-md5", Key: "password"}},
		{"bird6", n.BIRDHost.Addr6, n.BIRD.ASN(), &v1alpha1.SecretKeyRef{Name: "bird-md5", Key: "password"}},
	} {
		w.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: p.name}, Spec: v1alpha1.BGPPeerSpec{
			MyASN: nodeASN, PeerASN: int64(p.asn), PeerAddress: p.addr.String(), HoldTime: hold, ConnectTime: connect,
			Password: p.password}})
	}
	w.create(&v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "bgp"},
		Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"203.0.113.0/24", "2001:db8:113::/64"}}})
	w.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "bgp"}, Spec: v1alpha1.BGPAdvertisementSpec{
		AdvertisementTarget: v1alpha1.AdvertisementTarget{IPPools: []v1alpha1.ObjectName{"bgp"}},
		Communities:         []v1alpha1.Community{"64512:100"}}})

	w.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}})
	for i, node := range w.nodes {
		w.pod(fmt.Sprintf("web-%d", i), node, "web")
	}
	w.pod("local-a", w.nodes[0], "local")
	w.pod("local-b", w.nodes[1], "local")
	created := time.Now()
	w.bgpService("web", "web", corev1.ServiceExternalTrafficPolicyCluster)
	w.bgpService("local", "local", corev1.ServiceExternalTrafficPolicyLocal)
	webIP, webIP6 := w.ingressIPs(t, "web")
	localIP, localIP6 := w.ingressIPs(t, "local")

	frr4, frr6 := frrRIB{n.FRR, netns.IPv4}, frrRIB{n.FRR, netns.IPv6}
	bird4, bird6 := birdRIB{n.BIRD, netns.IPv4}, birdRIB{n.BIRD, netns.IPv6}
	for _, c := range []struct {
		r    bgpRouter
		ip   netip.Addr
		want []netip.Addr
	}{{frr4, webIP, all}, {bird4, webIP, all}, {frr6, webIP6, all6}} {
		lab.Eventually(t, 60*time.Second, fmt.Sprintf("%s: %s via every node", c.r.name(), c.ip), func(ctx context.Context) (string, bool) {
			hops, seen := c.r.nextHops(ctx, c.ip)
			return seen, slices.Equal(hops, c.want)
		})
	}
	t.Logf("eTP=Cluster %s and %s at the routers via every node %v after the Services were created (FRR's IPv6 sessions with TCP-MD5)",
		webIP, webIP6, time.Since(created).Round(time.Millisecond))
	lab.Eventually(t, 10*time.Second, "BIRD sees community 64512:100", func(ctx context.Context) (string, bool) {
		rs, err := n.BIRD.BGPRoutes(ctx, netns.IPv4)
		if err != nil {
			return err.Error(), false
		}
		for _, r := range rs {
			if r.Prefix == netip.PrefixFrom(webIP, 32) && !slices.Contains(r.Communities, "64512:100") {
				return fmt.Sprintf("%v communities %v", r, r.Communities), false
			}
		}
		return "", true
	})

	lab.Eventually(t, 10*time.Second, "a BGPSessionEstablished Event on frr from every node", func(ctx context.Context) (string, bool) {
		evs, err := w.site.Client().CoreV1().Events("default").List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.name=frr,reason=" + speaker.EventBGPSessionEstablished})
		if err != nil {
			return err.Error(), false
		}
		hosts := map[string]bool{}
		for _, e := range evs.Items {
			hosts[e.Source.Host] = true
		}
		return fmt.Sprint(hosts), len(hosts) == len(w.nodes)
	})

	lab.Eventually(t, 20*time.Second, "BGPPeer frr's status: every node Established", func(ctx context.Context) (string, bool) {
		var p v1alpha1.BGPPeer
		if err := w.cr.Get(ctx, client.ObjectKey{Name: "frr"}, &p); err != nil {
			return err.Error(), false
		}
		up := 0
		for _, e := range p.Status.Nodes {
			// node3 has no endpoint of the eTP=Local Service: it sends web's prefix alone.
			if e.State == v1alpha1.SessionEstablished && e.Since != nil && e.PrefixesSent == map[bool]int32{true: 1, false: 2}[e.Node == w.nodes[2]] {
				up++
			}
		}
		return fmt.Sprintf("%+v", p.Status.Nodes), up == len(w.nodes) && p.Status.Established == int32(len(w.nodes))
	})

	t.Run("missing password Secret", func(t *testing.T) {
		lab.Eventually(t, 30*time.Second, "a BGPPasswordMissing Event on bird6 from every node", func(ctx context.Context) (string, bool) {
			evs, err := w.site.Client().CoreV1().Events("default").List(ctx, metav1.ListOptions{
				FieldSelector: "involvedObject.name=bird6,reason=" + speaker.EventBGPPasswordMissing})
			if err != nil {
				return err.Error(), false
			}
			var msgs []string
			for _, e := range evs.Items {
				msgs = append(msgs, e.Message)
			}
			return strings.Join(msgs, "; "), len(evs.Items) == len(w.nodes)
		})
		if hops, seen := bird6.nextHops(ctx, webIP6); len(hops) > 0 {
			t.Errorf("BIRD has %s without the password: %s", webIP6, seen)
		}
		w.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "berth-system", Name: "bird-md5"},
			Data: map[string][]byte{"password": []byte(birdPassword)}})
		took := lab.Eventually(t, 10*time.Second, "BIRD: "+webIP6.String()+" via every node once the Secret exists", func(ctx context.Context) (string, bool) {
			hops, seen := bird6.nextHops(ctx, webIP6)
			return seen, slices.Equal(hops, all6)
		})
		t.Logf("Secret created → %s at BIRD via every node over TCP-MD5 in %v (the speakers watch the Secrets)", webIP6, took.Round(time.Millisecond))
	})

	t.Run("wrong password: the status says so, the other sessions stay up", func(t *testing.T) {
		others := []string{"frr", "frr6", "bird"}
		sinceBefore := w.peerSince(t, others)
		frrBefore := frrConnections(t, n.FRR)
		var sec corev1.Secret
		if err := w.cr.Get(ctx, client.ObjectKey{Namespace: "berth-system", Name: "bird-md5"}, &sec); err != nil {
			t.Fatal(err)
		}
		sec.Data["password"] = []byte("not-" + birdPassword)
		if err := w.cr.Update(ctx, &sec); err != nil {
			t.Fatal(err)
		}
		took := lab.Eventually(t, 60*time.Second, "bird6's status: every node AuthMismatchLikely", func(ctx context.Context) (string, bool) {
			var p v1alpha1.BGPPeer
			if err := w.cr.Get(ctx, client.ObjectKey{Name: "bird6"}, &p); err != nil {
				return err.Error(), false
			}
			bad := 0
			for _, e := range p.Status.Nodes {
				if e.State != v1alpha1.SessionEstablished && e.Reason == speaker.PeerReasonAuthMismatchLikely {
					bad++
				}
			}
			return fmt.Sprintf("%+v", p.Status.Nodes), bad == len(w.nodes) && p.Status.Established == 0
		})
		t.Logf("wrong password → AuthMismatchLikely on every node in %v", took.Round(time.Millisecond))
		if hops, seen := bird6.nextHops(ctx, webIP6); len(hops) > 0 {
			t.Errorf("BIRD keeps %s over sessions with the wrong password: %s", webIP6, seen)
		}
		sec.Data["password"] = []byte(birdPassword)
		if err := w.cr.Update(ctx, &sec); err != nil {
			t.Fatal(err)
		}
		lab.Eventually(t, 60*time.Second, "BIRD: "+webIP6.String()+" via every node with the right password again", func(ctx context.Context) (string, bool) {
			hops, seen := bird6.nextHops(ctx, webIP6)
			return seen, slices.Equal(hops, all6)
		})
		if after := w.peerSince(t, others); !maps.Equal(after, sinceBefore) {
			t.Errorf("sessions of the other peers restarted: established since %v, before %v", after, sinceBefore)
		}
		if after := frrConnections(t, n.FRR); !maps.Equal(after, frrBefore) {
			t.Errorf("FRR counts new connections from the nodes: %v, before %v", after, frrBefore)
		}
	})

	t.Run("eTP=Local", func(t *testing.T) {
		want, want6 := []netip.Addr{nodeAddr[w.nodes[0]], nodeAddr[w.nodes[1]]}, []netip.Addr{nodeAddr6[w.nodes[0]], nodeAddr6[w.nodes[1]]}
		slices.SortFunc(want, netip.Addr.Compare)
		slices.SortFunc(want6, netip.Addr.Compare)
		for _, c := range []struct {
			r    bgpRouter
			ip   netip.Addr
			want []netip.Addr
		}{{frr4, localIP, want}, {bird4, localIP, want}, {frr6, localIP6, want6}, {bird6, localIP6, want6}} {
			lab.Eventually(t, 30*time.Second, fmt.Sprintf("%s: eTP=Local %s via the endpoints' nodes only", c.r.name(), c.ip), func(ctx context.Context) (string, bool) {
				hops, seen := c.r.nextHops(ctx, c.ip)
				return seen, slices.Equal(hops, c.want)
			})
		}
		lab.Eventually(t, 10*time.Second, "FRR's kernel route: ECMP over exactly the endpoints' nodes", func(ctx context.Context) (string, bool) {
			hops, seen := frrKernel{n.FRR}.nextHops(ctx, localIP)
			return seen, slices.Equal(hops, want)
		})
	})

	t.Run("client reaches the Services", func(t *testing.T) {
		for _, ip := range []netip.Addr{webIP, webIP6, localIP, localIP6} {
			var rep echo.Reply
			lab.Eventually(t, 30*time.Second, "client behind FRR reaches "+ip.String(), func(ctx context.Context) (string, bool) {
				r, err := echo.Ask(ctx, n.Client.NS, "tcp", netip.AddrPortFrom(ip, 80))
				if err != nil {
					return err.Error(), false
				}
				rep = r
				return "", true
			})
			t.Logf("client → %s: %s", ip, rep)
			if ip == localIP || ip == localIP6 {
				if want := map[bool]netip.Addr{true: n.Client.Addr4, false: n.Client.Addr6}[ip.Is4()]; rep.Client.Addr() != want {
					t.Errorf("eTP=Local %s: the pod saw client %s, want %s", ip, rep.Client.Addr(), want)
				}
			}
		}
	})

	t.Run("front door: a closed port is dropped at the node, crossing FRR once", func(t *testing.T) {
		// Count what FRR forwards to web's port 22: without the door the node would route
		// the SYN (to an address it does not hold) back to FRR until its TTL ran out.
		frrNS := n.FRRHost.NS
		nft := func(ns netns.NS, cmd string) string {
			t.Helper()
			out, err := ns.Output(ctx, "nft", cmd)
			if err != nil {
				t.Fatalf("nft %s: %v: %s", cmd, err, out)
			}
			return string(out)
		}
		nft(frrNS, "add table inet berthtest")
		t.Cleanup(func() { _, _ = frrNS.Output(context.Background(), "nft", "delete table inet berthtest") })
		nft(frrNS, "add chain inet berthtest forwarded { type filter hook forward priority 0 ; }")
		nft(frrNS, "add rule inet berthtest forwarded ip daddr "+webIP.String()+" tcp dport 22 counter")
		doors := func() (total uint64) {
			for _, node := range w.site.Nodes() {
				total += counterOf(nft(node.NS, "list chain inet berth door4"), "drop")
			}
			return total
		}
		before := doors()
		if !slices.Contains(frrKernelHops(ctx, n.FRR, webIP), nodeAddr[w.nodes[0]]) {
			t.Fatalf("FRR has no route to %s", webIP)
		}
		askCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond) // one SYN: TCP retries after 1 s
		_, err := echo.Ask(askCtx, n.Client.NS, "tcp", netip.AddrPortFrom(webIP, 22))
		cancel()
		if err == nil {
			t.Fatalf("client reached %s:22", webIP)
		}
		forwarded := counterOf(nft(frrNS, "list chain inet berthtest forwarded"), "counter")
		dropped := doors() - before
		t.Logf("SYN to %s:22: FRR forwarded it %d time(s); the nodes' front doors dropped %d", webIP, forwarded, dropped)
		if forwarded != 1 || dropped != 1 {
			t.Errorf("FRR forwarded the SYN %d times, the doors dropped %d; want 1 and 1", forwarded, dropped)
		}
	})

	t.Run("status → route latency", func(t *testing.T) {
		// T0 is when this test's watch sees the ingress: the speakers watch the same way.
		frrMon, birdMon := monitorRoutes(t, n.FRR.NS()), monitorRoutes(t, n.BIRD.NS())
		seen := watchIngress(t, w, "berth.test/latency")
		var toFRR, toBIRD []time.Duration
		for i := range 100 {
			name := fmt.Sprintf("lat-%03d", i)
			w.create(&corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name, Labels: map[string]string{"berth.test/latency": ""},
					Annotations: map[string]string{"berth.dev/pool": "bgp"}},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
					IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
					Ports:      []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}},
			})
			var t0 time.Time
			var p netip.Prefix
			lab.Eventually(t, 10*time.Second, name+"'s route in FRR's and BIRD's kernels", func(ctx context.Context) (string, bool) {
				at, ip, ok := seen(name)
				if !ok {
					return "no ingress yet", false
				}
				t0, p = at, netip.PrefixFrom(ip, 32)
				_, f := frrMon.AddedAt(p)
				_, b := birdMon.AddedAt(p)
				return fmt.Sprintf("%s: FRR %t BIRD %t", p, f, b), f && b
			})
			f, _ := frrMon.AddedAt(p)
			b, _ := birdMon.AddedAt(p)
			toFRR, toBIRD = append(toFRR, f.Sub(t0)), append(toBIRD, b.Sub(t0))
		}
		lab.SLO(t, "Service status → route in FRR's kernel table, 100 Services", toFRR, 150*time.Millisecond)
		lab.SLO(t, "Service status → route in BIRD's kernel table, 100 Services", toBIRD, 50*time.Millisecond)
		for i := range 100 {
			if err := w.site.Client().CoreV1().Services("demo").Delete(ctx, fmt.Sprintf("lat-%03d", i), metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("SIGKILL withdraws the next hop", func(t *testing.T) {
		var samples []time.Duration
		frr := frrKernel{n.FRR}
		for i := range 5 {
			victim := w.nodes[i%len(w.nodes)]
			samples = append(samples, hopGone(t, frr, webIP, all, nodeAddr[victim], fmt.Sprintf("kill %d", i), 10*time.Second, func() {
				if err := w.speakers[victim].Kill(); err != nil {
					t.Fatal(err)
				}
			}))
			w.startSpeaker(victim)
		}
		lab.SLO(t, "SIGKILL → next hop gone from FRR's kernel route", samples, time.Second)
	})

	t.Run("SIGSTOP or a partition: the hold timer withdraws", func(t *testing.T) {
		// A frozen speaker keeps its socket open: only the hold time (3 s here) tells.
		w.updatePeer(t, "frr", func(p *v1alpha1.BGPPeer) { p.Spec.HoldTime = &metav1.Duration{Duration: 3 * time.Second} })
		var samples []time.Duration
		frr := frrKernel{n.FRR}
		for i := range 3 {
			victim := w.nodes[i%len(w.nodes)]
			samples = append(samples, hopGone(t, frr, webIP, all, nodeAddr[victim], fmt.Sprintf("stop %d", i), 15*time.Second, func() {
				if err := w.speakers[victim].Pause(); err != nil {
					t.Fatal(err)
				}
			}))
			if err := w.speakers[victim].Resume(); err != nil {
				t.Fatal(err)
			}
		}
		lab.SLO(t, "SIGSTOP → next hop gone from FRR's kernel route (hold time 3 s)", samples, 4*time.Second)

		// A partition: the node drops everything from and to FRR's address; the session's
		// socket stays open on both sides until the hold timer.
		samples = nil
		for i, node := range w.site.Nodes() {
			var faults []netns.Fault
			samples = append(samples, hopGone(t, frr, webIP, all, node.Addr4, fmt.Sprintf("partition %d", i), 15*time.Second, func() {
				for _, match := range []string{"ip saddr " + n.FRRHost.Addr4.String(), "ip daddr " + n.FRRHost.Addr4.String()} {
					f, err := node.NS.Drop(ctx, match)
					if err != nil {
						t.Fatal(err)
					}
					faults = append(faults, f)
				}
			}))
			for _, f := range faults {
				if err := f.Remove(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		lab.SLO(t, "nft partition from FRR → next hop gone from FRR's kernel route (hold time 3 s)", samples, 4*time.Second)
	})

	t.Run("SIGTERM shuts down gracefully", func(t *testing.T) {
		var samples []time.Duration
		for i := range 5 {
			victim := w.nodes[i%len(w.nodes)]
			gone := nodeAddr[victim]
			lab.Eventually(t, 30*time.Second, fmt.Sprintf("stop %d: BIRD has %s via every node", i, webIP), func(ctx context.Context) (string, bool) {
				hops, seen := bird4.nextHops(ctx, webIP)
				return seen, slices.Equal(hops, all)
			})
			if err := w.speakers[victim].Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			stopped := time.Now()
			gshut := false
			var took time.Duration
			// birdc answers in ~2 ms, so the GRACEFUL_SHUTDOWN phase (500 ms) is seen.
			lab.Eventually(t, 10*time.Second, fmt.Sprintf("stop %d: %s leaves BIRD", i, gone), func(ctx context.Context) (string, bool) {
				rs, err := n.BIRD.BGPRoutes(ctx, netns.IPv4)
				if err != nil {
					return err.Error(), false
				}
				for _, r := range rs {
					if r.Prefix == netip.PrefixFrom(webIP, 32) && r.NextHop == gone {
						gshut = gshut || slices.Contains(r.Communities, "65535:0")
						return r.String() + " " + strings.Join(r.Communities, " "), false
					}
				}
				took = time.Since(stopped)
				return "", true
			})
			if !gshut {
				t.Errorf("stop %d: BIRD never saw GRACEFUL_SHUTDOWN on %s's path before it went", i, victim)
			}
			samples = append(samples, took)
			select {
			case <-w.speakers[victim].Done():
			case <-time.After(10 * time.Second):
				t.Fatalf("speaker on %s still runs 10 s after SIGTERM", victim)
			}
			w.startSpeaker(victim)
		}
		lab.SLO(t, "SIGTERM → path gone from BIRD, GRACEFUL_SHUTDOWN first", samples, time.Second)
	})

	t.Run("graceful restart: a restarted speaker's next hop never leaves", func(t *testing.T) {
		w.updatePeer(t, "frr", func(p *v1alpha1.BGPPeer) {
			p.Spec.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true, RestartTime: &metav1.Duration{Duration: 30 * time.Second}}
		})
		frr := frrKernel{n.FRR}
		victim := w.nodes[0]
		kept := nodeAddr[victim]
		// The lab's FRR has graceful restart off; this neighbour gets helper mode, which
		// the session the BGPPeer change restarts picks up.
		if _, err := n.FRR.VTYSH(ctx, "configure terminal", "router bgp "+fmt.Sprint(n.FRR.ASN()),
			"neighbor "+kept.String()+" graceful-restart-helper"); err != nil {
			t.Fatal(err)
		}
		lab.Eventually(t, 30*time.Second, "FRR's kernel route via every node, FRR a graceful restart helper of "+kept.String(), func(ctx context.Context) (string, bool) {
			hops, seen := frr.nextHops(ctx, webIP)
			if !slices.Equal(hops, all) {
				return seen, false
			}
			local, remote, err := frrGracefulRestart(ctx, n.FRR, kept)
			return fmt.Sprintf("FRR's graceful restart mode with %s: local %q, remote %q %v", kept, local, remote, err),
				strings.HasPrefix(local, "Helper") && remote == "Restart"
		})
		before := frrConnections(t, n.FRR)[kept.String()]
		// Watch the kernel route every 10 ms through the kill, the restart and the
		// End-of-RIB; without graceful restart the next hop went within ~90 ms.
		watch, stopWatch := context.WithCancel(ctx)
		missing := make(chan string, 1)
		watched := make(chan int)
		go func() {
			polls := 0
			defer func() { watched <- polls }()
			for watch.Err() == nil {
				if hops, seen := frr.nextHops(watch, webIP); watch.Err() == nil && !slices.Contains(hops, kept) {
					select {
					case missing <- fmt.Sprintf("%s at %s: %s", kept, time.Now().Format("15:04:05.000"), seen):
					default:
					}
				}
				polls++
				time.Sleep(10 * time.Millisecond)
			}
		}()
		if err := w.speakers[victim].Kill(); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		w.startSpeaker(victim)
		lab.Eventually(t, 30*time.Second, "the restarted speaker's session with FRR", func(ctx context.Context) (string, bool) {
			now := frrConnections(t, n.FRR)[kept.String()]
			return fmt.Sprintf("connections %d, before %d", now, before), now > before
		})
		up := time.Since(killed)
		time.Sleep(3 * time.Second) // the End-of-RIB and FRR's processing of it; the watch goes on
		stopWatch()
		polls := <-watched
		select {
		case m := <-missing:
			t.Errorf("FRR's kernel route lost the restarted node's next hop: %s", m)
		default:
			t.Logf("graceful restart: SIGKILL, restart, session back %v later; FRR's kernel route kept %s throughout (%d polls)", up.Round(time.Millisecond), kept, polls)
		}
		if polls < 100 {
			t.Errorf("only %d polls of FRR's kernel route: too few to tell", polls)
		}
	})
}

// hopGone waits for FRR's kernel route to ip to go via every node of all, runs act, and
// returns how long after it the route lost gone (polling the kernel: one ip call, a few
// ms, where vtysh takes ~80 ms).
func hopGone(t *testing.T, frr frrKernel, ip netip.Addr, all []netip.Addr, gone netip.Addr, what string, timeout time.Duration, act func()) time.Duration {
	t.Helper()
	lab.Eventually(t, 30*time.Second, what+": FRR's kernel route via every node", func(ctx context.Context) (string, bool) {
		hops, seen := frr.nextHops(ctx, ip)
		return seen, slices.Equal(hops, all)
	})
	act()
	start := time.Now()
	var took time.Duration
	lab.Eventually(t, timeout, fmt.Sprintf("%s: %s leaves FRR's route", what, gone), func(ctx context.Context) (string, bool) {
		hops, seen := frr.nextHops(ctx, ip)
		took = time.Since(start)
		return seen, len(hops) == len(all)-1 && !slices.Contains(hops, gone)
	})
	return took
}

// updatePeer changes a BGPPeer's spec, again on a conflict: the speakers and the
// controller write its status all the time.
func (w *world) updatePeer(t *testing.T, name string, change func(*v1alpha1.BGPPeer)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var p v1alpha1.BGPPeer
		if err := w.cr.Get(t.Context(), client.ObjectKey{Name: name}, &p); err != nil {
			return err
		}
		change(&p)
		return w.cr.Update(t.Context(), &p)
	})
	if err != nil {
		t.Fatalf("update BGPPeer %s: %v", name, err)
	}
}

// peerSince reads when each named BGPPeer's session of each node came up.
func (w *world) peerSince(t *testing.T, peers []string) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	for _, name := range peers {
		var p v1alpha1.BGPPeer
		if err := w.cr.Get(t.Context(), client.ObjectKey{Name: name}, &p); err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Status.Nodes {
			if e.State != v1alpha1.SessionEstablished || e.Since == nil {
				t.Fatalf("BGPPeer %s: node %s is %s", name, e.Node, e.State)
			}
			out[name+"/"+e.Node] = e.Since.Time
		}
	}
	return out
}

// frrConnections reads how many times each of FRR's neighbours has been established.
func frrConnections(t *testing.T, frr *router.FRR) map[string]int {
	t.Helper()
	out, err := frr.VTYSH(t.Context(), "show bgp neighbors json")
	if err != nil {
		t.Fatal(err)
	}
	var nbs map[string]struct {
		ConnectionsEstablished int `json:"connectionsEstablished"`
	}
	if err := json.Unmarshal(out, &nbs); err != nil {
		t.Fatalf("show bgp neighbors json: %v", err)
	}
	counts := map[string]int{}
	for addr, nb := range nbs {
		counts[addr] = nb.ConnectionsEstablished
	}
	return counts
}

// counterOf reads the packets of the first counter on a line of nft's listing that
// contains word.
func counterOf(listing, word string) uint64 {
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Fields(line)
		for i := range f {
			if f[i] == "packets" && i+1 < len(f) && strings.Contains(line, word) {
				n, _ := strconv.ParseUint(f[i+1], 10, 64)
				return n
			}
		}
	}
	return 0
}

func frrKernelHops(ctx context.Context, frr *router.FRR, ip netip.Addr) []netip.Addr {
	hops, _ := frrKernel{frr}.nextHops(ctx, ip)
	return hops
}

// frrGracefulRestart reads FRR's graceful restart modes on its session with a: its own
// ("Helper", "Disable"…, a * when inherited) and the node's ("Restart" when it
// advertises the capability).
func frrGracefulRestart(ctx context.Context, frr *router.FRR, a netip.Addr) (local, remote string, err error) {
	out, err := frr.VTYSH(ctx, "show bgp neighbors "+a.String()+" json")
	if err != nil {
		return "", "", err
	}
	var nbs map[string]struct {
		GR struct {
			Local  string `json:"localGrMode"`
			Remote string `json:"remoteGrMode"`
		} `json:"gracefulRestartInfo"`
	}
	if err := json.Unmarshal(out, &nbs); err != nil {
		return "", "", fmt.Errorf("show bgp neighbors %s json: %w", a, err)
	}
	gr := nbs[a.String()].GR
	return gr.Local, gr.Remote, nil
}

// monitorRoutes timestamps the kernel routes of ns until the test ends.
func monitorRoutes(t *testing.T, ns netns.NS) *netns.RouteMonitor {
	t.Helper()
	m, err := ns.MonitorRoutes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m
}

// watchIngress watches the demo Services with label and returns a function that tells
// when this test first saw a Service's ingress, and its first IP.
func watchIngress(t *testing.T, w *world, label string) func(name string) (time.Time, netip.Addr, bool) {
	t.Helper()
	wi, err := w.site.Client().CoreV1().Services("demo").Watch(t.Context(), metav1.ListOptions{LabelSelector: label})
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		at time.Time
		ip netip.Addr
	}
	var mu sync.Mutex
	first := map[string]seen{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range wi.ResultChan() {
			svc, ok := ev.Object.(*corev1.Service)
			if !ok || len(svc.Status.LoadBalancer.Ingress) == 0 {
				continue
			}
			at := time.Now()
			ip, err := netip.ParseAddr(svc.Status.LoadBalancer.Ingress[0].IP)
			if err != nil {
				continue
			}
			mu.Lock()
			if _, ok := first[svc.Name]; !ok {
				first[svc.Name] = seen{at, ip}
			}
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		wi.Stop()
		<-done
	})
	return func(name string) (time.Time, netip.Addr, bool) {
		mu.Lock()
		defer mu.Unlock()
		s, ok := first[name]
		return s.at, s.ip, ok
	}
}

// bgpService creates a Service on the BGP pool.
func (w *world) bgpService(name, app string, etp corev1.ServiceExternalTrafficPolicy) {
	w.create(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name, Annotations: map[string]string{"berth.dev/pool": "bgp"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": app},
			ExternalTrafficPolicy: etp, IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyRequireDualStack),
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	})
}

// bgpRouter reads the next hops a router's RIB has for a host route, sorted.
type bgpRouter interface {
	name() string
	nextHops(ctx context.Context, ip netip.Addr) (hops []netip.Addr, seen string)
}

type frrRIB struct {
	r   *router.FRR
	fam netns.Family
}

func (f frrRIB) name() string { return "FRR " + f.fam.String() }
func (f frrRIB) nextHops(ctx context.Context, ip netip.Addr) ([]netip.Addr, string) {
	rs, err := f.r.BGPRoutes(ctx, f.fam)
	return ribHops(rs, err, ip)
}

type birdRIB struct {
	r   *router.BIRD
	fam netns.Family
}

func (b birdRIB) name() string { return "BIRD " + b.fam.String() }
func (b birdRIB) nextHops(ctx context.Context, ip netip.Addr) ([]netip.Addr, string) {
	rs, err := b.r.BGPRoutes(ctx, b.fam)
	return ribHops(rs, err, ip)
}

func ribHops(rs []router.Route, err error, ip netip.Addr) ([]netip.Addr, string) {
	if err != nil {
		return nil, err.Error()
	}
	var hops []netip.Addr
	var seen []string
	for _, r := range rs {
		if r.Prefix == netip.PrefixFrom(ip, ip.BitLen()) {
			hops = append(hops, r.NextHop)
			seen = append(seen, r.String())
		}
	}
	slices.SortFunc(hops, netip.Addr.Compare)
	return hops, fmt.Sprintf("%d paths: %s", len(seen), strings.Join(seen, "; "))
}

// frrKernel reads the route zebra installed in FRR's namespace.
type frrKernel struct{ r *router.FRR }

func (f frrKernel) nextHops(ctx context.Context, ip netip.Addr) ([]netip.Addr, string) {
	rs, err := f.r.KernelRoutes(ctx, netns.FamilyOf(ip))
	if err != nil {
		return nil, err.Error()
	}
	for _, r := range rs {
		if r.Dst == netip.PrefixFrom(ip, ip.BitLen()) {
			hops := slices.Clone(r.Gateways)
			slices.SortFunc(hops, netip.Addr.Compare)
			return hops, r.String()
		}
	}
	return nil, "no kernel route"
}
