package speaker

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berthlb/berth/config"
)

// mapSource is a ServiceSource over a map, counting reads.
type mapSource struct {
	mu    sync.Mutex
	svcs  map[types.NamespacedName]Service
	reads int
}

func (m *mapSource) Service(k types.NamespacedName) (Service, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	s, ok := m.svcs[k]
	return s, ok
}

func (m *mapSource) Keys() []types.NamespacedName {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []types.NamespacedName
	for k := range m.svcs {
		out = append(out, k)
	}
	return out
}

func (m *mapSource) set(s Service) types.NamespacedName {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := types.NamespacedName{Namespace: s.Namespace, Name: s.Name}
	m.svcs[k] = s
	return k
}

func (m *mapSource) readCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reads
}

// stateWorld is a State for node "a" of three, with one L2 pool and Services whose
// owners the test computes with Elect.
func stateWorld(t *testing.T) (*State, *mapSource, *[]bool) {
	t.Helper()
	src := &mapSource{svcs: map[types.NamespacedName]Service{}}
	var passes []bool
	st := NewState("a", src, StateOptions{Observe: func(full bool, _ time.Duration) { passes = append(passes, full) }})
	st.SetConfig(&config.Snapshot{
		Pools:            []*config.Pool{pool("lan", "198.18.2.192/26")},
		L2Advertisements: []*config.L2Advertisement{{Name: "lan", Target: target([]string{"lan"}, "", ""), Interfaces: []string{"eth1"}}},
	})
	for _, n := range []string{"a", "b", "c"} {
		st.SetNode(Node{Name: n, Labels: labels.Set{"kubernetes.io/hostname": n}})
	}
	st.SetMembers(members("a", "b", "c"))
	return st, src, &passes
}

func members(names ...string) []Member {
	var out []Member
	for _, n := range names {
		out = append(out, Member{Name: n, L2Interfaces: []string{"eth1"}, DecisionVersion: DecisionVersion})
	}
	return out
}

func l2Service(name, ip string) Service {
	return Service{Namespace: "ns", Name: name, Ingress: ingress(ip), Endpoints: []Endpoint{ep("a"), ep("b"), ep("c")}}
}

func decided(t *testing.T, st *State, name string) IPDecision {
	t.Helper()
	for _, sd := range st.Decisions().Services {
		if sd.Name == name {
			return sd.IPs[0]
		}
	}
	t.Fatalf("no decision for %s", name)
	return IPDecision{}
}

func TestStateIncremental(t *testing.T) {
	st, src, passes := stateWorld(t)
	src.set(l2Service("one", "198.18.2.193"))
	src.set(l2Service("two", "198.18.2.194"))
	st.pass()
	if got := *passes; len(got) != 1 || !got[0] {
		t.Fatalf("passes = %v, want one full pass", got)
	}
	d := st.Decisions()
	if !d.Synced || len(d.Services) != 2 {
		t.Fatalf("after the full pass: synced %v, %d services, want true and 2", d.Synced, len(d.Services))
	}

	// An endpoint change re-decides that Service only.
	reads := src.readCount()
	k := src.set(Service{Namespace: "ns", Name: "one", Ingress: ingress("198.18.2.193"), TrafficPolicy: TrafficPolicyLocal,
		Endpoints: []Endpoint{ep("c")}})
	st.ServiceChanged(k)
	gen := st.Decisions().Generation
	st.pass()
	if got := src.readCount() - reads; got != 1 {
		t.Errorf("an endpoint change read %d Services, want 1", got)
	}
	if got := *passes; got[len(got)-1] {
		t.Errorf("an endpoint change ran a full pass")
	}
	if d := decided(t, st, "one"); d.L2.Owner != "c" || d.L2.Reason != NoLocalEndpoints {
		t.Errorf("eTP=Local with the endpoint on c: owner %q reason %s, want c and NoLocalEndpoints", d.L2.Owner, d.L2.Reason)
	}
	if st.Decisions().Generation == gen {
		t.Errorf("generation did not move after a decision changed")
	}

	// A heartbeat rewrites the Node with nothing the decision reads: no pass at all.
	n := len(*passes)
	st.SetNode(Node{Name: "b", Labels: labels.Set{"kubernetes.io/hostname": "b"}})
	st.pass()
	if len(*passes) != n {
		t.Errorf("an unchanged Node ran a pass")
	}
	// An excluded node is a cluster change.
	st.SetNode(Node{Name: "b", Labels: labels.Set{"kubernetes.io/hostname": "b"}, Excluded: true})
	st.pass()
	if got := *passes; !got[len(got)-1] {
		t.Errorf("excluding a node did not run a full pass")
	}

	// A deleted Service leaves the decisions.
	src.mu.Lock()
	delete(src.svcs, k)
	src.mu.Unlock()
	st.ServiceChanged(k)
	st.pass()
	if got := len(st.Decisions().Services); got != 1 {
		t.Errorf("after deleting a Service: %d decisions, want 1", got)
	}
}

// TestStateFailover: when the owner of an IP leaves memberlist, its runner-up takes the IP
// in SetMembers itself, before any pass, and the full pass agrees.
func TestStateFailover(t *testing.T) {
	st, src, _ := stateWorld(t)
	// Find an IP owned by b with a as runner-up, and one owned by c with b as runner-up.
	var mine, other string
	for i := 193; i < 255 && (mine == "" || other == ""); i++ {
		ip := fmt.Sprintf("198.18.2.%d", i)
		owner, next := Elect(DecisionVersion, netip.MustParseAddr(ip), []string{"a", "b", "c"})
		switch {
		case owner == "b" && next == "a" && mine == "":
			mine = ip
		case owner == "c" && next == "b" && other == "":
			other = ip
		}
	}
	if mine == "" || other == "" {
		t.Fatal("no IP in the pool has the owners the test needs")
	}
	src.set(l2Service("mine", mine))
	src.set(l2Service("other", other))
	changes := 0
	st.onChange = func() { changes++ }
	st.pass()
	if d := decided(t, st, "mine"); d.L2.Announce || d.L2.Owner != "b" || d.L2.Next != "a" {
		t.Fatalf("before: %+v, want owner b, next a, not announced", d.L2)
	}

	changes = 0
	st.SetMembers(members("a", "c"))
	if changes != 1 {
		t.Errorf("losing b notified %d times before the pass, want 1", changes)
	}
	d := decided(t, st, "mine")
	if !d.L2.Announce || d.L2.Reason != Elected || d.L2.Owner != "a" || len(d.L2.Interfaces) == 0 {
		t.Errorf("promoted without a pass: %+v, want announced by a on eth1", d.L2)
	}
	if d := decided(t, st, "other"); d.L2.Owner != "c" {
		t.Errorf("an IP b did not own moved: owner %q, want c", d.L2.Owner)
	}
	st.pass()
	if d := decided(t, st, "mine"); !d.L2.Announce || d.L2.Owner != "a" || d.L2.Next != "c" || d.L2.Interfaces[0] != "eth1" {
		t.Errorf("after the full pass: %+v, want a owning with c next on eth1", d.L2)
	}
	if got := st.Counts()[[2]string{"lan", "L2"}]; got != 1 {
		t.Errorf("L2 count in pool lan = %d, want 1", got)
	}
}

func TestStateFormerMACs(t *testing.T) {
	st, _, _ := stateWorld(t)
	withMAC := members("a", "b", "c")
	withMAC[1].MACs = []string{"02:18:02:00:00:0c"}
	st.SetMembers(withMAC)
	if st.FormerMAC("02:18:02:00:00:0c", time.Now()) {
		t.Errorf("a live member's MAC counts as former")
	}
	st.SetMembers(members("a", "c"))
	if !st.FormerMAC("02:18:02:00:00:0c", time.Now()) {
		t.Errorf("the MAC of a member that just left is not remembered")
	}
	if st.FormerMAC("02:18:02:00:00:0c", time.Now().Add(2*formerMemberMemory)) {
		t.Errorf("a MAC is remembered beyond formerMemberMemory")
	}
}

// TestStateOnNodes: Proxy backends follow the nodes, so a Node that comes, goes or
// changes address is told even when no decision changes; a heartbeat is not.
func TestStateOnNodes(t *testing.T) {
	calls := 0
	st := NewState("a", nil, StateOptions{OnNodes: func() { calls++ }})
	n := Node{Name: "b", Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.12")}}
	st.SetNode(n)
	st.SetNode(n) // the same again: a heartbeat
	moved := n
	moved.Addrs = []netip.Addr{netip.MustParseAddr("198.18.0.22")}
	st.SetNode(moved)
	st.DeleteNode("b")
	st.DeleteNode("b") // gone already
	if calls != 3 {
		t.Errorf("OnNodes called %d times, want 3 (new, moved, deleted)", calls)
	}
}

// TestStateDecisionsShared: readers share one sorted list until a decision changes, and a
// list handed out never changes under its reader.
func TestStateDecisionsShared(t *testing.T) {
	st, src, _ := stateWorld(t)
	for i, name := range []string{"d", "b", "e", "a", "c"} {
		src.set(l2Service(name, fmt.Sprintf("198.18.2.%d", 193+i)))
	}
	st.pass()
	names := func(d Decisions) string {
		var out []string
		for _, sd := range d.Services {
			out = append(out, sd.Name)
		}
		return strings.Join(out, ",")
	}
	first := st.Decisions()
	if got := names(first); got != "a,b,c,d,e" {
		t.Fatalf("decisions %s, want sorted a,b,c,d,e", got)
	}
	if again := st.Decisions(); &again.Services[0] != &first.Services[0] {
		t.Errorf("an unchanged State built a second list")
	}
	// Delete b, add aa, change d: the new list is sorted, the old one is as it was.
	src.mu.Lock()
	delete(src.svcs, types.NamespacedName{Namespace: "ns", Name: "b"})
	src.mu.Unlock()
	st.ServiceChanged(types.NamespacedName{Namespace: "ns", Name: "b"})
	st.ServiceChanged(src.set(l2Service("aa", "198.18.2.200")))
	st.ServiceChanged(src.set(l2Service("d", "198.18.2.201")))
	st.pass()
	if got := names(st.Decisions()); got != "a,aa,c,d,e" {
		t.Errorf("after the changes: %s, want a,aa,c,d,e", got)
	}
	if got := names(first); got != "a,b,c,d,e" {
		t.Errorf("a list handed out before the changes became %s", got)
	}
	if ip := first.Services[3].IPs[0].IP.String(); ip != "198.18.2.193" {
		t.Errorf("d's old decision in the earlier list now says %s", ip)
	}
	if ip := decided(t, st, "d").IP.String(); ip != "198.18.2.201" {
		t.Errorf("d decided %s, want 198.18.2.201", ip)
	}
}

// TestStateUnreachable: when this node's probe does not reach an accused owner, its
// runner-up takes the IP in SetUnreachable itself, the full pass agrees, and the IP goes
// back when the accusation ends.
func TestStateUnreachable(t *testing.T) {
	st, src, _ := stateWorld(t)
	var mine string
	for i := 193; i < 255 && mine == ""; i++ {
		ip := fmt.Sprintf("198.18.2.%d", i)
		if owner, next := Elect(DecisionVersion, netip.MustParseAddr(ip), []string{"a", "b", "c"}); owner == "b" && next == "a" {
			mine = ip
		}
	}
	if mine == "" {
		t.Fatal("no IP in the pool has the owners the test needs")
	}
	src.set(l2Service("mine", mine))
	changes := 0
	st.onChange = func() { changes++ }
	st.pass()

	changes = 0
	st.SetUnreachable([]string{"b"})
	if changes != 1 {
		t.Errorf("b unreachable notified %d times before the pass, want 1", changes)
	}
	if d := decided(t, st, "mine"); !d.L2.Announce || d.L2.Owner != "a" {
		t.Errorf("promoted without a pass: %+v, want announced by a", d.L2)
	}
	st.pass()
	if d := decided(t, st, "mine"); !d.L2.Announce || d.L2.Owner != "a" || d.L2.Next != "c" {
		t.Errorf("after the full pass: %+v, want a owning with c next", d.L2)
	}
	if got := st.Members(); len(got) != 3 {
		t.Errorf("an unreachable member left the members: %v", got)
	}

	changes = 0
	st.SetUnreachable([]string{"b"})
	if changes != 0 {
		t.Errorf("the same unreachable set notified %d times", changes)
	}
	st.SetUnreachable(nil)
	st.pass()
	if d := decided(t, st, "mine"); d.L2.Announce || d.L2.Owner != "b" {
		t.Errorf("after b answered again: %+v, want b owning, a not announcing", d.L2)
	}
	// This node never passes itself over.
	st.SetUnreachable([]string{"a"})
	st.pass()
	if d := decided(t, st, "mine"); d.L2.Owner != "b" || d.L2.Next != "a" {
		t.Errorf("with itself listed unreachable: %+v, want b owning with a next", d.L2)
	}
}
