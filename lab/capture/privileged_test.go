//go:build privileged

package capture

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/berthlb/berth/lab/internal/tool"
	"github.com/berthlb/berth/lab/netns"
)

// TestSeesGratuitousARPAndND: a capture in one namespace sees the gratuitous ARP and the
// neighbour discovery of the other end of a veth pair, in the right direction.
func TestSeesGratuitousARPAndND(t *testing.T) {
	if err := tool.Require(tool.IP, tool.Sysctl, tool.Ping, tool.Arping); err != nil {
		t.Fatal(err)
	}
	m, err := netns.New(netns.NewPrefix())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	node, client := mustCreate(t, m, "node"), mustCreate(t, m, "client")
	nodeMAC := mac("02:18:02:00:00:0b")
	if err := netns.Veth(ctx, netns.End{NS: node, Name: "eth1", MAC: nodeMAC}, netns.End{NS: client, Name: "eth0"}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		ns netns.NS
		p  string
	}{{node, "198.18.2.11/24"}, {client, "198.18.2.2/24"}, {node, "2001:db8:18:2::11/64"}, {client, "2001:db8:18:2::2/64"}} {
		if err := a.ns.AddAddr(ctx, map[netns.NS]string{node: "eth1", client: "eth0"}[a.ns], netip.MustParsePrefix(a.p)); err != nil {
			t.Fatal(err)
		}
	}

	c, err := Start(ctx, client, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The node announces its address the way a speaker taking over an IP does.
	if out, err := node.Command(ctx, "arping", "-U", "-c1", "-I", "eth1", "198.18.2.11").CombinedOutput(); err != nil {
		t.Fatalf("arping: %v\n%s", err, out)
	}
	f, err := c.WaitFor(ctx, func(f Frame) bool {
		a, ok := f.ARP()
		return ok && !f.Outgoing && a.Gratuitous() && a.SenderIP == netip.MustParseAddr("198.18.2.11")
	})
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := f.ARP(); a.SenderMAC.String() != nodeMAC.String() || f.Src().String() != nodeMAC.String() {
		t.Errorf("gratuitous ARP %v from %s, want %s", a, f.Src(), nodeMAC)
	}

	// Neighbour discovery: the client's solicitation goes out, the node's answer comes in.
	target := netip.MustParseAddr("2001:db8:18:2::11")
	if out, err := client.Command(ctx, "ping", "-6", "-c1", "-W2", target.String()).CombinedOutput(); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	if _, err := c.WaitFor(ctx, func(f Frame) bool {
		n, ok := f.ND()
		return ok && f.Outgoing && n.Type == NeighborSolicitation && n.Target == target
	}); err != nil {
		t.Error(err)
	}
	na, err := c.WaitFor(ctx, func(f Frame) bool {
		n, ok := f.ND()
		return ok && !f.Outgoing && n.Type == NeighborAdvertisement && n.Target == target
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := na.ND(); !n.Solicited || n.LinkAddr.String() != nodeMAC.String() {
		t.Errorf("advertisement %v: want solicited, with lladdr %s", n, nodeMAC)
	}

	// After Close, WaitFor reports the end instead of blocking.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
	defer cancelShort()
	if _, err := c.WaitFor(short, func(Frame) bool { return false }); err == nil || short.Err() != nil {
		t.Errorf("WaitFor after Close = %v, want ErrClosed at once", err)
	}
}

func mustCreate(t *testing.T, m *netns.Manager, name string) netns.NS {
	t.Helper()
	ns, err := m.Create(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}
