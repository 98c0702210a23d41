//go:build integration && privileged && timing

package bgp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/netns/netnstest"
	"github.com/berthlb/berth/lab/router"
)

// scalePrefixes is how many /32s each speaker of TestBGPScaleSLO advertises, all alike:
// the same Services announced from every node (eTP=Cluster).
const scalePrefixes = 10000

// scaleBase is where TestBGPScaleSLO's prefixes start: 100.64.0.0 … 100.64.39.15.
var scaleBase = netip.MustParseAddr("100.64.0.0")

func scalePrefix(i int) netip.Prefix {
	b := scaleBase.As4()
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{b[0], b[1] + byte(i>>8), byte(i), 0}), 32)
}

// TestBGPScaleSLO: three speakers (the bgp package in each node's namespace) advertise
// the same 10,000 /32s to FRR and BIRD at once; both routers' kernel tables must hold all
// 10,000 as ECMP routes over the three nodes within 10 s of the SetPaths calls. The
// graceful stop of all three (GRACEFUL_SHUTDOWN, then withdrawal) is timed too.
func TestBGPScaleSLO(t *testing.T) {
	if raw := os.Getenv(childEnv); raw != "" {
		var spec childSpec
		if err := json.Unmarshal([]byte(raw), &spec); err != nil {
			t.Fatal(err)
		}
		netnstest.RequireIn(t, netns.NS(spec.NodeNS))
		childScale(t, spec)
		return
	}
	const target = 10 * time.Second
	n := labUp(t)
	ctx := t.Context()
	for _, node := range n.Nodes {
		for _, r := range []interface {
			AddNeighbor(context.Context, router.Neighbor) error
		}{n.FRR, n.BIRD} {
			if err := r.AddNeighbor(ctx, router.Neighbor{Addr: node.Addr4, ASN: 64512}); err != nil {
				t.Fatal(err)
			}
		}
	}
	signals := t.TempDir()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var children []*child
	for _, node := range n.Nodes {
		spec := childSpec{Test: "TestBGPScaleSLO", Role: "scale", NodeNS: node.NS.Name(), NodeName: node.Name,
			Addr4: node.Addr4, Signals: signals,
			FRR:  routerSpec{NS: n.FRRHost.NS.Name(), Addr4: n.FRRHost.Addr4, ASN: n.FRR.ASN()},
			BIRD: routerSpec{NS: n.BIRDHost.NS.Name(), Addr4: n.BIRDHost.Addr4, ASN: n.BIRD.ASN()}}
		children = append(children, startChild(cctx, t, spec))
	}
	defer func() {
		cancel()
		for _, c := range children {
			_ = c.wait()
		}
	}()
	for i, c := range children {
		if !<-c.ready {
			_ = c.wait()
			t.Fatalf("child on %s ended before its sessions were up:\n%s", n.Nodes[i].Name, c.output())
		}
	}
	if err := os.WriteFile(filepath.Join(signals, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	took := map[string]time.Duration{}
	for time.Since(start) < 6*target && len(took) < 2 {
		for _, r := range []struct {
			name string
			ns   netns.NS
		}{{"FRR", n.FRRHost.NS}, {"BIRD", n.BIRDHost.NS}} {
			if _, done := took[r.name]; done {
				continue
			}
			if full, _, err := ecmpRoutes(ctx, r.ns, len(n.Nodes)); err != nil {
				t.Fatal(err)
			} else if full == scalePrefixes {
				took[r.name] = time.Since(start)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, r := range []string{"FRR", "BIRD"} {
		d, ok := took[r]
		if !ok {
			t.Errorf("%s: not every one of %d prefixes via all three nodes within %v", r, scalePrefixes, 6*target)
			continue
		}
		t.Logf("FIGURE %d prefixes × 3 speakers → ECMP routes over the 3 nodes in %s's kernel table in %v (target ≤ %v)",
			scalePrefixes, r, d.Round(10*time.Millisecond), target)
		if d > target {
			t.Errorf("%s converged in %v, want ≤ %v", r, d, target)
		}
	}

	// Stop all three gracefully: GRACEFUL_SHUTDOWN, then the withdrawals.
	if err := os.WriteFile(filepath.Join(signals, "done"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	stop := time.Now()
	err := waitForErr(ctx, time.Minute, func() (bool, error) {
		_, frr, err := ecmpRoutes(ctx, n.FRRHost.NS, len(n.Nodes))
		if err != nil {
			return false, err
		}
		_, bird, err := ecmpRoutes(ctx, n.BIRDHost.NS, len(n.Nodes))
		return frr == 0 && bird == 0, err
	})
	if err != nil {
		t.Fatalf("routes left after the speakers stopped: %v", err)
	}
	t.Logf("FIGURE graceful stop of 3 speakers → all %d routes gone from FRR and BIRD in %v", scalePrefixes, time.Since(stop).Round(10*time.Millisecond))
	for i, c := range children {
		if err := c.wait(); err != nil {
			t.Errorf("child on %s: %v\n%s", n.Nodes[i].Name, err, c.output())
		}
		for _, line := range strings.Split(c.output(), "\n") {
			if strings.Contains(line, "FIGURE") {
				t.Log(strings.TrimSpace(line))
			}
		}
	}
}

// ecmpRoutes counts the kernel routes of ns in the scale range: those over exactly hops
// next hops, and all of them.
func ecmpRoutes(ctx context.Context, ns netns.NS, hops int) (full, all int, err error) {
	rs, err := ns.Routes(ctx, netns.IPv4)
	if err != nil {
		return 0, 0, err
	}
	last := scalePrefix(scalePrefixes - 1).Addr()
	for _, r := range rs {
		if a := r.Dst.Addr(); r.Dst.Bits() == 32 && a.Compare(scaleBase) >= 0 && a.Compare(last) <= 0 {
			all++
			if len(r.Gateways) == hops {
				full++
			}
		}
	}
	return full, all, nil
}

func waitForErr(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.Join(fmt.Errorf("not within %v", timeout), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// childScale peers with FRR and BIRD (eBGP), says it is ready, advertises the 10,000
// prefixes when the parent writes Signals/go, and stops gracefully on Signals/done.
func childScale(t *testing.T, spec childSpec) {
	ctx := t.Context()
	s := startServer(t, Config{RouterID: RouterIDFor(spec.NodeName, spec.Addr4)})
	peers := []Peer{
		{Name: "frr", Address: spec.FRR.Addr4, MyASN: 64512, PeerASN: spec.FRR.ASN, HoldTime: hold, ConnectTime: connect},
		{Name: "bird", Address: spec.BIRD.Addr4, MyASN: 64512, PeerASN: spec.BIRD.ASN, HoldTime: hold, ConnectTime: connect},
	}
	if err := s.SetPeers(ctx, peers); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "frr", "bird")
	fmt.Println(readyLine)
	waitSignal(t, filepath.Join(spec.Signals, "go"))
	paths := make([]Path, scalePrefixes)
	for i := range paths {
		paths[i] = Path{Prefix: scalePrefix(i), Peers: []string{"frr", "bird"}}
	}
	begin := time.Now()
	if err := s.SetPaths(ctx, paths); err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE %s: SetPaths(%d paths) returned in %v", spec.NodeName, len(paths), time.Since(begin).Round(time.Millisecond))
	waitSignal(t, filepath.Join(spec.Signals, "done"))
	begin = time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE %s: Shutdown with %d paths took %v", spec.NodeName, len(paths), time.Since(begin).Round(time.Millisecond))
}

// waitSignal waits for the parent to create file.
func waitSignal(t *testing.T, file string) {
	t.Helper()
	waitFor(t, 2*time.Minute, "signal "+filepath.Base(file), func() (string, bool) {
		_, err := os.Stat(file)
		return fmt.Sprint(err), err == nil
	})
}
