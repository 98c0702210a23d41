//go:build e2e

package e2e

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/lab"
)

// TestL2Reachability: IPv4, IPv6 and dual-stack Services of the lan pool answer the L2
// client over TCP and UDP, and the Announced condition names one owner per address.
func TestL2Reachability(t *testing.T) {
	lan := []netip.Prefix{netip.MustParsePrefix("198.18.2.192/26"), netip.MustParsePrefix("2001:db8:18:2::1:0/112")}
	ns, services := familyServices(t, nil)
	for name, ips := range services {
		for _, ip := range ips {
			if !lan[0].Contains(ip) && !lan[1].Contains(ip) {
				t.Errorf("%s: %s is not from the lan pool", name, ip)
			}
		}
		answers(t, l2Client(), ips)
		for _, ip := range ips {
			owner := waitL2Owner(t, ns, name, ip, func(string) bool { return true })
			t.Logf("%s: %s answers from the L2 client, owner %s", name, ip, owner)
		}
	}
}

// TestBGPReachability: IPv4, IPv6 and dual-stack Services of the bgp pool reach FRR with
// every node as next hop and answer the routed client over TCP and UDP.
func TestBGPReachability(t *testing.T) {
	_, services := familyServices(t, bgpPool)
	for name, ips := range services {
		for _, ip := range ips {
			took := waitNextHops(t, ip, env.nodes, 30*time.Second)
			t.Logf("%s: %s at FRR via %v (%v after the address)", name, ip, env.nodes, took.Round(time.Millisecond))
		}
		answers(t, routedClient(), ips)
	}
}

// familyServices makes a namespace with an echo Deployment of two behind three Services,
// IPv4 ("v4"), IPv6 ("v6") and dual-stack ("dual"), each changed by change, and returns
// the namespace and their addresses by name once all have them.
func familyServices(t *testing.T, change func(*corev1.Service)) (string, map[string][]netip.Addr) {
	t.Helper()
	ns := namespace(t)
	deployment(t, ns, "web", 2)
	families := []struct {
		name   string
		change func(*corev1.Service)
		n      int
	}{{"v4", nil, 1}, {"v6", ipv6Only, 1}, {"dual", dualStack, 2}}
	for _, f := range families {
		lbService(t, ns, f.name, "web", all(change, f.change))
	}
	out := map[string][]netip.Addr{}
	for _, f := range families {
		out[f.name] = ingress(t, ns, f.name, f.n)
	}
	return ns, out
}

// TestLocalTrafficPolicy: with externalTrafficPolicy Local only the nodes with a ready
// endpoint announce (one L2 owner among them; BGP next hops exactly them) and the Pod
// sees the client's own address, on both L2 and BGP.
func TestLocalTrafficPolicy(t *testing.T) {
	ns := namespace(t)
	with := env.nodes[1:] // two of three nodes
	for i, n := range with {
		echoPod(t, ns, "web-"+string(rune('a'+i)), n, "web")
	}
	lbService(t, ns, "l2", "web", all(local, dualStack))
	lbService(t, ns, "bgp", "web", all(local, dualStack, bgpPool))

	l2 := ingress(t, ns, "l2", 2)
	for _, ip := range l2 {
		owner := waitL2Owner(t, ns, "l2", ip, func(n string) bool { return slices.Contains(with, n) })
		r := reply(t, l2Client(), "tcp", ip)
		if want := clientAddr(l2Client(), ip); r.Client.Addr() != want {
			t.Errorf("L2 %s: the Pod saw %s, want the client's %s", ip, r.Client.Addr(), want)
		}
		t.Logf("L2 %s: owner %s (endpoints on %v), Pod %s saw the client %s", ip, owner, with, r.Pod, r.Client.Addr())
	}
	bgp := ingress(t, ns, "bgp", 2)
	for _, ip := range bgp {
		waitNextHops(t, ip, with, 30*time.Second)
		r := reply(t, routedClient(), "tcp", ip)
		if want := clientAddr(routedClient(), ip); r.Client.Addr() != want {
			t.Errorf("BGP %s: the Pod saw %s, want the client's %s", ip, r.Client.Addr(), want)
		}
	}
}

// clientAddr is the client's address of ip's family.
func clientAddr(h lab.Host, ip netip.Addr) netip.Addr {
	if ip.Is6() {
		return h.Addr6
	}
	return h.Addr4
}
