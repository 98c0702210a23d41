//go:build privileged

package membership

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/lab/netns/netnstest"
)

// waitFor polls cond every 5 ms until it holds and returns how long that took, or fails
// with what cond last saw.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (seen string, ok bool)) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 5*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		seen, ok := cond()
		last = seen
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %v: %v; last seen: %s", what, timeout, err, last)
	}
	return time.Since(start)
}

// testList is a List with counts of its OnChange and OnRefute calls.
type testList struct {
	*List
	name             string
	changes, refutes *atomic.Int64
}

func startList(t *testing.T, name, bind string, key []byte, meta Meta, label string) testList {
	t.Helper()
	var changes, refutes atomic.Int64
	l, err := New(Config{
		Name:     name,
		Bind:     netip.MustParseAddrPort(bind),
		Keys:     Keys{Primary: key},
		Label:    label,
		Meta:     meta,
		OnChange: func() { changes.Add(1) },
		OnRefute: func() { refutes.Add(1) },
		Logger:   klog.Background().WithName(name),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Shutdown() })
	return testList{List: l, name: name, changes: &changes, refutes: &refutes}
}

var addrPortEqual = cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })

// allSee waits until every list's Members equals want.
func allSee(t *testing.T, timeout time.Duration, what string, lists []testList, want []Member) time.Duration {
	t.Helper()
	return waitFor(t, timeout, what, func() (string, bool) {
		for _, l := range lists {
			if d := cmp.Diff(want, l.Members(), addrPortEqual); d != "" {
				return fmt.Sprintf("%s (-want +got):\n%s", l.name, d), false
			}
		}
		return "", true
	})
}

func names(ms []Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

// dropped waits until no list sees name.
func dropped(t *testing.T, timeout time.Duration, name string, lists []testList) time.Duration {
	t.Helper()
	return waitFor(t, timeout, name+" dropped by all", func() (string, bool) {
		for _, l := range lists {
			if ns := names(l.Members()); slices.Contains(ns, name) {
				return fmt.Sprintf("%s sees %v", l.name, ns), false
			}
		}
		return "", true
	})
}

// TestMembershipInNetns runs real memberlist clusters on the loopback of a fresh netns.
func TestMembershipInNetns(t *testing.T) {
	if !netnstest.Reexec(t) {
		return
	}
	key := randomKey(t)
	ap := netip.MustParseAddrPort
	metaA := Meta{L2Interfaces: []string{"eth1"}, DecisionVersion: 1}
	metaB := Meta{L2Interfaces: []string{"eth0", "eth1"}, DecisionVersion: 1}
	metaC := Meta{DecisionVersion: 2}
	metaD := Meta{L2Interfaces: []string{"bond0"}, DecisionVersion: 1}
	// a, b, c as nodes with one address each and the default port; d on another port.
	a := startList(t, "a", "127.0.0.1:0", key, metaA, "")
	b := startList(t, "b", "127.0.0.2:0", key, metaB, "")
	c := startList(t, "c", "127.0.0.3:0", key, metaC, "")
	d := startList(t, "d", "127.0.0.1:7950", key, metaD, "")
	lists := []testList{a, b, c, d}

	nodeIPs := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}
	if n, err := a.Join(nodeIPs[:1]); n != 0 || err != nil {
		t.Errorf("a.Join(only itself) = %d, %v; want 0, nil", n, err)
	}
	if n, err := b.Join(nodeIPs); n != 2 || err != nil {
		t.Fatalf("b.Join(%v) = %d, %v; want 2 (itself skipped), nil", nodeIPs, n, err)
	}
	if n, err := d.JoinAddrPorts([]netip.AddrPort{ap("127.0.0.3:7946")}); n != 1 || err != nil {
		t.Fatalf("d.JoinAddrPorts(c) = %d, %v; want 1, nil", n, err)
	}

	want := []Member{
		{Name: "a", Addr: ap("127.0.0.1:7946"), Meta: metaA},
		{Name: "b", Addr: ap("127.0.0.2:7946"), Meta: metaB},
		{Name: "c", Addr: ap("127.0.0.3:7946"), Meta: metaC},
		{Name: "d", Addr: ap("127.0.0.1:7950"), Meta: metaD},
	}
	took := allSee(t, 5*time.Second, "all four see each other", lists, want)
	t.Logf("converged: all 4 lists see all 4 members with their metadata after %v", took.Round(time.Millisecond))
	for _, l := range lists {
		if l.changes.Load() == 0 {
			t.Errorf("%s: OnChange never called", l.name)
		}
		if got := testutil.ToFloat64(l.metrics.members); got != 4 {
			t.Errorf("%s: berth_memberlist_members = %v, want 4", l.name, got)
		}
	}

	t.Run("SetMeta propagates", func(t *testing.T) {
		metaB2 := Meta{L2Interfaces: []string{"eth1", "eth0", "eth2"}, DecisionVersion: 3} // published sorted
		start := time.Now()
		if err := b.SetMeta(metaB2); err != nil {
			t.Fatal(err)
		}
		want[1].Meta = Meta{L2Interfaces: []string{"eth0", "eth1", "eth2"}, DecisionVersion: 3}
		allSee(t, time.Second, "b's new metadata everywhere within 1 s", lists, want)
		t.Logf("SetMeta: b's new metadata reached all lists in %v", time.Since(start).Round(time.Millisecond))
		if err := b.SetMeta(metaB2); err != nil {
			t.Errorf("SetMeta(unchanged) = %v", err)
		}
	})

	t.Run("outsiders cannot join", func(t *testing.T) {
		wrongKey := startList(t, "wrong-key", "127.0.0.4:0", randomKey(t), metaA, "")
		if n, err := wrongKey.Join(nodeIPs); n != 0 || err == nil {
			t.Errorf("Join with another key = %d, %v; want 0 and an error", n, err)
		} else {
			t.Logf("Join with another key fails: %v", err)
		}
		wrongLabel := startList(t, "wrong-label", "127.0.0.5:0", key, metaA, "other-cluster")
		if n, err := wrongLabel.Join(nodeIPs); n != 0 || err == nil {
			t.Errorf("Join with another label = %d, %v; want 0 and an error", n, err)
		}
		// A gossip round trip after the attempts shows the members would have heard of them.
		if err := c.SetMeta(Meta{DecisionVersion: 4}); err != nil {
			t.Fatal(err)
		}
		want[2].Meta = Meta{DecisionVersion: 4}
		allSee(t, time.Second, "members see only each other", lists, want)
		for _, o := range []testList{wrongKey, wrongLabel} {
			if got := names(o.Members()); !slices.Equal(got, []string{o.name}) {
				t.Errorf("%s sees %v, want only itself", o.name, got)
			}
		}
	})

	t.Run("Leave is seen at once", func(t *testing.T) {
		start := time.Now()
		if err := d.Leave(time.Second); err != nil {
			t.Fatal(err)
		}
		dropped(t, 2*time.Second, "d", lists[:3])
		t.Logf("Leave: d dropped by all others %v after calling Leave", time.Since(start).Round(time.Millisecond))
		if err := d.Shutdown(); err != nil {
			t.Fatal(err)
		}
		if err := d.Leave(time.Second); err == nil {
			t.Error("Leave after Shutdown: no error")
		}
	})

	t.Run("an accused member is probed and refutes", func(t *testing.T) {
		if !a.Probe("b") {
			t.Error("a.Probe(b) = false for a live member")
		}
		if a.Probe("nobody") {
			t.Error("a.Probe(nobody) = true for an unknown member")
		}
		// Cut c off until a accuses it.
		nft(t, "add table inet berth-mtest\n"+
			"add chain inet berth-mtest in { type filter hook input priority 0; }\n"+
			"add rule inet berth-mtest in ip saddr 127.0.0.3 drop\n"+
			"add rule inet berth-mtest in ip daddr 127.0.0.3 drop\n")
		t.Cleanup(func() { _ = exec.Command("nft", "delete", "table", "inet", "berth-mtest").Run() })
		// Some probe of c fails first, a's or b's; the other hears of it at once.
		took := waitFor(t, 5*time.Second, "a and b accuse c", func() (string, bool) {
			ga, gb := slices.Sorted(maps.Keys(a.Accused())), slices.Sorted(maps.Keys(b.Accused()))
			return fmt.Sprintf("a accuses %v, b %v", ga, gb), slices.Equal(ga, []string{"c"}) && slices.Equal(gb, []string{"c"})
		})
		t.Logf("a and b accused c %v after it was cut off", took.Round(time.Millisecond))
		if a.Probe("c") {
			t.Error("a.Probe(c) = true while c is cut off")
		}
		nft(t, "delete table inet berth-mtest\n")
		took = waitFor(t, 10*time.Second, "c refutes", func() (string, bool) {
			n := c.refutes.Load()
			return fmt.Sprintf("%d refutations", n), n > 0
		})
		t.Logf("c refuted %v after it was reachable again", took.Round(time.Millisecond))
		waitFor(t, 10*time.Second, "c live again everywhere", func() (string, bool) {
			for _, l := range lists[:3] {
				if ns := names(l.Members()); !slices.Equal(ns, []string{"a", "b", "c"}) {
					return fmt.Sprintf("%s sees %v", l.name, ns), false
				}
			}
			return "", true
		})
	})
}

// nft runs an nftables script in the test's netns.
func nft(t *testing.T, script string) {
	t.Helper()
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
}

// TestUpInterfacesInNetns reads real links: veth pairs with and without carrier.
func TestUpInterfacesInNetns(t *testing.T) {
	if !netnstest.Reexec(t,
		"link add up0 type veth peer name up1",
		"link set up0 up", "link set up1 up",
		// nc0 is up but its peer is down: no carrier.
		"link add nc0 type veth peer name nc1",
		"link set nc0 up",
		"link add down0 type veth peer name down1", // both administratively down
	) {
		return
	}
	// Carrier comes up asynchronously after "link set up".
	waitFor(t, 2*time.Second, "carrier on up0 and up1", func() (string, bool) {
		got, err := UpInterfaces(nil)
		return fmt.Sprintf("%v, %v", got, err), slices.Equal(got, []string{"up0", "up1"})
	})
	tests := []struct {
		patterns []string
		want     []string
	}{
		{nil, []string{"up0", "up1"}},
		{[]string{"up0"}, []string{"up0"}},
		{[]string{"nc*", "down*", "lo"}, nil},
		{[]string{"*"}, []string{"up0", "up1"}},
	}
	for _, tt := range tests {
		got, err := UpInterfaces(tt.patterns)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("UpInterfaces(%q) (-want +got):\n%s", tt.patterns, d)
		}
	}
}
