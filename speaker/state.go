package speaker

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/berthlb/berth/config"
)

// ServiceSource gives the State the Services it decides, from the informers' caches.
type ServiceSource interface {
	// Service returns the Service with its endpoints; false when it is gone or not berth's.
	Service(key types.NamespacedName) (Service, bool)
	// Keys lists every Service berth handles.
	Keys() []types.NamespacedName
}

// State holds the speaker's inputs and current decisions, and re-decides incrementally: a
// Service or endpoint change re-decides that Service only; a change of config, nodes or
// members rebuilds the Cluster and re-decides all. Setters only record what changed and
// wake Run, so bursts coalesce into one pass.
type State struct {
	self     string
	source   ServiceSource
	onChange func()
	onNodes  func()
	observe  func(full bool, d time.Duration)

	wake chan struct{}

	mu           sync.Mutex
	snap         *config.Snapshot
	nodes        map[string]Node
	members      []Member
	clusterDirty bool
	dirty        map[types.NamespacedName]struct{}

	cluster  *Cluster
	decided  map[types.NamespacedName]*ServiceDecision
	gen      uint64 // counts decision changes
	synced   bool   // a full pass ran with config and nodes known
	counts   map[countKey]int
	failover map[string]struct{}  // members lost since the last full pass
	former   map[string]time.Time // MACs of departed members, when they left
	departed map[string]time.Time // departed members, when they left, for the minority rule
	suspects []string             // members memberlist suspects, sorted
	// unreachable are accused members this node's own probe did not reach, sorted.
	unreachable []string

	// sorted holds the decisions of decided, sorted by namespace and name; shared says
	// readers hold it, so the next change copies it first. view is what Decisions last
	// returned, until something in it changes. Every executor reads the decisions after
	// every change: a sorted copy for each of them cost more than deciding at 10,000
	// Services. A decision, once stored, never changes (a change stores a new one), so
	// the copy is of pointers: at 10,000 Services 80 kB, where copying the decisions
	// themselves made a third of the speaker's garbage.
	sorted []*ServiceDecision
	shared bool
	view   *Decisions
}

// formerMemberMemory is how long the MACs of a departed member still count as berth's.
const formerMemberMemory = time.Minute

// departedMemory is how long a departed member counts as a voter of the minority rule (a
// Node that goes NotReady or is deleted stops counting sooner). A partition that lasts
// longer lets the smaller side answer again, beside the others.
const departedMemory = 5 * time.Minute

// countKey is a label set of berth_speaker_announced_ips.
type countKey struct{ pool, protocol string }

// StateOptions configure NewState.
type StateOptions struct {
	// OnChange is called, from Run's goroutine, after the decisions changed. It must not block.
	OnChange func()
	// Observe receives the duration of every pass; full says all Services were decided.
	Observe func(full bool, d time.Duration)
	// OnNodes is called after a Node came, went or changed how it decides or forwards
	// (Proxy mode's backends follow the nodes even when no decision changes). It must not
	// block.
	OnNodes func()
}

// NewState returns a State deciding for node self. It decides nothing until Run.
func NewState(self string, source ServiceSource, opts StateOptions) *State {
	s := &State{
		self: self, source: source, onChange: opts.OnChange, onNodes: opts.OnNodes, observe: opts.Observe,
		wake:  make(chan struct{}, 1),
		nodes: map[string]Node{}, dirty: map[types.NamespacedName]struct{}{},
		decided: map[types.NamespacedName]*ServiceDecision{}, counts: map[countKey]int{},
		failover: map[string]struct{}{}, former: map[string]time.Time{}, departed: map[string]time.Time{},
	}
	if s.onNodes == nil {
		s.onNodes = func() {}
	}
	if s.onChange == nil {
		s.onChange = func() {}
	}
	if s.observe == nil {
		s.observe = func(bool, time.Duration) {}
	}
	return s
}

func (s *State) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// SetConfig records a new config snapshot.
func (s *State) SetConfig(snap *config.Snapshot) {
	s.mu.Lock()
	s.snap, s.clusterDirty = snap, true
	s.mu.Unlock()
	s.poke()
}

// ConfigAndSelf returns the config snapshot and this node's Node; false until both are known.
func (s *State) ConfigAndSelf() (*config.Snapshot, Node, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.nodes[s.self]
	return s.snap, n, ok && s.snap != nil
}

// SetNode records a Node; one that decides as before changes nothing.
func (s *State) SetNode(n Node) {
	s.mu.Lock()
	if old, ok := s.nodes[n.Name]; ok && SameNode(old, n) {
		s.mu.Unlock()
		return
	}
	s.nodes[n.Name], s.clusterDirty = n, true
	s.mu.Unlock()
	s.poke()
	s.onNodes()
}

// Nodes returns the known Nodes, sorted by name.
func (s *State) Nodes() []Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Node, 0, len(s.nodes))
	for _, n := range s.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// DeleteNode forgets a Node.
func (s *State) DeleteNode(name string) {
	s.mu.Lock()
	_, ok := s.nodes[name]
	if ok {
		delete(s.nodes, name)
		s.clusterDirty = true
	}
	s.mu.Unlock()
	s.poke()
	if ok {
		s.onNodes()
	}
}

// SetMembers records memberlist's live members. When members only left, the IPs they
// owned on L2 pass to their precomputed runner-up at once, before the full pass re-elects:
// failover needs no election.
func (s *State) SetMembers(members []Member) {
	members = slices.Clone(members)
	slices.SortFunc(members, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	s.mu.Lock()
	if slices.EqualFunc(s.members, members, sameMember) {
		s.mu.Unlock()
		return
	}
	gone := departed(s.members, members)
	now := time.Now()
	s.rememberMACs(gone, now)
	s.members, s.clusterDirty, s.view = members, true, nil
	for _, m := range members {
		delete(s.departed, m.Name)
	}
	for _, name := range gone {
		s.departed[name] = now
	}
	if len(gone) > 0 {
		// Decide again once they stop counting, even if nothing else happens by then.
		time.AfterFunc(departedMemory+time.Second, func() {
			s.mu.Lock()
			s.clusterDirty = true
			s.mu.Unlock()
			s.poke()
		})
	}
	changed := false
	if len(gone) > 0 {
		for _, name := range gone {
			s.failover[name] = struct{}{}
		}
		changed = s.promoteLocked()
	}
	s.mu.Unlock()
	if changed {
		s.onChange()
	}
	s.poke()
}

func sameMember(a, b Member) bool {
	return a.Name == b.Name && a.DecisionVersion == b.DecisionVersion && slices.Equal(a.L2Interfaces, b.L2Interfaces) &&
		slices.Equal(a.MACs, b.MACs)
}

// departed returns the names in old missing from cur; both are sorted by name.
func departed(old, cur []Member) []string {
	var out []string
	for _, m := range old {
		if _, found := slices.BinarySearchFunc(cur, m.Name, func(m Member, n string) int { return cmp.Compare(m.Name, n) }); !found {
			out = append(out, m.Name)
		}
	}
	return out
}

// SetSuspects records the members memberlist suspects of having failed.
func (s *State) SetSuspects(names []string) {
	names = slices.Sorted(slices.Values(names))
	s.mu.Lock()
	if slices.Equal(s.suspects, names) {
		s.mu.Unlock()
		return
	}
	s.suspects, s.clusterDirty = names, true
	s.mu.Unlock()
	s.poke()
}

// SetUnreachable records the members memberlist suspects of having failed that this
// node's own probe did not reach either (accusations): the L2 election passes them over.
// As when a member departs, the IPs a newly unreachable member owned pass to their
// runner-up at once; the full pass that follows confirms it.
func (s *State) SetUnreachable(names []string) {
	names = slices.Sorted(slices.Values(names))
	s.mu.Lock()
	if slices.Equal(s.unreachable, names) {
		s.mu.Unlock()
		return
	}
	changed := false
	for _, name := range names {
		if _, found := slices.BinarySearch(s.unreachable, name); !found && name != s.self {
			s.failover[name] = struct{}{}
			changed = true
		}
	}
	if changed {
		changed = s.promoteLocked()
	}
	s.unreachable, s.clusterDirty = names, true
	s.mu.Unlock()
	if changed {
		s.onChange()
	}
	s.poke()
}

// departedLocked returns the members departed within departedMemory, and forgets the others.
func (s *State) departedLocked(now time.Time) []string {
	var out []string
	for name, at := range s.departed {
		if now.Sub(at) > departedMemory {
			delete(s.departed, name)
			continue
		}
		out = append(out, name)
	}
	return out
}

// promoteLocked hands each L2 IP owned by a departed member to its runner-up, and reports
// whether this node's decisions changed. The next full pass confirms or corrects it.
func (s *State) promoteLocked() bool {
	changed := false
	// A node that just lost most of the others may be the one cut off: it takes nothing
	// over, and the full pass says Minority.
	nodes := make([]Node, 0, len(s.nodes))
	for _, n := range s.nodes {
		nodes = append(nodes, n)
	}
	minority := inMinority(nodes, s.members, s.departedLocked(time.Now()), s.suspects)
	for key, sd := range s.decided {
		var ips []IPDecision
		for i, d := range sd.IPs {
			if _, lost := s.failover[d.L2.Owner]; !lost || d.L2.Owner == "" {
				continue
			}
			if ips == nil {
				ips = slices.Clone(sd.IPs)
			}
			nd := &ips[i]
			nd.L2.Owner, nd.L2.Next = d.L2.Next, ""
			if _, lostToo := s.failover[nd.L2.Owner]; lostToo {
				nd.L2.Owner = ""
			}
			if nd.L2.Owner == s.self && d.L2.Reason == NotElected && !minority {
				nd.L2.Announce, nd.L2.Reason = true, Elected
				// The interfaces come with the full pass; until then announce on those the
				// cluster allows this node for any advertisement of the pool.
				nd.L2.Interfaces = s.cluster.poolInterfaces(d.Pool)
			}
		}
		if ips != nil {
			moved := *sd // readers hold sd
			moved.IPs = ips
			s.replaceLocked(key, &moved)
			changed = true
		}
	}
	if changed {
		s.gen++
	}
	return changed
}

// ServiceChanged marks a Service (or its endpoints) as changed.
func (s *State) ServiceChanged(key types.NamespacedName) {
	s.mu.Lock()
	s.dirty[key] = struct{}{}
	s.mu.Unlock()
	s.poke()
}

// Run re-decides whatever changed until ctx ends.
func (s *State) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		s.pass()
	}
}

// pass runs one round: a full one when the Cluster must be rebuilt, else the dirty Services.
func (s *State) pass() {
	start := time.Now()
	s.mu.Lock()
	full := s.clusterDirty
	dirty := s.dirty
	s.dirty = map[types.NamespacedName]struct{}{}
	s.clusterDirty = false
	var in Input
	if full {
		in = Input{Config: s.snap, Members: s.members, Self: s.self, Nodes: make([]Node, 0, len(s.nodes)), Departed: s.departedLocked(start), Suspects: s.suspects,
			Unreachable: s.unreachable}
		for _, n := range s.nodes {
			in.Nodes = append(in.Nodes, n)
		}
	}
	cluster := s.cluster
	s.mu.Unlock()

	var keys []types.NamespacedName
	if full {
		cluster = NewCluster(in)
		keys = s.source.Keys()
	} else {
		if cluster == nil || len(dirty) == 0 {
			return
		}
		for k := range dirty {
			keys = append(keys, k)
		}
	}
	// Decide outside the lock: the Cluster is immutable and the source is a cache.
	decided := make(map[types.NamespacedName]*ServiceDecision, len(keys))
	for _, k := range keys {
		svc, ok := s.source.Service(k)
		if !ok {
			decided[k] = nil
			continue
		}
		sd := decisionFor(&svc, cluster.DecideService(&svc))
		decided[k] = &sd
	}

	s.mu.Lock()
	changed := false
	if full {
		s.cluster, s.view = cluster, nil
		s.failover = map[string]struct{}{}
		wasSynced := s.synced
		s.synced = s.snap != nil && len(s.nodes) > 0
		// The first synced pass is news even when it decides nothing: the status reports it.
		changed = s.synced && !wasSynced
		for k := range s.decided {
			if _, ok := decided[k]; !ok {
				decided[k] = nil
			}
		}
	} else if s.clusterDirty {
		// A full pass follows and re-decides everything with the new Cluster.
		for k := range dirty {
			s.dirty[k] = struct{}{}
		}
	}
	for k, d := range decided {
		old, had := s.decided[k]
		switch {
		case d == nil && had:
			s.replaceLocked(k, nil)
			changed = true
		case d != nil && (!had || !sameDecision(old, d)):
			s.replaceLocked(k, d)
			changed = true
		}
	}
	if changed {
		s.gen++
	}
	s.mu.Unlock()
	s.observe(full, time.Since(start))
	if changed {
		s.onChange()
	}
}

// replaceLocked stores sd for key (nil deletes it) and keeps the counts current. sd is
// the State's from now on: nobody may change it.
func (s *State) replaceLocked(key types.NamespacedName, sd *ServiceDecision) {
	s.view = nil
	if s.shared {
		s.sorted, s.shared = slices.Clone(s.sorted), false
	}
	i, found := slices.BinarySearchFunc(s.sorted, key, func(d *ServiceDecision, k types.NamespacedName) int {
		return cmp.Or(cmp.Compare(d.Namespace, k.Namespace), cmp.Compare(d.Name, k.Name))
	})
	if old, ok := s.decided[key]; ok {
		s.count(old, -1)
	}
	if sd == nil {
		delete(s.decided, key)
		if found {
			s.sorted = slices.Delete(s.sorted, i, i+1)
		}
		return
	}
	s.decided[key] = sd
	s.count(sd, 1)
	if found {
		s.sorted[i] = sd
	} else {
		s.sorted = slices.Insert(s.sorted, i, sd)
	}
}

func (s *State) count(sd *ServiceDecision, delta int) {
	for _, d := range sd.IPs {
		if d.L2.Announce {
			s.counts[countKey{d.Pool, "L2"}] += delta
		}
		if d.BGP.Announce {
			s.counts[countKey{d.Pool, "BGP"}] += delta
		}
	}
}

func sameDecision(a, b *ServiceDecision) bool {
	return slices.Equal(a.Ports, b.Ports) && a.TrafficPolicy == b.TrafficPolicy && slices.Equal(a.Local, b.Local) &&
		slices.Equal(a.SourceRanges, b.SourceRanges) &&
		slices.EqualFunc(a.IPs, b.IPs, func(x, y IPDecision) bool {
			return x.IP == y.IP && x.Pool == y.Pool && x.Proxy == y.Proxy &&
				x.L2.Announce == y.L2.Announce && x.L2.Reason == y.L2.Reason && x.L2.Owner == y.L2.Owner &&
				x.L2.Next == y.L2.Next && slices.Equal(x.L2.Interfaces, y.L2.Interfaces) &&
				x.BGP.Announce == y.BGP.Announce && x.BGP.Reason == y.BGP.Reason &&
				slices.EqualFunc(x.BGP.Routes, y.BGP.Routes, func(p, q BGPRoute) bool {
					return p.Advertisement == q.Advertisement && slices.Equal(p.Peers, q.Peers)
				})
		})
}

// Decisions is a consistent copy of the State for readers: the decision endpoint, the
// status reporter and the executors.
type Decisions struct {
	Node string
	// Generation rises with every change of any decision.
	Generation uint64
	// Synced is false until a full pass ran with the config and the Nodes known.
	Synced          bool
	DecisionVersion uint32
	Members         []Member
	// Services are sorted by namespace and name. The list and the decisions are
	// shared: do not modify either.
	Services []*ServiceDecision
}

// Decisions returns the current decisions; callers share them until they change.
func (s *State) Decisions() Decisions {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.view != nil {
		return *s.view
	}
	if s.sorted == nil {
		s.sorted = []*ServiceDecision{} // an empty list, not null, at /decisions
	}
	d := Decisions{Node: s.self, Generation: s.gen, Synced: s.synced, Members: s.members, Services: s.sorted}
	if s.cluster != nil {
		d.DecisionVersion = s.cluster.Version()
	}
	s.view, s.shared = &d, true
	return d
}

// Counts returns how many IPs this node announces, by pool and protocol ("L2", "BGP").
func (s *State) Counts() map[[2]string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.countsLocked()
}

func (s *State) countsLocked() map[[2]string]int {
	out := make(map[[2]string]int, len(s.counts))
	for k, n := range s.counts {
		if n != 0 {
			out[[2]string{k.pool, k.protocol}] = n
		}
	}
	return out
}

// Members returns the live members last recorded. Shared: do not modify.
func (s *State) Members() []Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.members
}

// rememberMACs records the MACs of the departed members, and forgets those gone long ago.
func (s *State) rememberMACs(gone []string, now time.Time) {
	for _, m := range s.members {
		if slices.Contains(gone, m.Name) {
			for _, mac := range m.MACs {
				s.former[mac] = now
			}
		}
	}
	for mac, at := range s.former {
		if now.Sub(at) > formerMemberMemory {
			delete(s.former, mac)
		}
	}
}

// FormerMAC reports whether mac belonged to a member that left within formerMemberMemory.
func (s *State) FormerMAC(mac string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.former[mac]
	return ok && now.Sub(at) <= formerMemberMemory
}
