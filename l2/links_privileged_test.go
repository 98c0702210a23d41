//go:build privileged

package l2

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/berthlb/berth/lab/capture"
	"github.com/berthlb/berth/lab/netns"
)

// TestLinkEventsInNetns: the Announcer follows the links through netlink events, without
// Set and long before its 30 s resync: a link that goes down stops answering, one that
// comes back up answers again (announcing first), and a new default interface is picked
// up as soon as it is up.
func TestLinkEventsInNetns(t *testing.T) {
	s, child := inNodeNetns(t)
	if !child {
		return
	}
	a := startAnnouncer(t, Config{ResyncInterval: time.Hour}) // only events can explain what follows
	eth1 := []string{segDev}
	a.Set([]Assignment{{IP: lb4}, {IP: lb6}})
	waitOwned(t, a, time.Second, on(eth1, lb4, lb6))
	if got := s.arping(t, segDev, lb4); got != selfMAC.String() {
		t.Fatalf("arping %s: answered by %q, want %s", lb4, got, selfMAC)
	}
	link, err := netlink.LinkByName(segDev)
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if err := netlink.LinkSetDown(link); err != nil {
		t.Fatal(err)
	}
	took := waitOwned(t, a, time.Second, []Assignment{})
	t.Logf("link down → nothing owned: %v", took.Round(time.Microsecond))
	if got := marked(t); len(got) != 0 {
		t.Errorf("marked addresses on lo while nothing is answered: %v", got)
	}
	if got := s.arping(t, segDev, lb4); got != "" {
		t.Errorf("arping %s with the node's link down: answered by %s", lb4, got)
	}

	capt, err := capture.Start(t.Context(), s.client, segDev)
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Close()
	running := watchRunning(t, segDev)
	start = time.Now()
	if err := netlink.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	took = waitOwned(t, a, 2*time.Second, on(eth1, lb4, lb6))
	var opUp time.Time
	select {
	case opUp = <-running:
	case <-time.After(time.Second):
		t.Fatal("the kernel never reported eth1 running")
	}
	t.Logf("link up → kernel reports operstate up (IFF_RUNNING) after %v (linkwatch batching); both IPs owned %v after that",
		opUp.Sub(start).Round(time.Microsecond), (took - opUp.Sub(start)).Round(time.Microsecond))
	for _, ip := range []netip.Addr{lb4, lb6} {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		f, err := capt.WaitFor(ctx, func(f capture.Frame) bool { return !f.Outgoing && announces(f, ip) })
		cancel()
		if err != nil {
			t.Fatalf("announcement of %s after link up: %v", ip, err)
		}
		t.Logf("link up → client received the announcement of %s %v after operstate up", ip, f.Time.Sub(opUp).Round(time.Microsecond))
	}
	if got := s.arping(t, segDev, lb4); got != selfMAC.String() {
		t.Errorf("arping %s after link up: answered by %q, want %s", lb4, got, selfMAC)
	}
	if got := s.ndisc(t, segDev, lb6); got != selfMAC.String() {
		t.Errorf("ndisc6 %s after link up: answered by %q, want %s", lb6, got, selfMAC)
	}

	// A new interface, created down and then set up, as a NIC being plugged in.
	eth2MAC, _ := net.ParseMAC("02:00:00:00:03:0b")
	if err := netns.Veth(t.Context(), netns.End{NS: s.node, Name: "eth2", MAC: eth2MAC},
		netns.End{NS: s.client, Name: "eth2", MAC: strangerMAC}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	took = waitOwned(t, a, 2*time.Second, on([]string{"eth1", "eth2"}, lb4, lb6))
	t.Logf("new interface eth2 → answered there too: %v after the veth was made", took.Round(time.Microsecond))
	if got := s.arping(t, "eth2", lb4); got != eth2MAC.String() {
		t.Errorf("arping %s on eth2: answered by %q, want %s", lb4, got, eth2MAC)
	}
	if d, err := DefaultInterfaces(); err != nil || !slices.Equal(d, []string{"eth1", "eth2"}) {
		t.Errorf("DefaultInterfaces() = %v, %v; want [eth1 eth2]", d, err)
	}

	// Enslaved to a bridge, eth2 is a port: the bridge answers instead.
	if err := s.node.AddBridge(t.Context(), "br0"); err != nil {
		t.Fatal(err)
	}
	if err := s.node.AttachToBridge(t.Context(), "eth2", "br0"); err != nil {
		t.Fatal(err)
	}
	took = waitOwned(t, a, 2*time.Second, on([]string{"br0", "eth1"}, lb4, lb6))
	t.Logf("eth2 enslaved to br0 → answered on br0 instead: %v", took.Round(time.Microsecond))

	eth2, err := netlink.LinkByName("eth2")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkDel(eth2); err != nil {
		t.Fatal(err)
	}
	br0, err := netlink.LinkByName("br0")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkDel(br0); err != nil {
		t.Fatal(err)
	}
	took = waitOwned(t, a, time.Second, on(eth1, lb4, lb6))
	t.Logf("eth2 and br0 deleted → eth1 only: %v", took.Round(time.Microsecond))
}

// watchRunning returns a channel that receives the time the kernel first reports dev
// with IFF_RUNNING after this call.
func watchRunning(t *testing.T, dev string) <-chan time.Time {
	t.Helper()
	ch := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	if err := netlink.LinkSubscribe(ch, done); err != nil {
		t.Fatal(err)
	}
	out := make(chan time.Time, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		sent := false
		for u := range ch {
			if !sent && u.Attrs().Name == dev && u.Attrs().Flags&net.FlagRunning != 0 {
				out <- time.Now()
				sent = true
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		for range ch {
		}
		<-finished
	})
	return out
}
