//go:build integration && privileged

package bgp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/lab/netns"
)

// The child scenarios run inside a node namespace (see TestWithRouters).

const (
	hold    = 9 * time.Second
	connect = time.Second
)

// waitRouter waits until get finds p and ok accepts it.
func waitRouter(t *testing.T, what string, get func(context.Context, netip.Prefix) (rtrRoute, bool, error), p netip.Prefix, ok func(rtrRoute) bool) rtrRoute {
	t.Helper()
	var got rtrRoute
	waitFor(t, 10*time.Second, fmt.Sprintf("%s has %s", what, p), func() (string, bool) {
		rt, found, err := get(t.Context(), p)
		got = rt
		return fmt.Sprintf("%v found=%t err=%v\n%s", rt, found, err, rt.Raw), err == nil && found && (ok == nil || ok(rt))
	})
	return got
}

func waitKernel(t *testing.T, ns, what string, p netip.Prefix, present bool) time.Duration {
	t.Helper()
	return waitFor(t, 10*time.Second, fmt.Sprintf("%s kernel route %s present=%t", what, p, present), func() (string, bool) {
		r, found, err := kernelRoute(t.Context(), ns, p)
		return fmt.Sprintf("%v %t %v", r, found, err), err == nil && found == present
	})
}

// frrNeighbor reads FRR's JSON about one neighbour.
func frrNeighbor(t *testing.T, frr routerSpec, a netip.Addr) map[string]any {
	t.Helper()
	out, err := frr.vtysh(t.Context(), "show bgp neighbors "+a.String()+" json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("FRR neighbor %s: %v: %s", a, err, out)
	}
	return doc[a.String()]
}

func num(m map[string]any, key string) float64 {
	f, _ := m[key].(float64)
	return f
}

// childSessions: iBGP with FRR and eBGP with BIRD over IPv4 and IPv6; what arrives where
// and with which attributes; per-path peer selection; withdrawal; add → route latency;
// rejected imports; a peer change that leaves the other sessions alone; metrics; and the
// graceful shutdown.
func childSessions(t *testing.T, spec childSpec) {
	ctx := t.Context()
	frr, bird := spec.FRR, spec.BIRD
	reg := prometheus.NewPedanticRegistry()
	s, err := New(Config{RouterID: RouterIDFor(spec.NodeName, spec.Addr4), Registerer: reg, Logger: klog.Background()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	shut := false
	t.Cleanup(func() {
		if !shut {
			_ = s.Shutdown(context.Background())
		}
	})
	peers := []Peer{
		{Name: "frr4", Address: frr.Addr4, MyASN: frr.ASN, PeerASN: frr.ASN, HoldTime: hold, ConnectTime: connect, GracefulRestart: true, RestartTime: 30 * time.Second},
		{Name: "frr6", Address: frr.Addr6, MyASN: frr.ASN, PeerASN: frr.ASN, HoldTime: hold, ConnectTime: connect, GracefulRestart: true, RestartTime: 30 * time.Second},
		{Name: "bird4", Address: bird.Addr4, MyASN: 64512, PeerASN: bird.ASN, HoldTime: hold, ConnectTime: connect},
		{Name: "bird6", Address: bird.Addr6, MyASN: 64512, PeerASN: bird.ASN, HoldTime: hold, ConnectTime: connect},
	}
	start := time.Now()
	if err := s.SetPeers(ctx, peers); err != nil {
		t.Fatal(err)
	}
	ups := map[string]time.Duration{}
	waitFor(t, 30*time.Second, "all four sessions established", func() (string, bool) {
		for _, st := range s.Status() {
			if _, done := ups[st.Name]; !done && st.State == StateEstablished {
				ups[st.Name] = time.Since(start)
			}
		}
		return fmt.Sprintf("%+v", s.Status()), len(ups) == 4
	})
	t.Logf("FIGURE session up after SetPeers: frr4 %v, frr6 %v, bird4 %v, bird6 %v",
		ups["frr4"].Round(time.Millisecond), ups["frr6"].Round(time.Millisecond), ups["bird4"].Round(time.Millisecond), ups["bird6"].Round(time.Millisecond))

	// GoBGP advertised graceful restart, with the restart time, to FRR (which does not do
	// it itself in the lab).
	nb := frrNeighbor(t, frr, spec.Addr4)
	if caps, _ := nb["neighborCapabilities"].(map[string]any); caps["gracefulRestartCapability"] != "received" ||
		num(caps, "gracefulRestartRemoteTimerMsecs") != 30000 {
		t.Errorf("FRR's view of the graceful restart capability: %v", caps)
	}

	all := []string{"frr4", "frr6", "bird4", "bird6"}
	a, a6 := pfx("203.0.113.10/32"), pfx("2001:db8:113::10/128")
	b, c, d := pfx("203.0.113.11/32"), pfx("203.0.113.12/32"), pfx("203.0.113.13/32")
	comms, large := []uint32{64512<<16 | 100}, [][3]uint32{{64512, 1, 2}}
	paths := []Path{
		{Prefix: a, Peers: all, Communities: comms, LargeCommunities: large, LocalPref: 200},
		{Prefix: a6, Peers: all, Communities: comms, LargeCommunities: large, LocalPref: 200},
		{Prefix: b, Peers: []string{"bird4"}},
	}
	if err := s.SetPaths(ctx, paths); err != nil {
		t.Fatal(err)
	}
	t.Run("IPv4 and IPv6 arrive with next hop, communities, local-pref", func(t *testing.T) {
		for _, c := range []struct {
			p       netip.Prefix
			nh      netip.Addr
			routers string
		}{{a, spec.Addr4, "v4"}, {a6, spec.Addr6, "v6"}} {
			got := waitRouter(t, "FRR", frr.frrRoute, c.p, nil)
			want := rtrRoute{NextHop: c.nh, Communities: "64512:100", Large: "64512:1:2", LocalPref: 200}
			if got.NextHop != want.NextHop || got.Communities != want.Communities || got.Large != want.Large || got.LocalPref != want.LocalPref {
				t.Errorf("FRR (iBGP) %s: %v, want %v\n%s", c.p, got, want, got.Raw)
			}
			got = waitRouter(t, "BIRD", bird.birdRoute, c.p, nil)
			// eBGP: no LOCAL_PREF on the wire; BIRD shows its default 100.
			if got.NextHop != c.nh || got.Communities != "64512:100" || got.Large != "64512:1:2" || got.LocalPref == 200 {
				t.Errorf("BIRD (eBGP) %s: %v, want via %s, 64512:100, 64512:1:2, not local-pref 200\n%s", c.p, got, c.nh, got.Raw)
			}
			for _, r := range []routerSpec{frr, bird} {
				waitKernel(t, r.NS, "router", c.p, true)
				kr, _, _ := kernelRoute(ctx, r.NS, c.p)
				if !slices.Contains(kr.Gateways, c.nh) {
					t.Errorf("kernel route in %s: %v, want via %s", r.NS, kr, c.nh)
				}
			}
		}
	})

	t.Run("a path goes only to the peers it names", func(t *testing.T) {
		waitKernel(t, bird.NS, "BIRD", b, true)
		// Barrier: c to FRR and d to BIRD, after b. Once FRR has c, b would be there if it
		// had been sent; once BIRD has d (sent after c), so would c.
		paths = append(paths, Path{Prefix: c, Peers: []string{"frr4"}}, Path{Prefix: d, Peers: []string{"bird4"}})
		if err := s.SetPaths(ctx, paths); err != nil {
			t.Fatal(err)
		}
		waitKernel(t, frr.NS, "FRR", c, true)
		waitKernel(t, bird.NS, "BIRD", d, true)
		if rt, found, err := frr.frrRoute(ctx, b); found || err != nil {
			t.Errorf("FRR has %s (%v, %v), sent to BIRD only", b, rt, err)
		}
		if rt, found, err := bird.birdRoute(ctx, c); found || err != nil {
			t.Errorf("BIRD has %s (%v, %v), sent to FRR only", c, rt, err)
		}
		// Move b from BIRD to FRR: BIRD must get a withdrawal.
		paths[2].Peers = []string{"frr4"}
		start := time.Now()
		if err := s.SetPaths(ctx, paths); err != nil {
			t.Fatal(err)
		}
		waitKernel(t, frr.NS, "FRR", b, true)
		waitKernel(t, bird.NS, "BIRD", b, false)
		t.Logf("FIGURE moved %s from BIRD to FRR in %v", b, time.Since(start).Round(time.Millisecond))
	})

	t.Run("withdraw", func(t *testing.T) {
		without := slices.DeleteFunc(slices.Clone(paths), func(p Path) bool { return p.Prefix == a })
		start := time.Now()
		if err := s.SetPaths(ctx, without); err != nil {
			t.Fatal(err)
		}
		waitKernel(t, frr.NS, "FRR", a, false)
		waitKernel(t, bird.NS, "BIRD", a, false)
		t.Logf("FIGURE withdrawn %s gone from both kernels %v after SetPaths", a, time.Since(start).Round(time.Millisecond))
		if _, found, _ := kernelRoute(ctx, frr.NS, a6); !found {
			t.Errorf("FRR lost %s too", a6)
		}
		paths = without
	})

	t.Run("latency", func(t *testing.T) {
		frrMon, birdMon := startMonitor(t, frr.NS), startMonitor(t, bird.NS)
		var toFRR, toBIRD []time.Duration
		for i := range 50 {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(100 + i)}), 32)
			paths = append(paths, Path{Prefix: p, Peers: []string{"frr4", "bird4"}})
			t0 := time.Now()
			if err := s.SetPaths(ctx, paths); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, fmt.Sprintf("%s in both kernels", p), func() (string, bool) {
				_, f := frrMon.AddedAt(p)
				_, b := birdMon.AddedAt(p)
				return fmt.Sprintf("FRR %t BIRD %t", f, b), f && b
			})
			f, _ := frrMon.AddedAt(p)
			b, _ := birdMon.AddedAt(p)
			toFRR, toBIRD = append(toFRR, f.Sub(t0)), append(toBIRD, b.Sub(t0))
		}
		t.Logf("FIGURE SetPaths(one more /32) → kernel route at the router, 50 paths: FRR p50 %v max %v; BIRD p50 %v max %v",
			percentile(toFRR, 50).Round(10*time.Microsecond), slices.Max(toFRR).Round(10*time.Microsecond),
			percentile(toBIRD, 50).Round(10*time.Microsecond), slices.Max(toBIRD).Round(10*time.Microsecond))
	})

	t.Run("inbound routes are never installed", func(t *testing.T) {
		in := pfx("198.51.100.0/24")
		if _, err := frr.vtysh(ctx, "configure terminal", fmt.Sprintf("router bgp %d", frr.ASN), "address-family ipv4 unicast", "network "+in.String()); err != nil {
			t.Fatal(err)
		}
		defer frr.vtysh(context.Background(), "configure terminal", fmt.Sprintf("router bgp %d", frr.ASN), "address-family ipv4 unicast", "no network "+in.String())
		waitFor(t, 10*time.Second, "GoBGP's adj-RIB-in from FRR holds "+in.String(), func() (string, bool) {
			var got []string
			_ = s.bgp.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_ADJ_IN, Name: frr.Addr4.String(), Family: familyIPv4},
				func(d *api.Destination) { got = append(got, d.Prefix) })
			return fmt.Sprint(got), slices.Contains(got, in.String())
		})
		var global []string
		_ = s.bgp.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: familyIPv4},
			func(d *api.Destination) { global = append(global, d.Prefix) })
		if slices.Contains(global, in.String()) {
			t.Errorf("GoBGP's RIB installed %s from FRR: %v", in, global)
		}
		if r, found, _ := kernelRoute(ctx, spec.NodeNS, in); found {
			t.Errorf("node kernel has %v", r)
		}
		if rt, found, _ := bird.birdRoute(ctx, in); found {
			t.Errorf("BIRD got FRR's %s through the node: %v", in, rt)
		}
	})

	t.Run("changing BIRD's peers leaves FRR's sessions alone", func(t *testing.T) {
		before := map[string]PeerStatus{}
		for _, st := range s.Status() {
			before[st.Name] = st
		}
		frrBefore := frrNeighbor(t, frr, spec.Addr4)
		changed := slices.Clone(peers)
		changed[2].HoldTime, changed[3].HoldTime = 6*time.Second, 6*time.Second
		start := time.Now()
		if err := s.SetPeers(ctx, changed); err != nil {
			t.Fatal(err)
		}
		took := waitFor(t, 30*time.Second, "BIRD sessions back with hold time 6 s", func() (string, bool) {
			b4, _ := statusOfPeer(s, "bird4")
			b6, _ := statusOfPeer(s, "bird6")
			return fmt.Sprintf("%+v %+v", b4, b6), b4.State == StateEstablished && b6.State == StateEstablished &&
				b4.HoldTime == 6*time.Second && b6.HoldTime == 6*time.Second && b4.Since.After(start)
		})
		t.Logf("FIGURE BIRD sessions re-established with the new hold time %v after SetPeers", took.Round(time.Millisecond))
		for _, name := range []string{"frr4", "frr6"} {
			st, _ := statusOfPeer(s, name)
			if st.State != StateEstablished || !st.Since.Equal(before[name].Since) || st.Flaps != 0 {
				t.Errorf("%s disturbed: before %+v, after %+v", name, before[name], st)
			}
		}
		frrAfter := frrNeighbor(t, frr, spec.Addr4)
		for _, k := range []string{"connectionsEstablished", "connectionsDropped"} {
			if num(frrBefore, k) != num(frrAfter, k) {
				t.Errorf("FRR's %s for %s went from %v to %v", k, spec.Addr4, num(frrBefore, k), num(frrAfter, k))
			}
		}
		if up0, up1 := num(frrBefore, "bgpTimerUpMsec"), num(frrAfter, "bgpTimerUpMsec"); up1 <= up0 {
			t.Errorf("FRR's session uptime went from %v ms to %v ms", up0, up1)
		}
		peers = changed
		waitRouter(t, "BIRD", bird.birdRoute, d, nil) // BIRD gets its paths again
	})

	t.Run("status and metrics", func(t *testing.T) {
		nFRR := 0
		for _, p := range paths {
			if p.Prefix.Addr().Is4() && slices.Contains(p.Peers, "frr4") {
				nFRR++
			}
		}
		waitFor(t, 5*time.Second, "status and metrics", func() (string, bool) {
			st, _ := statusOfPeer(s, "frr4")
			up := testutil.ToFloat64(s.metrics.sessionUp.WithLabelValues("frr4"))
			adv := testutil.ToFloat64(s.metrics.advertised.WithLabelValues("frr4"))
			sent := testutil.ToFloat64(s.metrics.updatesSent.WithLabelValues("frr4"))
			return fmt.Sprintf("%+v; up %v advertised %v sent %v (want %d)", st, up, adv, sent, nFRR),
				st.Advertised == nFRR && up == 1 && adv == float64(nFRR) && sent >= float64(nFRR)
		})
		// What FRR counts from this node agrees.
		nb := frrNeighbor(t, frr, spec.Addr4)
		afi, _ := nb["addressFamilyInfo"].(map[string]any)
		v4, _ := afi["ipv4Unicast"].(map[string]any)
		if got := num(v4, "acceptedPrefixCounter"); got != float64(nFRR) {
			t.Errorf("FRR accepted %v prefixes from %s, Status says %d", got, spec.Addr4, nFRR)
		}
		if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
			t.Errorf("metrics lint: %v %v", problems, err)
		}
		for _, st := range s.Status() {
			t.Logf("status %s: %s since %s, advertised %d, flaps %d, hold %v, retry %v, last error %q",
				st.Name, st.State, st.Since.Format(time.TimeOnly), st.Advertised, st.Flaps, st.HoldTime, st.ConnectRetry, st.LastError)
		}
	})

	t.Run("graceful shutdown", func(t *testing.T) {
		frrMon, birdMon := startMonitor(t, frr.NS), startMonitor(t, bird.NS)
		// Watch FRR's view of b and BIRD's of d while Shutdown runs.
		type sighting struct {
			gshut, gone time.Time
		}
		watch := func(get func(context.Context, netip.Prefix) (rtrRoute, bool, error), p netip.Prefix, out chan<- sighting) {
			var sg sighting
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
				rt, found, err := get(context.Background(), p)
				if err == nil && !found {
					sg.gone = time.Now()
					break
				}
				if err == nil && sg.gshut.IsZero() && (strings.Contains(rt.Communities, "graceful-shutdown") ||
					strings.Contains(rt.Communities, "gracefulShutdown") || strings.Contains(rt.Communities, "65535:0")) {
					sg.gshut = time.Now()
				}
				time.Sleep(5 * time.Millisecond) // birdc answers in ~2 ms: do not spin
			}
			out <- sg
		}
		frrSaw, birdSaw := make(chan sighting, 1), make(chan sighting, 1)
		go watch(frr.frrRoute, b, frrSaw)
		go watch(bird.birdRoute, d, birdSaw)
		start := time.Now()
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		shut = true
		took := time.Since(start)
		fs, bs := <-frrSaw, <-birdSaw
		if fs.gshut.IsZero() || fs.gone.IsZero() || fs.gone.Before(fs.gshut) {
			t.Errorf("FRR: GRACEFUL_SHUTDOWN seen at %v, %s gone at %v; want the community first", fs.gshut, b, fs.gone)
		}
		if bs.gshut.IsZero() || bs.gone.IsZero() {
			t.Errorf("BIRD: GRACEFUL_SHUTDOWN seen at %v, %s gone at %v", bs.gshut, d, bs.gone)
		}
		var last time.Time
		for _, m := range []*netns.RouteMonitor{frrMon, birdMon} {
			for _, p := range paths {
				if (m == frrMon && !slices.ContainsFunc(p.Peers, func(n string) bool { return strings.HasPrefix(n, "frr") })) ||
					(m == birdMon && !slices.ContainsFunc(p.Peers, func(n string) bool { return strings.HasPrefix(n, "bird") })) {
					continue
				}
				waitFor(t, 5*time.Second, fmt.Sprintf("%s deleted in %s", p.Prefix, m.NS()), func() (string, bool) {
					_, ok := m.DeletedAt(p.Prefix)
					return "", ok
				})
				at, _ := m.DeletedAt(p.Prefix)
				if at.After(last) {
					last = at
				}
			}
		}
		gone := last.Sub(start)
		t.Logf("FIGURE Shutdown: returned after %v; GRACEFUL_SHUTDOWN seen by FRR after %v, by BIRD after %v; every route gone from both kernels %v after the call",
			took.Round(time.Millisecond), fs.gshut.Sub(start).Round(time.Millisecond), bs.gshut.Sub(start).Round(time.Millisecond), gone.Round(time.Millisecond))
		if gone > time.Second {
			t.Errorf("routes gone %v after Shutdown, want within 1 s", gone)
		}
	})
}

// childMD5: a wrong password keeps both sessions down and Status says why; the right one
// brings them up whichever side opens.
func childMD5(t *testing.T, spec childSpec) {
	ctx := t.Context()
	frr, bird := spec.FRR, spec.BIRD
	s := startServer(t, Config{RouterID: RouterIDFor(spec.NodeName, spec.Addr4), ListenPort: 179})
	peers := func(pw string) []Peer {
		return []Peer{
			// FRR is passive: GoBGP dials, its socket carries the key.
			{Name: "frr4", Address: frr.Addr4, MyASN: 64512, PeerASN: frr.ASN, Password: pw, HoldTime: hold, ConnectTime: connect},
			{Name: "frr6", Address: frr.Addr6, MyASN: 64512, PeerASN: frr.ASN, Password: pw, HoldTime: hold, ConnectTime: connect},
			// GoBGP is passive: BIRD dials GoBGP's listener, which must carry the key.
			{Name: "bird4", Address: bird.Addr4, MyASN: 64512, PeerASN: bird.ASN, Password: pw, HoldTime: hold, Passive: true},
			{Name: "bird6", Address: bird.Addr6, MyASN: 64512, PeerASN: bird.ASN, Password: pw, HoldTime: hold, Passive: true},
		}
	}
	start := time.Now()
	if err := s.SetPeers(ctx, peers("wrong")); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 30*time.Second, "AuthMismatchLikely on every peer", func() (string, bool) {
		sts := s.Status()
		ok := len(sts) == 4
		for _, st := range sts {
			if st.State == StateEstablished {
				t.Fatalf("%s established with a wrong password: %+v", st.Name, st)
			}
			ok = ok && st.AuthMismatchLikely
		}
		return fmt.Sprintf("%+v", sts), ok
	})
	t.Logf("FIGURE wrong password: AuthMismatchLikely on all four peers %v after SetPeers", took.Round(time.Millisecond))
	f4, _ := statusOfPeer(s, "frr4")
	t.Logf("frr4 with the wrong password: %+v", f4)
	waitFor(t, 20*time.Second, "reconnect backoff shown", func() (string, bool) {
		st, _ := statusOfPeer(s, "frr4")
		return fmt.Sprintf("%+v", st), st.ConnectRetry > connect && st.ConsecutiveFailures >= 2
	})
	f4, _ = statusOfPeer(s, "frr4")
	t.Logf("FIGURE backoff after %v of failures: frr4 reconnects every %v after %d consecutive failures",
		time.Since(start).Round(time.Second), f4.ConnectRetry, f4.ConsecutiveFailures)
	if !strings.Contains(f4.LastError, "timeout") {
		t.Errorf("frr4's last error %q, want a dial timeout", f4.LastError)
	}
	for _, st := range s.Status() {
		t.Logf("status %s: %s, auth mismatch likely %t, failures %d, retry %v, last error %q",
			st.Name, st.State, st.AuthMismatchLikely, st.ConsecutiveFailures, st.ConnectRetry, st.LastError)
	}

	start = time.Now()
	if err := s.SetPeers(ctx, peers(password)); err != nil {
		t.Fatal(err)
	}
	took = waitEstablished(t, s, "frr4", "frr6", "bird4", "bird6")
	t.Logf("FIGURE right password: all four sessions up %v after SetPeers", took.Round(time.Millisecond))
	for _, st := range s.Status() {
		if st.AuthMismatchLikely || st.ConnectRetry != connect && st.Name[:3] == "frr" {
			t.Errorf("%s: %+v", st.Name, st)
		}
	}
	// Who opened: GoBGP dialled FRR (remote port 179) and BIRD dialled GoBGP (local port 179).
	out, err := exec.CommandContext(ctx, "ss", "-Htn", "state", "established").CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	for _, c := range []struct {
		peer      netip.Addr
		wantLocal bool // our side is port 179
	}{{frr.Addr4, false}, {frr.Addr6, false}, {bird.Addr4, true}, {bird.Addr6, true}} {
		found := false
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 4 {
				continue
			}
			local, err1 := netip.ParseAddrPort(f[2])
			remote, err2 := netip.ParseAddrPort(f[3])
			if err1 != nil || err2 != nil || remote.Addr().Unmap() != c.peer {
				continue
			}
			found = true
			if (local.Port() == 179) != c.wantLocal {
				t.Errorf("session with %s: %s → %s; want our side on port 179: %t", c.peer, local, remote, c.wantLocal)
			}
		}
		if !found {
			t.Errorf("no established TCP session with %s:\n%s", c.peer, out)
		}
	}
}

// childMultihop: eBGP from another local address (source address) with multihop; the
// next hop of the paths is that address.
func childMultihop(t *testing.T, spec childSpec) {
	ctx := t.Context()
	frr := spec.FRR
	s := startServer(t, Config{RouterID: RouterIDFor(spec.NodeName, spec.Addr4)})
	if err := s.SetPeers(ctx, []Peer{{Name: "frr", Address: frr.Addr4, MyASN: 64513, PeerASN: frr.ASN,
		SourceAddress: spec.Source4, EBGPMultihop: 2, HoldTime: hold, ConnectTime: connect}}); err != nil {
		t.Fatal(err)
	}
	took := waitEstablished(t, s, "frr")
	t.Logf("FIGURE multihop session from %s up %v after SetPeers", spec.Source4, took.Round(time.Millisecond))
	nb := frrNeighbor(t, frr, spec.Source4)
	if hops := num(nb, "externalBgpNbrMaxHopsAway"); hops != 2 {
		t.Logf("FRR neighbor %s: externalBgpNbrMaxHopsAway %v", spec.Source4, nb["externalBgpNbrMaxHopsAway"])
	}
	if fl := nb["hostForeign"]; fl != nil && fl != spec.Source4.String() {
		t.Errorf("FRR sees the session from %v, want %s", fl, spec.Source4)
	}
	p := pfx("203.0.113.30/32")
	if err := s.SetPaths(ctx, []Path{{Prefix: p, Peers: []string{"frr"}}}); err != nil {
		t.Fatal(err)
	}
	if got := waitRouter(t, "FRR", frr.frrRoute, p, nil); got.NextHop != spec.Source4 {
		t.Errorf("FRR's next hop for %s: %s, want the session's source %s\n%s", p, got.NextHop, spec.Source4, got.Raw)
	}
	waitKernel(t, frr.NS, "FRR", p, true)
}

// The paths of the graceful restart scenario: the restarted speaker advertises grPrefix
// again, grGone no more.
var grPrefix, grGone = pfx("203.0.113.40/32"), pfx("203.0.113.41/32")

func grPeer(spec childSpec) Peer {
	return Peer{Name: "frr", Address: spec.FRR.Addr4, MyASN: 64513, PeerASN: spec.FRR.ASN, SourceAddress: spec.Source4,
		EBGPMultihop: 2, HoldTime: hold, ConnectTime: connect, GracefulRestart: true, RestartTime: 30 * time.Second}
}

// childGRCrash advertises grPrefix and grGone with graceful restart, says so, and waits
// to be killed.
func childGRCrash(t *testing.T, spec childSpec) {
	ctx := t.Context()
	s := startServer(t, Config{RouterID: RouterIDFor(spec.NodeName, spec.Addr4)})
	if err := s.SetPeers(ctx, []Peer{grPeer(spec)}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPaths(ctx, []Path{{Prefix: grPrefix, Peers: []string{"frr"}}, {Prefix: grGone, Peers: []string{"frr"}}}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "frr")
	waitKernel(t, spec.FRR.NS, "FRR", grPrefix, true)
	waitKernel(t, spec.FRR.NS, "FRR", grGone, true)
	fmt.Println(readyLine)
	time.Sleep(time.Minute)
	t.Fatal("not killed within a minute")
}

// childGRReturn is the restarted speaker: same peer, grPrefix alone, set before the
// session opens so that it precedes the End-of-RIB. FRR must keep grPrefix throughout and
// drop the stale grGone when the End-of-RIB arrives.
func childGRReturn(t *testing.T, spec childSpec) {
	ctx := t.Context()
	s := startServer(t, Config{RouterID: RouterIDFor(spec.NodeName, spec.Addr4)})
	if err := s.SetPaths(ctx, []Path{{Prefix: grPrefix, Peers: []string{"frr"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPeers(ctx, []Peer{grPeer(spec)}); err != nil {
		t.Fatal(err)
	}
	up := waitEstablished(t, s, "frr")
	took := waitKernel(t, spec.FRR.NS, "FRR", grGone, false)
	if _, found, err := kernelRoute(ctx, spec.FRR.NS, grPrefix); !found || err != nil {
		t.Errorf("FRR lost %s, which the restarted speaker advertises (%v)", grPrefix, err)
	}
	t.Logf("FIGURE graceful restart: restarted speaker up %v after start; FRR dropped the stale %s %v later (End-of-RIB) and kept %s",
		up.Round(time.Millisecond), grGone, took.Round(time.Millisecond), grPrefix)
}
