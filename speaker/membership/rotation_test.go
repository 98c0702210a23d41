package membership

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
)

// These tests run real memberlist instances on 127.0.0.1, each on its own free port, so
// they need neither root nor a network namespace.

// rotationTimings have push/pull every 300 ms, so that the encrypted TCP exchanges run all
// through each step too, not only UDP probes and gossip. Failure detection is a little
// slower than the speaker's default (a key mismatch still drops a member within about a
// second, the last subtest shows), so that a test binary starved of CPU on a shared
// machine, under -race, does not see false deaths.
func rotationTimings() Timings {
	tm := DefaultTimings()
	// SuspicionMult stays 2: from 3, memberlist waits for confirmations from other members
	// before it drops one, and an isolated member has none to get (Lifeguard).
	tm.ProbeInterval, tm.ProbeTimeout = 250*time.Millisecond, 150*time.Millisecond
	tm.PushPullInterval = 300 * time.Millisecond
	return tm
}

// freePort returns a port free for both TCP and UDP on 127.0.0.1 at the time of the call.
func freePort(t *testing.T) uint16 {
	t.Helper()
	for range 20 {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		_ = tl.Close()
		if err == nil {
			_ = ul.Close()
			return uint16(port)
		}
	}
	t.Fatal("no port free for both TCP and UDP on 127.0.0.1")
	return 0
}

func randomKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// loopbackList is a List on 127.0.0.1 and the name it runs under.
type loopbackList struct {
	*List
	name string
	addr netip.AddrPort
}

func startLoopback(t *testing.T, name string, keys Keys) loopbackList {
	t.Helper()
	for attempt := 0; ; attempt++ {
		addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t))
		l, err := New(Config{Name: name, Bind: addr, Keys: keys, Timings: rotationTimings(), Logger: klog.Background().WithName(name)})
		if errors.Is(err, syscall.EADDRINUSE) && attempt < 5 {
			continue // taken since freePort looked: another test's
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Shutdown() })
		return loopbackList{List: l, name: name, addr: addr}
	}
}

// pollUntil polls cond every 5 ms until it holds, or fails with what cond last saw.
func pollUntil(t *testing.T, timeout time.Duration, what string, cond func() (seen string, ok bool)) time.Duration {
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

func memberNames(l loopbackList) []string {
	var out []string
	for _, m := range l.Members() {
		out = append(out, m.Name)
	}
	return out
}

// watchdog checks every 2 ms that every list sees all of them, and remembers the first
// time one did not.
type watchdog struct {
	stop, done chan struct{}
	mu         sync.Mutex
	broken     string
}

func watch(lists []loopbackList) *watchdog {
	w := &watchdog{stop: make(chan struct{}), done: make(chan struct{})}
	var all []string
	for _, l := range lists {
		all = append(all, l.name)
	}
	slices.Sort(all)
	go func() {
		defer close(w.done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			for _, l := range lists {
				if got := memberNames(l); !slices.Equal(got, all) {
					w.mu.Lock()
					if w.broken == "" {
						w.broken = fmt.Sprintf("%s: %s saw members %v, want %v", time.Now().Format("15:04:05.000"), l.name, got, all)
					}
					w.mu.Unlock()
				}
			}
		}
	}()
	return w
}

// check fails the test if the membership was ever incomplete.
func (w *watchdog) check(t *testing.T, when string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken != "" {
		t.Fatalf("%s: a member dropped out: %s", when, w.broken)
	}
}

func (w *watchdog) close() {
	close(w.stop)
	<-w.done
}

// exchange proves traffic flows both ways between every pair under the keys of the
// moment: each list publishes new metadata (UDP gossip) that all others must see, and
// joins the others again (a TCP push/pull each way, which fails if either side cannot
// decrypt the other).
func exchange(t *testing.T, what string, lists []loopbackList, version *uint32) {
	t.Helper()
	for _, l := range lists {
		*version++
		v := *version
		if err := l.SetMeta(Meta{DecisionVersion: v}); err != nil {
			t.Fatalf("%s: %s.SetMeta: %v", what, l.name, err)
		}
		pollUntil(t, 5*time.Second, fmt.Sprintf("%s: %s's metadata %d reaches everyone", what, l.name, v), func() (string, bool) {
			for _, o := range lists {
				for _, m := range o.Members() {
					if m.Name == l.name && m.Meta.DecisionVersion != v {
						return fmt.Sprintf("%s sees %s at version %d", o.name, l.name, m.Meta.DecisionVersion), false
					}
				}
			}
			return "", true
		})
		var others []netip.AddrPort
		for _, o := range lists {
			if o.name != l.name {
				others = append(others, o.addr)
			}
		}
		if n, err := l.JoinAddrPorts(others); n != len(others) || err != nil {
			t.Fatalf("%s: %s push/pull with the others = %d, %v; want %d, nil", what, l.name, n, err, len(others))
		}
	}
}

// hold is how long each mixed state of the rotation (some speakers changed, others not)
// runs before exchange checks that every pair talks: eight probe intervals, so that
// failure detection has had its chance to drop a member. When a pair cannot talk, it
// takes 1.3–1.5 s here for all sides to drop each other (the last subtest prints it).
const hold = 2 * time.Second

// TestKeyRotationLive rotates the key of three live members step by step, each step
// reaching one member at a time as it would from a Secret: accept the new key, make it
// primary, drop the old. Between changes traffic must flow every way, and no member may
// ever see another missing. Afterwards a member with only the old key, a wrong key, no key
// or no encryption at all cannot join; and replacing a key in one go splits the cluster, which shows the
// watchdog would have noticed.
func TestKeyRotationLive(t *testing.T) {
	oldKey, newKey := randomKey(t), randomKey(t)
	a := startLoopback(t, "a", Keys{Primary: oldKey})
	b := startLoopback(t, "b", Keys{Primary: oldKey})
	c := startLoopback(t, "c", Keys{Primary: oldKey})
	lists := []loopbackList{a, b, c}
	for _, l := range lists[1:] {
		if n, err := l.JoinAddrPorts([]netip.AddrPort{a.addr}); n != 1 || err != nil {
			t.Fatalf("%s.JoinAddrPorts(a) = %d, %v", l.name, n, err)
		}
	}
	pollUntil(t, 5*time.Second, "all three see each other", func() (string, bool) {
		for _, l := range lists {
			if got := memberNames(l); len(got) != 3 {
				return fmt.Sprintf("%s sees %v", l.name, got), false
			}
		}
		return "", true
	})
	var version uint32
	exchange(t, "before the rotation", lists, &version)

	dog := watch(lists)
	steps := []struct {
		name string
		keys Keys
		want KeyChange
	}{
		{"1: accept the new key", Keys{Primary: oldKey, Accepted: [][]byte{newKey}},
			KeyChange{Primary: Fingerprint(oldKey), Accepted: []string{Fingerprint(newKey)}, Added: []string{Fingerprint(newKey)}}},
		{"2: make it primary", Keys{Primary: newKey, Accepted: [][]byte{oldKey}},
			KeyChange{Primary: Fingerprint(newKey), Accepted: []string{Fingerprint(oldKey)}, PrimaryChanged: true}},
		{"3: drop the old key", Keys{Primary: newKey},
			KeyChange{Primary: Fingerprint(newKey), Accepted: []string{}, Removed: []string{Fingerprint(oldKey)}}},
	}
	start := time.Now()
	for _, s := range steps {
		for i, l := range lists {
			change, err := l.SetKeys(s.keys)
			if err != nil {
				t.Fatalf("step %s on %s: %v", s.name, l.name, err)
			}
			if !slices.Equal(change.Accepted, s.want.Accepted) || change.Primary != s.want.Primary ||
				!slices.Equal(change.Added, s.want.Added) || !slices.Equal(change.Removed, s.want.Removed) ||
				change.PrimaryChanged != s.want.PrimaryChanged || len(change.Risks) != 0 {
				t.Errorf("step %s on %s: SetKeys = %+v, want %+v", s.name, l.name, change, s.want)
			}
			what := fmt.Sprintf("step %s on %d of 3", s.name, i+1)
			if i < len(lists)-1 { // a mixed state: watch it for a while
				timer := time.NewTimer(hold)
				<-timer.C
			}
			dog.check(t, what)
			exchange(t, what, lists, &version)
			dog.check(t, what)
		}
	}
	dog.close()
	dog.check(t, "after the rotation")
	for _, l := range lists {
		if got := testutil.ToFloat64(l.metrics.events.WithLabelValues(eventLeave)); got != 0 {
			t.Errorf("%s saw %v leaves or deaths during the rotation, want 0", l.name, got)
		}
		if k := l.Keys(); Fingerprint(k.Primary) != Fingerprint(newKey) || len(k.Accepted) != 0 {
			t.Errorf("%s keys after the rotation: primary %s, %d accepted; want %s alone",
				l.name, Fingerprint(k.Primary), len(k.Accepted), Fingerprint(newKey))
		}
	}
	t.Logf("rotated the key of 3 live members in 9 changes over %v; nobody dropped out", time.Since(start).Round(time.Millisecond))

	t.Run("old, wrong or no key cannot join", func(t *testing.T) {
		addrs := []netip.AddrPort{a.addr, b.addr, c.addr}
		for _, o := range []loopbackList{
			startLoopback(t, "old-key", Keys{Primary: oldKey}),
			startLoopback(t, "wrong-key", Keys{Primary: randomKey(t)}),
		} {
			if n, err := o.JoinAddrPorts(addrs); n != 0 || err == nil {
				t.Errorf("%s.Join = %d, %v; want 0 and an error", o.name, n, err)
			} else {
				t.Logf("%s refused: %v", o.name, err)
			}
			if got := memberNames(o); !slices.Equal(got, []string{o.name}) {
				t.Errorf("%s sees %v, want only itself", o.name, got)
			}
		}
		if _, err := New(Config{Name: "no-key", Bind: netip.MustParseAddrPort("127.0.0.1:0"), Logger: klog.Background()}); err == nil {
			t.Error("New without a key: no error")
		}
		// berth cannot build a List without a key, so plain memberlist plays the node
		// that sends in clear text, with berth's label.
		mc := memberlist.DefaultLANConfig()
		mc.Name, mc.BindAddr, mc.BindPort, mc.Label = "plain", "127.0.0.1", int(freePort(t)), DefaultLabel
		mc.AdvertiseAddr, mc.AdvertisePort = mc.BindAddr, mc.BindPort
		mc.Logger = newStdLogger(klog.Background().WithName("plain"), logHooks{})
		plain, err := memberlist.Create(mc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = plain.Shutdown() })
		if n, err := plain.Join([]string{a.addr.String(), b.addr.String()}); n != 0 || err == nil {
			t.Errorf("unencrypted Join = %d, %v; want 0 and an error", n, err)
		} else {
			t.Logf("unencrypted refused: %v", err)
		}
		// A gossip round trip after the attempts: the members would have heard of them.
		exchange(t, "after the outsiders tried", lists, &version)
		for _, l := range lists {
			if got := memberNames(l); !slices.Equal(got, []string{"a", "b", "c"}) {
				t.Errorf("%s sees %v, want a, b, c", l.name, got)
			}
		}
	})

	t.Run("replacing the key in one go splits the cluster", func(t *testing.T) {
		change, err := c.SetKeys(Keys{Primary: randomKey(t)})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(change.Risks, []KeyRisk{KeyRiskPrimaryNotAccepted, KeyRiskOldPrimaryDropped}) {
			t.Errorf("Risks = %v, want both", change.Risks)
		}
		took := pollUntil(t, 5*time.Second, "a and b drop c, c drops a and b", func() (string, bool) {
			var seen []string
			for _, l := range lists {
				seen = append(seen, fmt.Sprintf("%s sees %v", l.name, memberNames(l)))
			}
			ok := !slices.Contains(memberNames(a), "c") && !slices.Contains(memberNames(b), "c") &&
				slices.Equal(memberNames(c), []string{"c"})
			return strings.Join(seen, "; "), ok
		})
		t.Logf("a one-shot key change cut c off within %v (each mixed state of the rotation was watched for %v)",
			took.Round(time.Millisecond), hold)
	})
}
