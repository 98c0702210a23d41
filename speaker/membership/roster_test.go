package membership

import (
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/klog/v2"
)

// logSink records log lines.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *logSink) logger() klog.Logger {
	return funcr.New(func(prefix, args string) {
		s.mu.Lock()
		s.lines = append(s.lines, strings.TrimSpace(prefix+" "+args))
		s.mu.Unlock()
	}, funcr.Options{Verbosity: 4, LogInfoLevel: ptr("v")})
}

func (s *logSink) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

func ptr[T any](v T) *T { return &v }

func node(name, addr string, meta string) *memberlist.Node {
	ap := netip.MustParseAddrPort(addr)
	return &memberlist.Node{Name: name, Addr: net.IP(ap.Addr().AsSlice()), Port: ap.Port(), Meta: []byte(meta)}
}

func TestRoster(t *testing.T) {
	var logs logSink
	var kicks atomic.Int32
	m := newMetrics(func() float64 { return 0 }, func() float64 { return 0 })
	r := newRoster(logs.logger(), m, func() { kicks.Add(1) })

	r.NotifyJoin(node("n2", "198.18.0.12:7946", "\x01"+`{"l2":["eth1"],"dv":1}`))
	r.NotifyJoin(node("n1", "198.18.0.11:7946", "\x01"+`{"l2":["eth0","eth1"],"dv":2}`))
	r.NotifyJoin(node("n3", "[2001:db8:18::13]:7946", "garbage"))
	r.NotifyUpdate(node("n3", "[2001:db8:18::13]:7946", "garbage")) // same bad metadata: not logged again
	r.NotifyUpdate(node("n2", "198.18.0.12:7946", "\x01"+`{"l2":["eth0"],"dv":1}`))
	r.NotifyLeave(node("n1", "198.18.0.11:7946", ""))

	want := []Member{
		{Name: "n2", Addr: netip.MustParseAddrPort("198.18.0.12:7946"), Meta: Meta{L2Interfaces: []string{"eth0"}, DecisionVersion: 1}},
		{Name: "n3", Addr: netip.MustParseAddrPort("[2001:db8:18::13]:7946")},
	}
	got := r.list()
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
		t.Errorf("list() (-want +got):\n%s", d)
	}
	got[0].Meta.L2Interfaces[0] = "changed"
	if r.list()[0].Meta.L2Interfaces[0] != "eth0" {
		t.Error("list() shares its slices with the roster")
	}

	if n := kicks.Load(); n != 6 {
		t.Errorf("kicked %d times, want once per event (6)", n)
	}
	for event, want := range map[string]float64{eventJoin: 3, eventUpdate: 2, eventLeave: 1} {
		if got := testutil.ToFloat64(m.events.WithLabelValues(event)); got != want {
			t.Errorf("events{event=%q} = %v, want %v", event, got, want)
		}
	}
	if got := testutil.ToFloat64(m.metaErrors); got != 2 {
		t.Errorf("meta errors = %v, want 2 (one per event)", got)
	}
	var logged int
	for _, l := range logs.get() {
		if strings.Contains(l, "Ignoring member metadata") {
			logged++
		}
	}
	if logged != 1 {
		t.Errorf("logged the bad metadata %d times, want once; log:\n%s", logged, strings.Join(logs.get(), "\n"))
	}
}

func TestMetricsLint(t *testing.T) {
	m := newMetrics(func() float64 { return 3 }, func() float64 { return 0 })
	problems, err := testutil.CollectAndLint(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	// Every event series exists from the start, at zero.
	if n := testutil.CollectAndCount(m, "berth_memberlist_events_total"); n != 3 {
		t.Errorf("berth_memberlist_events_total has %d series, want 3", n)
	}
}

func TestNotifierCollapsesKicks(t *testing.T) {
	n := newNotifier()
	release := make(chan struct{})
	calls := make(chan struct{}, 10)
	go n.run(func() {
		calls <- struct{}{}
		<-release
	})
	n.kick()
	<-calls // the first call is running and blocked
	for range 5 {
		n.kick() // never blocks, whatever the callee does
	}
	release <- struct{}{}
	<-calls // the five kicks made exactly one more call
	close(release)
	n.close()
	if len(calls) != 0 {
		t.Errorf("%d extra calls after collapsed kicks", len(calls))
	}
}

func TestSplitLogLine(t *testing.T) {
	tests := []struct{ in, level, text string }{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:7946\n", "DEBUG", "Stream connection from=127.0.0.1:7946"},
		{"[WARN] memberlist: Refuting a suspect message (from: n2)\n", "WARN", "Refuting a suspect message (from: n2)"},
		{"[ERR] Failed to shutdown transport: boom\n", "ERR", "Failed to shutdown transport: boom"},
		{"no level here\n", "", "no level here"},
		{"[unterminated", "", "[unterminated"},
	}
	for _, tt := range tests {
		level, text := splitLogLine([]byte(tt.in))
		if level != tt.level || text != tt.text {
			t.Errorf("splitLogLine(%q) = %q, %q; want %q, %q", tt.in, level, text, tt.level, tt.text)
		}
	}
}

// TestLogBridgeHooks: memberlist tells of a refutation, and of its own failed probe, only
// in its log; each such line calls its hook.
func TestLogBridgeHooks(t *testing.T) {
	var logs logSink
	refutes := 0
	var suspects []string
	std := newStdLogger(logs.logger(), logHooks{onRefute: func() { refutes++ }, onSuspect: func(n string) { suspects = append(suspects, n) }})
	std.Printf("[WARN] memberlist: Refuting a suspect message (from: n2)")
	std.Printf("[WARN] memberlist: Refuting a dead message (from: n2)")
	std.Printf("[WARN] memberlist: Refuting an alive message for 'n1' (10.0.0.1:7946) meta:([] VS [1]), vsn:([1 5 2 0 0 0] VS [1 5 2 0 0 0])")
	std.Printf("[INFO] memberlist: Suspect n1 has failed, no acks received")
	std.Printf("[WARN] memberlist: Was able to connect to n2 over TCP but UDP probes failed, network may be misconfigured")
	std.Printf("[INFO] memberlist: Suspect node-7.example has failed, no acks received")
	std.Printf("[INFO] memberlist: Marking n1 as failed, suspect timeout reached (0 peer confirmations)")
	if refutes != 3 {
		t.Errorf("onRefute called %d times for three refutations, want 3", refutes)
	}
	if want := []string{"n1", "node-7.example"}; !slices.Equal(suspects, want) {
		t.Errorf("onSuspect called for %v, want %v", suspects, want)
	}
}

// TestAccusations: an accusation stands for accusationMemory; this node's own are kept
// apart; the message carries the name and nothing else decodes.
func TestAccusations(t *testing.T) {
	a := newAccusations()
	t0 := time.Now()
	a.record("b", true, t0)
	a.record("c", false, t0.Add(time.Second))
	if got, want := a.standing(t0.Add(time.Second), false), map[string]time.Time{"b": t0, "c": t0.Add(time.Second)}; !maps.Equal(got, want) {
		t.Errorf("all standing = %v, want %v", got, want)
	}
	if got := a.standing(t0.Add(time.Second), true); !maps.Equal(got, map[string]time.Time{"b": t0}) {
		t.Errorf("mine standing = %v, want b only", got)
	}
	if got := a.standing(t0.Add(accusationMemory+time.Millisecond), false); !maps.Equal(got, map[string]time.Time{"c": t0.Add(time.Second)}) {
		t.Errorf("after b's memory: all standing = %v, want c only", got)
	}
	if got := a.standing(t0.Add(accusationMemory+time.Millisecond), true); len(got) != 0 {
		t.Errorf("after b's memory: mine standing = %v, want none", got)
	}
	if name, ok := decodeAccusation(encodeAccusation("node-1")); !ok || name != "node-1" {
		t.Errorf("decode(encode(node-1)) = %q, %v", name, ok)
	}
	for _, b := range [][]byte{nil, []byte("berth-accuse\x00"), []byte("hello"), encodeMeta2()} {
		if name, ok := decodeAccusation(b); ok {
			t.Errorf("decodeAccusation(%q) = %q, want nothing", b, name)
		}
	}
}

func encodeMeta2() []byte {
	b, _ := encodeMeta(Meta{DecisionVersion: 1})
	return b
}

func TestLogBridgeLevels(t *testing.T) {
	var logs logSink
	std := newStdLogger(logs.logger(), logHooks{})
	std.Printf("[DEBUG] memberlist: chatter")
	std.Printf("[INFO] memberlist: Marking n2 as failed")
	std.Printf("[WARN] memberlist: Refuting")
	std.Printf("[ERR] memberlist: Failed to decrypt")
	want := []string{
		`"v"=4 "msg"="Memberlist message" "text"="chatter"`,
		`"v"=2 "msg"="Memberlist message" "text"="Marking n2 as failed"`,
		`"v"=0 "msg"="Memberlist warning" "text"="Refuting"`,
		`"msg"="Memberlist error" "error"="Failed to decrypt"`,
	}
	if d := cmp.Diff(want, logs.get()); d != "" {
		t.Errorf("bridged log (-want +got):\n%s", d)
	}
}
