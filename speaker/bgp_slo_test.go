//go:build integration && privileged && timing

package speaker_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/echo"
	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/router"
)

// nodeASN is the nodes' AS: eBGP to both routers (FRR 64500, BIRD 64501).
const nodeASN = 64512

// TestBGPSpeakersSLO runs three speakers with real FRR and BIRD peers: an eTP=Cluster
// Service's IP reaches both routers with every node as next hop (and the advertisement's
// community), an eTP=Local one only from the node with its endpoint, the client behind
// FRR reaches the Service, and a SIGKILLed speaker's next hop leaves FRR's kernel route
// within 1 s (FRR's session drops with the socket; graceful restart off).
func TestBGPSpeakersSLO(t *testing.T) {
	w := startWorld(t, worldOptions{nodes: 3, routers: true, kubeProxy: true})
	ctx := t.Context()
	n := w.site.Network()
	nodeAddr := map[string]netip.Addr{}
	for _, node := range w.site.Nodes() {
		nodeAddr[node.Name] = node.Addr4
		for _, r := range []interface {
			AddNeighbor(context.Context, router.Neighbor) error
		}{n.FRR, n.BIRD} {
			if err := r.AddNeighbor(ctx, router.Neighbor{Addr: node.Addr4, ASN: nodeASN}); err != nil {
				t.Fatal(err)
			}
		}
	}
	hold := &metav1.Duration{Duration: 9 * time.Second}
	connect := &metav1.Duration{Duration: time.Second}
	for name, r := range map[string]struct {
		addr netip.Addr
		asn  uint32
	}{"frr": {n.FRRHost.Addr4, n.FRR.ASN()}, "bird": {n.BIRDHost.Addr4, n.BIRD.ASN()}} {
		w.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.BGPPeerSpec{
			MyASN: nodeASN, PeerASN: int64(r.asn), PeerAddress: r.addr.String(), HoldTime: hold, ConnectTime: connect}})
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
	w.bgpService("web", "web", corev1.ServiceExternalTrafficPolicyCluster)
	w.bgpService("local", "local", corev1.ServiceExternalTrafficPolicyLocal)
	webIP, localIP := w.ingressIP(t, "web"), w.ingressIP(t, "local")
	var all []netip.Addr
	for _, a := range nodeAddr {
		all = append(all, a)
	}
	slices.SortFunc(all, netip.Addr.Compare)

	start := time.Now()
	for _, r := range []bgpRouter{frrRIB{n.FRR}, birdRIB{n.BIRD}} {
		lab.Eventually(t, 60*time.Second, fmt.Sprintf("%s: %s via every node", r.name(), webIP), func(ctx context.Context) (string, bool) {
			hops, seen := r.nextHops(ctx, webIP)
			return seen, slices.Equal(hops, all)
		})
	}
	t.Logf("eTP=Cluster %s at FRR and BIRD via %v, %v after the Services were created", webIP, all, time.Since(start).Round(time.Millisecond))
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
	local := []netip.Addr{nodeAddr[w.nodes[0]]}
	for _, r := range []bgpRouter{frrRIB{n.FRR}, birdRIB{n.BIRD}} {
		lab.Eventually(t, 30*time.Second, fmt.Sprintf("%s: eTP=Local %s via %s only", r.name(), localIP, w.nodes[0]), func(ctx context.Context) (string, bool) {
			hops, seen := r.nextHops(ctx, localIP)
			return seen, slices.Equal(hops, local)
		})
	}

	t.Run("client reaches the Service", func(t *testing.T) {
		pods := map[string]bool{}
		var last error
		lab.Eventually(t, 30*time.Second, "client behind FRR reaches "+webIP.String(), func(ctx context.Context) (string, bool) {
			rep, err := echo.Ask(ctx, n.Client.NS, "tcp", netip.AddrPortFrom(webIP, 80))
			if err != nil {
				last = err
				return err.Error(), false
			}
			pods[rep.Pod] = true
			return "", true
		})
		for range 20 { // the flows spread across nodes and pods
			if rep, err := echo.Ask(ctx, n.Client.NS, "tcp", netip.AddrPortFrom(webIP, 80)); err == nil {
				pods[rep.Pod] = true
			} else {
				last = err
			}
		}
		t.Logf("client %s reached %s: pods %v (last error: %v)", n.Client.Addr4, webIP, slices.Sorted(func(yield func(string) bool) {
			for p := range pods {
				if !yield(p) {
					return
				}
			}
		}), last)
	})

	t.Run("SIGKILL withdraws the next hop", func(t *testing.T) {
		var samples []time.Duration
		frr := frrKernel{n.FRR}
		for i := range 5 {
			victim := w.nodes[i%len(w.nodes)]
			gone := nodeAddr[victim]
			lab.Eventually(t, 30*time.Second, fmt.Sprintf("kill %d: FRR's kernel route via every node", i), func(ctx context.Context) (string, bool) {
				hops, seen := frr.nextHops(ctx, webIP)
				return seen, slices.Equal(hops, all)
			})
			if err := w.speakers[victim].Kill(); err != nil {
				t.Fatal(err)
			}
			killed := time.Now()
			// Poll the kernel (one ip call, a few ms) rather than vtysh (~80 ms).
			var took time.Duration
			lab.Eventually(t, 10*time.Second, fmt.Sprintf("kill %d: %s leaves FRR's route", i, gone), func(ctx context.Context) (string, bool) {
				hops, seen := frr.nextHops(ctx, webIP)
				took = time.Since(killed)
				return seen, len(hops) == len(all)-1 && !slices.Contains(hops, gone)
			})
			samples = append(samples, took)
			w.startSpeaker(victim)
		}
		stats(t, "SIGKILL → next hop gone from FRR's kernel route", samples, time.Second)
	})
}

// bgpService creates a Service on the BGP pool.
func (w *world) bgpService(name, app string, etp corev1.ServiceExternalTrafficPolicy) {
	w.create(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name, Annotations: map[string]string{"berth.dev/pool": "bgp"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": app},
			ExternalTrafficPolicy: etp,
			Ports:                 []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	})
}

// ingressIP waits for a Service's first ingress IP.
func (w *world) ingressIP(t *testing.T, name string) netip.Addr {
	t.Helper()
	var ip netip.Addr
	lab.Eventually(t, 30*time.Second, "Service "+name+" gets an IP", func(ctx context.Context) (string, bool) {
		svc, err := w.site.Client().CoreV1().Services("demo").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error(), false
		}
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil {
				ip = a
				return "", true
			}
		}
		return fmt.Sprintf("%+v", svc.Status), false
	})
	return ip
}

// bgpRouter reads the next hops a router has for an IPv4 host route, sorted.
type bgpRouter interface {
	name() string
	nextHops(ctx context.Context, ip netip.Addr) (hops []netip.Addr, seen string)
}

type frrRIB struct{ r *router.FRR }

func (f frrRIB) name() string { return "FRR" }
func (f frrRIB) nextHops(ctx context.Context, ip netip.Addr) ([]netip.Addr, string) {
	rs, err := f.r.BGPRoutes(ctx, netns.IPv4)
	return ribHops(rs, err, ip)
}

type birdRIB struct{ r *router.BIRD }

func (b birdRIB) name() string { return "BIRD" }
func (b birdRIB) nextHops(ctx context.Context, ip netip.Addr) ([]netip.Addr, string) {
	rs, err := b.r.BGPRoutes(ctx, netns.IPv4)
	return ribHops(rs, err, ip)
}

func ribHops(rs []router.Route, err error, ip netip.Addr) ([]netip.Addr, string) {
	if err != nil {
		return nil, err.Error()
	}
	var hops []netip.Addr
	var seen []string
	for _, r := range rs {
		if r.Prefix == netip.PrefixFrom(ip, 32) {
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
	rs, err := f.r.KernelRoutes(ctx, netns.IPv4)
	if err != nil {
		return nil, err.Error()
	}
	for _, r := range rs {
		if r.Dst == netip.PrefixFrom(ip, 32) {
			hops := slices.Clone(r.Gateways)
			slices.SortFunc(hops, netip.Addr.Compare)
			return hops, r.String()
		}
	}
	return nil, "no kernel route"
}
