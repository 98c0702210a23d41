//go:build privileged

package netns

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthlb/berth/lab/internal/tool"
)

var (
	addrA = netip.MustParsePrefix("198.18.0.11/24")
	addrB = netip.MustParsePrefix("198.18.0.12/24")
	macA  = net.HardwareAddr{2, 0x18, 0, 0, 0, 11}
)

// pair makes two namespaces joined by a veth pair (eth0 each, A at .11, B at .12) and
// deletes them with the test.
func pair(t *testing.T) (*Manager, NS, NS) {
	t.Helper()
	if err := tool.Require(tool.IP, tool.NFT, tool.Sysctl, tool.Ping); err != nil {
		t.Fatal(err)
	}
	m, err := New(NewPrefix())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(context.Background()); err != nil {
			t.Error(err)
		}
		assertNoneLeft(t, m.Prefix())
	})
	ctx := t.Context()
	a, err := m.Create(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Create(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if err := Veth(ctx, End{NS: a, Name: "eth0", MAC: macA}, End{NS: b, Name: "eth0"}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		ns NS
		p  netip.Prefix
	}{{a, addrA}, {b, addrB}, {a, netip.MustParsePrefix("2001:db8:18::11/64")}, {b, netip.MustParsePrefix("2001:db8:18::12/64")}} {
		if err := x.ns.AddAddr(ctx, "eth0", x.p); err != nil {
			t.Fatal(err)
		}
	}
	return m, a, b
}

func assertNoneLeft(t *testing.T, prefix string) {
	t.Helper()
	names, err := List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			t.Errorf("namespace %s left", n)
		}
	}
}

func pingOK(ctx context.Context, from NS, to netip.Addr) bool {
	return from.Command(ctx, "ping", "-c1", "-W1", to.String()).Run() == nil
}

func TestLinksAddressesRoutes(t *testing.T) {
	_, a, b := pair(t)
	ctx := t.Context()
	links, err := a.Links(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(links, func(l Link) bool { return l.Name == "eth0" })
	if i < 0 || links[i].MAC.String() != macA.String() || !links[i].Up {
		t.Errorf("links of %s = %+v; want eth0 up with %s", a, links, macA)
	}
	addrs, err := a.Addrs(ctx, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(addrs, addrA) {
		t.Errorf("addresses of eth0 = %v, want %s among them", addrs, addrA)
	}
	if !pingOK(ctx, a, addrB.Addr()) || !pingOK(ctx, a, netip.MustParseAddr("2001:db8:18::12")) {
		t.Fatal("A cannot ping B over the veth pair")
	}

	// A bridge with an address, reached from A through a static route via B.
	if err := b.AddBridge(ctx, "br0"); err != nil {
		t.Fatal(err)
	}
	if err := b.AddAddr(ctx, "br0", netip.MustParsePrefix("198.19.2.1/24")); err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParsePrefix("198.19.2.0/24")
	if err := a.AddRoute(ctx, dst, addrB.Addr()); err != nil {
		t.Fatal(err)
	}
	rs, err := a.Routes(ctx, IPv4)
	if err != nil {
		t.Fatal(err)
	}
	j := slices.IndexFunc(rs, func(r Route) bool { return r.Dst == dst })
	if j < 0 || rs[j].Protocol != "static" || len(rs[j].Gateways) != 1 || rs[j].Gateways[0] != addrB.Addr() {
		t.Errorf("routes = %v; want %s via %s proto static", rs, dst, addrB.Addr())
	}
	if !pingOK(ctx, a, netip.MustParseAddr("198.19.2.1")) {
		t.Error("A cannot reach B's bridge through the static route")
	}
	if err := a.DelRoute(ctx, dst); err != nil {
		t.Fatal(err)
	}

	if err := b.EnableForwarding(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := b.ReadSysctl(ctx, "net.ipv6.conf.all.forwarding"); err != nil || v != "1" {
		t.Errorf("IPv6 forwarding = %q, %v; want 1", v, err)
	}
}

func TestFaults(t *testing.T) {
	_, a, b := pair(t)
	ctx := t.Context()
	to := addrB.Addr()
	if !pingOK(ctx, a, to) {
		t.Fatal("no connectivity to start with")
	}
	f, err := b.Drop(ctx, "ip saddr "+addrA.Addr().String()+" icmp type echo-request")
	if err != nil {
		t.Fatal(err)
	}
	if pingOK(ctx, a, to) {
		t.Errorf("ping passes %v", f)
	}
	if err := f.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if !pingOK(ctx, a, to) {
		t.Error("ping still dropped after Remove")
	}
	if _, err := b.Drop(ctx, "meta l4proto icmp"); err != nil {
		t.Fatal(err)
	}
	if err := b.ClearFaults(ctx); err != nil {
		t.Fatal(err)
	}
	if !pingOK(ctx, a, to) {
		t.Error("ping still dropped after ClearFaults")
	}
	if err := a.SetLinkUp(ctx, "eth0", false); err != nil {
		t.Fatal(err)
	}
	if pingOK(ctx, a, to) {
		t.Error("ping passes a link that is down")
	}
	if err := a.SetLinkUp(ctx, "eth0", true); err != nil {
		t.Fatal(err)
	}
	// The link needs a moment for carrier; retry briefly.
	deadline := time.Now().Add(5 * time.Second)
	for !pingOK(ctx, a, to) {
		if time.Now().After(deadline) {
			t.Fatal("no connectivity after link up")
		}
	}
}

// TestCleanupFindsLeftovers plays a crashed run: namespaces made and never closed.
func TestCleanupFindsLeftovers(t *testing.T) {
	if err := tool.Require(tool.IP, tool.Sysctl); err != nil {
		t.Fatal(err)
	}
	prefix := NewPrefix()
	m, err := New(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	for _, n := range []string{"x", "y"} {
		if _, err := m.Create(t.Context(), n); err != nil {
			t.Fatal(err)
		}
	}
	if err := Cleanup(t.Context(), prefix); err != nil {
		t.Fatal(err)
	}
	assertNoneLeft(t, prefix)
}
