//go:build privileged

package router

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
)

var (
	frrAddr4, frrAddr6   = netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8:18::1")
	birdAddr4, birdAddr6 = netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("2001:db8:18::2")
	frrPool4, frrPool6   = netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:113:f::/64")
	birdPool4, birdPool6 = netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:113::/64")
)

// pair builds two namespaces joined by a veth pair (eth0 each) with the node-network
// addresses of FRR (.1) and BIRD (.2), and a runner whose processes stop with the test.
func pair(t *testing.T) (frrNS, birdNS netns.NS, runner *proc.Runner, dir string) {
	t.Helper()
	for _, err := range []error{netns.Preflight(), PreflightFRR(), PreflightBIRD()} {
		if err != nil {
			t.Fatal(err)
		}
	}
	dir, err := os.MkdirTemp("/run", "berth-router-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // FRR's user must reach its directory
		t.Fatal(err)
	}
	mgr, err := netns.New(netns.NewPrefix())
	if err != nil {
		t.Fatal(err)
	}
	runner, err = proc.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := runner.Close(); err != nil {
			t.Error(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := mgr.Close(ctx); err != nil {
			t.Error(err)
		}
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("kept %s", dir)
		}
	})
	ctx := t.Context()
	if frrNS, err = mgr.Create(ctx, "frr"); err != nil {
		t.Fatal(err)
	}
	if birdNS, err = mgr.Create(ctx, "bird"); err != nil {
		t.Fatal(err)
	}
	if err := netns.Veth(ctx, netns.End{NS: frrNS, Name: "eth0"}, netns.End{NS: birdNS, Name: "eth0"}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		ns netns.NS
		p  string
	}{{frrNS, "198.18.0.1/24"}, {frrNS, "2001:db8:18::1/64"}, {birdNS, "198.18.0.2/24"}, {birdNS, "2001:db8:18::2/64"}} {
		if err := a.ns.AddAddr(ctx, "eth0", netip.MustParsePrefix(a.p)); err != nil {
			t.Fatal(err)
		}
	}
	return frrNS, birdNS, runner, dir
}

// TestFRRPeersWithBIRD: FRR and BIRD peer over IPv4 (TCP-MD5) and IPv6 (BIRD passive),
// exchange their originated prefixes into each other's kernel, lose them when a daemon
// stops or a neighbour is removed, and get them back on restart.
func TestFRRPeersWithBIRD(t *testing.T) {
	frrNS, birdNS, runner, dir := pair(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	frr, err := NewFRR(frrNS, runner, Config{Name: "frr", Dir: filepath.Join(dir, "frr"), ASN: 64500, RouterID: frrAddr4,
		Originate: []netip.Prefix{frrPool4, frrPool6}})
	if err != nil {
		t.Fatal(err)
	}
	bird, err := NewBIRD(birdNS, runner, Config{Name: "bird", Dir: filepath.Join(dir, "bird"), ASN: 64501, RouterID: birdAddr4,
		Originate: []netip.Prefix{birdPool4, birdPool6},
		Neighbors: []Neighbor{{Addr: frrAddr4, ASN: 64500, Password: "s3cret"}}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := frr.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bird.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("FRR and BIRD started in %v", time.Since(start).Round(time.Millisecond))

	// Neighbours added live: FRR's IPv4 one and both IPv6 ones.
	for _, add := range []struct {
		r interface {
			AddNeighbor(context.Context, Neighbor) error
		}
		n Neighbor
	}{
		{frr, Neighbor{Addr: birdAddr4, ASN: 64501, Password: "s3cret"}},
		{frr, Neighbor{Addr: birdAddr6, ASN: 64501}},
		{bird, Neighbor{Addr: frrAddr6, ASN: 64500, Passive: true}},
	} {
		if err := add.r.AddNeighbor(ctx, add.n); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []netip.Addr{birdAddr4, birdAddr6} {
		if err := frr.WaitEstablished(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []netip.Addr{frrAddr4, frrAddr6} {
		if err := bird.WaitEstablished(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("sessions established %v after start", time.Since(start).Round(time.Millisecond))

	bgp := func(r netns.Route) bool { return r.Protocol == "bgp" }
	byBIRD := func(r netns.Route) bool { return r.Protocol == "bird" }
	for _, w := range []struct {
		r     *base
		dst   netip.Prefix
		match func(netns.Route) bool
	}{
		{&frr.base, birdPool4, bgp}, {&frr.base, birdPool6, bgp},
		{&bird.base, frrPool4, byBIRD}, {&bird.base, frrPool6, byBIRD},
	} {
		r, err := w.r.WaitRoute(ctx, w.dst, w.match)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s kernel: %v", w.r.Name(), r)
	}
	t.Logf("routes in both kernels %v after start", time.Since(start).Round(time.Millisecond))

	// The RIBs show where each prefix came from.
	frrRIB, err := frr.BGPRoutes(ctx, netns.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(frrRIB, func(r Route) bool {
		return r.Prefix == birdPool4 && r.Peer == birdAddr4 && r.NextHop == birdAddr4 && r.ASPath == "64501" && r.Best
	}) {
		t.Errorf("FRR RIB lacks %s from %s: %v", birdPool4, birdAddr4, frrRIB)
	}
	birdRIB, err := bird.BGPRoutes(ctx, netns.IPv6)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(birdRIB, func(r Route) bool {
		return r.Prefix == frrPool6 && r.Peer == frrAddr6 && r.ASPath == "64500" && r.Best
	}) {
		t.Errorf("BIRD RIB lacks %s from %s: %v", frrPool6, frrAddr6, birdRIB)
	}

	// Stopping FRR withdraws its prefixes from BIRD's kernel; a restart brings them back.
	stop := time.Now()
	if err := frr.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("FRR stopped in %v", time.Since(stop))
	out, _ := bird.Birdc(ctx, "show protocols all "+birdProtocol(frrAddr4))
	t.Logf("%s", out)
	if err := bird.WaitRouteGone(ctx, frrPool4); err != nil {
		t.Fatal(err)
	}
	if err := frr.Restart(ctx); err != nil { // Restart of a stopped router starts it
		t.Fatal(err)
	}
	if _, err := bird.WaitRoute(ctx, frrPool4, byBIRD); err != nil {
		t.Fatal(err)
	}
	if _, err := frr.WaitRoute(ctx, birdPool6, bgp); err != nil {
		t.Fatal(err)
	}

	// Removing the IPv4 neighbour on BIRD takes its IPv4 prefix out of FRR's kernel.
	if err := bird.RemoveNeighbor(ctx, frrAddr4); err != nil {
		t.Fatal(err)
	}
	if err := frr.WaitRouteGone(ctx, birdPool4); err != nil {
		t.Fatal(err)
	}
	if err := frr.RemoveNeighbor(ctx, birdAddr6); err != nil {
		t.Fatal(err)
	}
	if err := bird.WaitRouteGone(ctx, frrPool6); err != nil {
		t.Fatal(err)
	}
}

// TestWrongPasswordNoSession: with mismatched TCP-MD5 passwords no session comes up.
func TestWrongPasswordNoSession(t *testing.T) {
	frrNS, birdNS, runner, dir := pair(t)
	frr, err := NewFRR(frrNS, runner, Config{Name: "frr", Dir: filepath.Join(dir, "frr"), ASN: 64500, RouterID: frrAddr4,
		Neighbors: []Neighbor{{Addr: birdAddr4, ASN: 64501, Password: "right"}}})
	if err != nil {
		t.Fatal(err)
	}
	bird, err := NewBIRD(birdNS, runner, Config{Name: "bird", Dir: filepath.Join(dir, "bird"), ASN: 64501, RouterID: birdAddr4,
		Neighbors: []Neighbor{{Addr: frrAddr4, ASN: 64500, Password: "wrong"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, start := range []func(context.Context) error{frr.Start, bird.Start} {
		if err := start(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	// With the right password the session is up in about a second (see the test above).
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
	defer cancel()
	if err := frr.WaitEstablished(ctx, birdAddr4); err == nil {
		t.Fatal("session established despite mismatched passwords")
	}
}
