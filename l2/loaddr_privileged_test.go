//go:build privileged

package l2

import (
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"k8s.io/klog/v2"
)

// TestLoAddressesInNetns: each owned IPv6 LB IP is on lo as a marked /128 (IPv4 never
// is); a marked leftover of a previous run goes at start, and one that appears later at
// the next resync; someone else's address on lo is never touched; Run's exit leaves no
// marked address, and a restart puts back what is owned.
func TestLoAddressesInNetns(t *testing.T) {
	_, child := inNodeNetns(t)
	if !child {
		return
	}
	lo, err := loopbackIndex()
	if err != nil {
		t.Fatal(err)
	}
	pfx := func(ip netip.Addr) netip.Prefix { return netip.PrefixFrom(ip, ip.BitLen()) }
	// A previous run's leftover, and an operator's own address.
	if err := addMarked(lo, lb6b); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "addr", "add", pfx(lb6c).String(), "dev", "lo", "nodad").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add: %v: %s", err, out)
	}
	if err := addMarked(lo, lb4); err == nil {
		t.Fatal("addMarked accepted an IPv4 address")
	}
	if got := marked(t); !slices.Equal(got, []netip.Prefix{pfx(lb6b)}) {
		t.Fatalf("marked before Run: %v", got)
	}

	const resync = 300 * time.Millisecond
	a, err := New(Config{Logger: klog.Background(), ResyncInterval: resync})
	if err != nil {
		t.Fatal(err)
	}
	stop := runAnnouncer(t, a)
	t.Cleanup(stop)
	took := waitMarked(t, nil)
	t.Logf("leftover %s removed %v after Run started", lb6b, took.Round(time.Microsecond))

	a.Set([]Assignment{{IP: lb4}, {IP: lb6}})
	waitOwned(t, a, time.Second, on([]string{segDev}, lb4, lb6))
	waitMarked(t, []netip.Prefix{pfx(lb6)})
	for _, x := range loAddrs(t) {
		switch {
		case x.Prefix.Addr() == lb6:
			if x.Proto != addrProto || x.Metric != addrMetric {
				t.Errorf("%s on lo: proto %d, metric %d; want both marks (%d, %d)", x.Prefix, x.Proto, x.Metric, addrProto, addrMetric)
			}
			t.Logf("%s on lo: proto %d (the kernel keeps IFA_PROTO), metric %d", x.Prefix, x.Proto, x.Metric)
		case x.Prefix.Addr().Is4() && x.Prefix != netip.MustParsePrefix("127.0.0.1/8"):
			t.Errorf("IPv4 address on lo: %s", x.Prefix)
		case x.Prefix.Addr() == lb6c && x.marked():
			t.Errorf("the operator's %s looks marked: %+v", lb6c, x)
		}
	}
	if out, err := exec.Command("ip", "-6", "addr", "show", "dev", "lo").CombinedOutput(); err == nil {
		t.Logf("ip -6 addr show dev lo:\n%s", out)
	}

	// A marked address that appears while running (a crashed sibling, a stray test) goes
	// at the next resync.
	if err := addMarked(lo, lb6b); err != nil {
		t.Fatal(err)
	}
	took = waitMarked(t, []netip.Prefix{pfx(lb6)})
	t.Logf("marked %s added while running: removed after %v (resync every %v)", lb6b, took.Round(time.Millisecond), resync)

	stop()
	if got := marked(t); len(got) != 0 {
		t.Errorf("marked addresses on lo after Run returned: %v", got)
	}
	if !hasAddr(t, lb6c) {
		t.Errorf("the operator's %s is gone from lo", lb6c)
	}

	// Restart: the desired set survives, the address comes back, and goes again.
	stop = runAnnouncer(t, a)
	waitOwned(t, a, time.Second, on([]string{segDev}, lb4, lb6))
	waitMarked(t, []netip.Prefix{pfx(lb6)})
	stop()
	if got := marked(t); len(got) != 0 {
		t.Errorf("marked addresses on lo after the second Run returned: %v", got)
	}
	if got := a.Owned(); len(got) != 0 {
		t.Errorf("Owned() after Run returned = %v", got)
	}
	if !hasAddr(t, lb6c) {
		t.Errorf("the operator's %s is gone from lo", lb6c)
	}
}

// waitMarked waits until the marked addresses on lo are want.
func waitMarked(t *testing.T, want []netip.Prefix) time.Duration {
	t.Helper()
	return waitFor(t, 2*time.Second, fmt.Sprintf("marked addresses on lo = %v", want), func() (string, bool) {
		got := marked(t)
		return fmt.Sprint(got), cmp.Equal(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmpopts.EquateEmpty())
	})
}

func hasAddr(t *testing.T, ip netip.Addr) bool {
	t.Helper()
	for _, x := range loAddrs(t) {
		if x.Prefix.Addr() == ip {
			return true
		}
	}
	return false
}

// loAddrs lists the addresses on lo in this (the node's) namespace.
func loAddrs(t *testing.T) []loAddr {
	t.Helper()
	lo, err := loopbackIndex()
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := listAddrs(lo)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// marked returns the marked addresses on lo.
func marked(t *testing.T) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, a := range loAddrs(t) {
		if a.marked() {
			out = append(out, a.Prefix)
		}
	}
	return out
}
