//go:build privileged

package datapath

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berthlb/berth/lab/echo"
	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/netns/netnstest"
	"github.com/berthlb/berth/lab/proc"
)

// proxyLab adds to the front door lab two pods behind the node and another node, each in
// its own namespace with an echo server: the pods on 8080 (routed through the node), the
// other node on 30080, standing for its NodePort. The other node knows no route to the
// client: its replies reach the client only when the node masqueraded the connection.
type proxyLab struct {
	client           netns.NS
	pod1, pod2       [2]netip.Addr // v4, v6
	other, otherSide [2]netip.Addr // the other node's address, and the node's on that link
}

func newProxyLab(t *testing.T) proxyLab {
	t.Helper()
	ctx := t.Context()
	l := proxyLab{client: frontDoorLab(t)}
	m, err := netns.New(netns.NewPrefix())
	if err != nil {
		t.Fatal(err)
	}
	runner, err := proc.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = runner.Close()
		_ = m.Close(context.Background())
	})
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/all/forwarding", []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	// peer makes a namespace behind the node's device dev, on 198.19.<n>.0/24 and
	// 2001:db8:19:<n>::/64 (the node .1, the peer .2), with an echo server named name on
	// port; def routes the peer's traffic through the node.
	peer := func(name, dev string, n int, port uint16, def bool) [2]netip.Addr {
		ns, err := m.Create(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		v4, v6 := fmt.Sprintf("198.19.%d.", n), fmt.Sprintf("2001:db8:19:%d::", n)
		cmds := []string{
			fmt.Sprintf("link add eth0 type veth peer name %s netns %d", dev, os.Getpid()),
			"addr add " + v4 + "2/24 dev eth0",
			"addr add " + v6 + "2/64 dev eth0 nodad",
			"link set eth0 up",
		}
		if def {
			cmds = append(cmds, "route add default via "+v4+"1", "route add default via "+v6+"1")
		}
		if err := ns.Batch(ctx, cmds...); err != nil {
			t.Fatal(err)
		}
		for _, args := range []string{"addr add " + v4 + "1/24 dev " + dev, "addr add " + v6 + "1/64 dev " + dev + " nodad", "link set " + dev + " up"} {
			if out, err := exec.CommandContext(ctx, "ip", strings.Fields(args)...).CombinedOutput(); err != nil {
				t.Fatalf("ip %s: %v: %s", args, err, out)
			}
		}
		cfg := echo.Config{Pod: name, Ports: []uint16{port}}
		spec, err := echo.Spec(name, ns, cfg)
		if err != nil {
			t.Fatal(err)
		}
		p, err := runner.Start(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for ok := false; !ok; {
			if ok, err = echo.Listening(p.PID(), cfg); err != nil || time.Now().After(deadline) {
				t.Fatalf("echo %s not listening: %v", name, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return [2]netip.Addr{netip.MustParseAddr(v4 + "2"), netip.MustParseAddr(v6 + "2")}
	}
	l.pod1 = peer("pod1", "p1", 71, 8080, true)
	l.pod2 = peer("pod2", "p2", 72, 8080, true)
	l.other = peer("other-node", "o0", 73, 30080, false)
	l.otherSide = [2]netip.Addr{netip.MustParseAddr("198.19.73.1"), netip.MustParseAddr("2001:db8:19:73::1")}
	return l
}

// TestProxy applies Proxy frontends in a node namespace and sends real TCP and UDP from a
// client: new connections are spread over the node's own endpoints, which see the
// client's address; a frontend whose backend is another node's NodePort is masqueraded
// and answered through the node; one without backends drops; one restricted to source
// ranges lets the client in only when a range holds it; the door still closes the other
// ports; a frontend chain flushed by hand comes back.
func TestProxy(t *testing.T) {
	if !netnstest.Reexec(t) {
		return
	}
	l := newProxyLab(t)
	ctx := t.Context()
	tbl := NewTable()
	t.Cleanup(func() { _ = tbl.Remove(context.Background()) })

	local := func(port uint16, fam int) []Backend {
		return []Backend{{Addr: netip.AddrPortFrom(l.pod1[fam], port)}, {Addr: netip.AddrPortFrom(l.pod2[fam], port)}}
	}
	fe := func(ip netip.Addr, p Protocol, port uint16, bs []Backend) ProxyFrontend {
		return ProxyFrontend{Frontend: Frontend{IP: ip, Protocol: p, Port: port}, Backends: bs}
	}
	desired := Desired{Proxy: []ProxyFrontend{
		fe(lb4, TCP, 8000, local(8080, 0)),
		fe(lb4, UDP, 8000, local(8080, 0)),
		fe(lb6, TCP, 8000, local(8080, 1)),
		fe(lb6, UDP, 8000, local(8080, 1)),
		fe(lb4, TCP, 8001, []Backend{{Addr: netip.AddrPortFrom(l.other[0], 30080), Masquerade: true}}),
		fe(lb6, UDP, 8001, []Backend{{Addr: netip.AddrPortFrom(l.other[1], 30080), Masquerade: true}}),
		fe(lb4, TCP, 8002, nil),
		// loadBalancerSourceRanges: the client's /24 may, a range without it may not.
		restricted(fe(lb4, TCP, 8003, local(8080, 0)), "198.18.77.0/24", "198.51.100.0/24"),
		restricted(fe(lb4, TCP, 8004, local(8080, 0)), "198.51.100.0/24"),
		restricted(fe(lb6, TCP, 8003, local(8080, 1)), "2001:db8:77::2/128"),
		restricted(fe(lb6, TCP, 8004, local(8080, 1))),
	}}
	// The speaker's front door opens every Service port; restriction wins.
	for _, pf := range desired.Proxy {
		desired.Open = append(desired.Open, pf.Frontend)
	}
	st, err := tbl.Apply(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	want := Status{Present: true, IPs: 2, Open: 7, Proxy: 11, Chains: 16, Rules: 37}
	if st != want {
		t.Errorf("Apply: status %+v, want %+v", st, want)
	}
	if read, err := tbl.Status(); err != nil || read != want {
		t.Errorf("read back: %+v, %v; want %+v", read, err, want)
	}

	check := func(t *testing.T) {
		t.Helper()
		for _, c := range []struct {
			network string
			addr    netip.AddrPort
			pods    []string
			client  netip.Addr // the address the backend saw
		}{
			{"tcp", netip.AddrPortFrom(lb4, 8000), []string{"pod1", "pod2"}, clientAddr4},
			{"udp", netip.AddrPortFrom(lb4, 8000), []string{"pod1", "pod2"}, clientAddr4},
			{"tcp", netip.AddrPortFrom(lb6, 8000), []string{"pod1", "pod2"}, clientAddr6},
			{"udp", netip.AddrPortFrom(lb6, 8000), []string{"pod1", "pod2"}, clientAddr6},
			{"tcp", netip.AddrPortFrom(lb4, 8001), []string{"other-node"}, l.otherSide[0]},
			{"tcp", netip.AddrPortFrom(lb4, 8003), []string{"pod1", "pod2"}, clientAddr4},
			{"tcp", netip.AddrPortFrom(lb6, 8003), []string{"pod1", "pod2"}, clientAddr6},
			{"udp", netip.AddrPortFrom(lb6, 8001), []string{"other-node"}, l.otherSide[1]},
		} {
			seen := map[string]int{}
			for range 16 { // both of two pods answer 16 random draws but for 2 × 2⁻¹⁶
				r, err := echo.Ask(ctx, l.client, c.network, c.addr)
				if err != nil {
					t.Errorf("%s %s: %v", c.network, c.addr, err)
					break
				}
				seen[r.Pod]++
				if r.Client.Addr() != c.client {
					t.Errorf("%s %s: %s saw the client as %s, want %s", c.network, c.addr, r.Pod, r.Client.Addr(), c.client)
				}
			}
			for _, p := range c.pods {
				if seen[p] == 0 {
					t.Errorf("%s %s: answered by %v, never by %s", c.network, c.addr, seen, p)
				}
			}
			if len(seen) > len(c.pods) {
				t.Errorf("%s %s: answered by %v, want only %v", c.network, c.addr, seen, c.pods)
			}
		}
		for _, a := range []netip.AddrPort{netip.AddrPortFrom(lb4, 8002), netip.AddrPortFrom(lb4, 22), netip.AddrPortFrom(lb6, 8001),
			netip.AddrPortFrom(lb4, 8004), netip.AddrPortFrom(lb6, 8004)} {
			if reachable(t, l.client, "tcp", a) {
				t.Errorf("tcp %s reachable, want dropped", a)
			}
		}
	}
	t.Run("traffic reaches the backends; source ranges hold", check)

	t.Run("a frontend flushed by hand comes back", func(t *testing.T) {
		flushRepaired(t, tbl, frontendChain(desired.Proxy[0].Frontend))
		check(t)
	})
}

// TestProxyListable: nft(8), which operators use to look at the table, can print it.
func TestProxyListable(t *testing.T) {
	if !netnstest.Reexec(t) {
		return
	}
	tbl := NewTable()
	t.Cleanup(func() { _ = tbl.Remove(context.Background()) })
	pod := netip.MustParseAddrPort("198.19.71.2:8080")
	node6 := netip.MustParseAddrPort("[2001:db8:19:73::2]:30080")
	if _, err := tbl.Apply(t.Context(), Desired{Proxy: []ProxyFrontend{
		{Frontend: Frontend{IP: lb4, Protocol: TCP, Port: 80}, Backends: []Backend{{Addr: pod}}},
		{Frontend: Frontend{IP: lb6, Protocol: UDP, Port: 53}, Backends: []Backend{{Addr: node6, Masquerade: true}}},
	}}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), "nft", "list", "table", "inet", TableName).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table: %v\n%s", err, out)
	}
	for _, want := range []string{"198.19.71.2 . 8080", "2001:db8:19:73::2 . 30080", "fe-203.0.113.7-tcp-80", "masquerade"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("nft list table: no %q in\n%s", want, out)
		}
	}
}

func restricted(pf ProxyFrontend, ranges ...string) ProxyFrontend {
	pf.RestrictSources = true
	for _, r := range ranges {
		pf.SourceRanges = append(pf.SourceRanges, netip.MustParsePrefix(r))
	}
	return pf
}
