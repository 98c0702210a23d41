package allocator

import (
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

// TestRandomized drives the allocator with thousands of random operations per seed —
// allocate, claim, release, configuration changes (pools shrinking, growing, moving,
// disappearing), restarts — acting on SetConfig's answer as the provider does, and checks
// after every step, from the outside, that no two Services hold an address they may not
// share, that every assignment is inside its pool and allowed by it, and that Usage equals
// a recount; and from the inside that no free address is ever lost.
func TestRandomized(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			m := newModel(t, seed)
			for step := range 3000 {
				op := m.step()
				if err := checkInvariants(m.a); err != nil {
					t.Fatalf("step %d (%s): invariants: %v", step, op, err)
				}
				m.checkOutside(step, op)
			}
		})
	}
}

// slots are disjoint address ranges the random pools are cut from.
var slots = []string{
	"198.51.100.0-198.51.100.15",
	"198.51.100.248-198.51.101.7", // .255 and .0 inside
	"203.0.113.0-203.0.113.7",
	"203.0.113.8-203.0.113.10",
	"2001:db8::-2001:db8::7",
	"2001:db8::8-2001:db8::b",
	"2001:db8:1::/64",
}

var (
	poolNames  = []string{"a", "b", "c", "d"}
	sharingSet = []string{"", "", "k1", "k2"}
	portSet    = []Port{{"TCP", 80}, {"TCP", 443}, {"UDP", 53}, {"TCP", 53}}
)

type model struct {
	t     *testing.T
	rng   *rand.Rand
	snap  *config.Snapshot
	pools []v1alpha1.IPPool // what snap was built from
	a     *Allocator
	reqs  map[Key]Request // the last Request the allocator acted on, per Service holding addresses
	stale map[Key]bool    // reported by SetConfig and not moved yet
	// claimed marks the Services last acted on by Claim, which may hold less than their
	// Request wants until they are allocated.
	claimed map[Key]bool
	// statuses remembers what released Services held, to claim it back.
	statuses [][]netip.Addr
}

func newModel(t *testing.T, seed uint64) *model {
	m := &model{t: t, rng: rand.New(rand.NewPCG(seed, 42)), reqs: map[Key]Request{}, stale: map[Key]bool{}, claimed: map[Key]bool{}}
	m.snap = m.randomConfig()
	m.a = newAllocator(m.snap, 2) // a short release queue, to exercise forgetting
	return m
}

func (m *model) step() string {
	switch r := m.rng.IntN(100); {
	case r < 48:
		return m.allocate()
	case r < 73:
		key := m.randomKey()
		if asg, ok := m.a.Assigned(key); ok {
			m.statuses = append(m.statuses, asg.IPs)
		}
		m.a.Release(key)
		delete(m.reqs, key)
		delete(m.stale, key)
		delete(m.claimed, key)
		return "release " + key.String()
	case r < 88:
		return m.claim()
	case r < 97:
		return m.setConfig()
	default:
		return m.restart()
	}
}

func (m *model) allocate() string {
	key := m.randomKey()
	prev, held := m.a.Assigned(key)
	req, same := m.reqs[key]
	if !same || m.rng.IntN(2) == 0 {
		req, same = m.randomRequest(key), false
	}
	asg, err := m.a.Allocate(req)
	op := fmt.Sprintf("allocate %s same=%v %s %v requested %v: %v %v", key, same, req.Policy, req.Families, req.RequestedIPs, asg, err)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			m.t.Fatalf("%s: untyped error", op)
		}
		after, stillHeld := m.a.Assigned(key)
		if stillHeld != held || !slices.Equal(after.IPs, prev.IPs) {
			m.t.Fatalf("%s: a failed Allocate changed %v into %v", op, prev, after)
		}
		return op
	}
	if same && held && !m.stale[key] && !m.claimed[key] && !slices.Equal(asg.IPs, prev.IPs) {
		// The only change allowed for the same Request: a PreferDualStack Service gets
		// the family it lacked.
		if asg.Pool != prev.Pool || len(prev.IPs) != 1 || asg.IPs[0] != prev.IPs[0] && asg.IPs[1] != prev.IPs[0] {
			m.t.Fatalf("%s: the same Request moved %v", op, prev)
		}
	}
	m.reqs[key] = req
	delete(m.stale, key)
	delete(m.claimed, key)
	return op
}

func (m *model) claim() string {
	key := m.randomKey()
	var ips []netip.Addr
	if len(m.statuses) > 0 && m.rng.IntN(2) == 0 {
		ips = m.statuses[m.rng.IntN(len(m.statuses))]
	} else {
		for range 1 + m.rng.IntN(2) {
			ips = append(ips, m.randomAddr())
		}
	}
	req := m.randomRequest(key)
	_, held := m.a.Assigned(key)
	asg, err := m.a.Claim(req, ips)
	op := fmt.Sprintf("claim %s %v: %v %v", key, ips, asg, err)
	if !held && len(asg.IPs) > 0 {
		m.reqs[key] = req
		m.claimed[key] = true
		delete(m.stale, key)
	}
	return op
}

// setConfig switches to a random configuration and moves the Services SetConfig reports,
// as the provider does.
func (m *model) setConfig() string {
	before := map[Key]Assignment{}
	for key := range m.reqs {
		before[key], _ = m.a.Assigned(key)
	}
	if m.rng.IntN(2) == 0 {
		m.snap = m.tweakConfig()
	} else {
		m.snap = m.randomConfig()
	}
	reexamine, _ := m.a.SetConfig(m.snap)
	var want []Key
	for key := range m.reqs {
		if !m.fits(key) || m.modeChanged(before[key]) {
			want = append(want, key)
		}
	}
	slices.SortFunc(want, Key.compare)
	if d := cmp.Diff(want, reexamine); d != "" {
		m.t.Fatalf("SetConfig: reexamine (-want +got):\n%s", d)
	}
	for _, key := range reexamine {
		if !m.fits(key) {
			m.stale[key] = true
		}
		if _, err := m.a.Allocate(m.reqs[key]); err == nil {
			delete(m.stale, key)
			delete(m.claimed, key)
		}
	}
	return fmt.Sprintf("setConfig %d pools, reexamine %v", len(m.snap.Pools), reexamine)
}

func (m *model) modeChanged(asg Assignment) bool {
	p := m.snap.Pool(asg.Pool)
	return p != nil && p.IPMode != asg.IPMode
}

// restart builds a new allocator and claims every assignment back, oldest first: every
// Service that fits gets exactly what it held.
func (m *model) restart() string {
	a := newAllocator(m.snap, 2)
	var existing []Existing
	before := map[Key]Assignment{}
	for key, req := range m.reqs {
		asg, _ := m.a.Assigned(key)
		before[key] = asg
		existing = append(existing, Existing{Request: req, IPs: asg.IPs})
	}
	errs := a.ClaimAll(existing)
	for key := range m.reqs {
		after, ok := a.Assigned(key)
		// A Service last acted on by Claim may hold less than it asks for; Allocate, which
		// the provider calls next, is what makes it whole.
		if !m.stale[key] && !m.claimed[key] && (errs[key] != nil || !cmp.Equal(result(before[key], nil), result(after, nil))) {
			m.t.Fatalf("restart: %s held %v, claimed %v, %v", key, before[key], after, errs[key])
		}
		switch {
		case !ok:
			delete(m.reqs, key)
			delete(m.claimed, key)
		case errs[key] != nil:
			m.claimed[key] = true
		}
	}
	m.a = a
	for key := range m.stale {
		if _, ok := m.reqs[key]; !ok || m.fits(key) {
			delete(m.stale, key)
		}
	}
	return fmt.Sprintf("restart: %d Services, %d refused", len(existing), len(errs))
}

// fits reports, from the snapshot alone, whether what key holds fits its last Request.
func (m *model) fits(key Key) bool {
	asg, _ := m.a.Assigned(key)
	req := m.reqs[key]
	p := m.snap.Pool(asg.Pool)
	if p == nil || !p.ServiceSelector.Matches(req.ServiceLabels) || !p.NamespaceSelector.Matches(req.NamespaceLabels) {
		return false
	}
	for _, x := range asg.IPs {
		if !p.Contains(x) || p.AvoidBuggyIPs && config.IsBuggyIPv4(x) {
			return false
		}
	}
	return true
}

// checkOutside checks the allocator's answers against the model, without its internals.
func (m *model) checkOutside(step int, op string) {
	t := m.t
	fatal := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("step %d (%s): %s", step, op, fmt.Sprintf(format, args...))
	}
	if len(m.a.services) != len(m.reqs) {
		fatal("allocator holds %d Services, model %d", len(m.a.services), len(m.reqs))
	}
	holders := map[netip.Addr][]Key{}
	type poolFam struct {
		pool string
		f    config.Family
	}
	recount := map[poolFam]map[netip.Addr]bool{}
	for key, req := range m.reqs {
		asg, ok := m.a.Assigned(key)
		if !ok || len(asg.IPs) == 0 || len(asg.IPs) > 2 {
			fatal("%s: Assigned %v %v", key, asg, ok)
		}
		w, _ := want(&req)
		for i, x := range asg.IPs {
			f := config.FamilyOf(x)
			wi := w.index(f)
			if wi < 0 || i == 1 && config.FamilyOf(asg.IPs[0]) == f {
				fatal("%s: %v does not match families %v", key, asg.IPs, req.Families)
			}
			if r := w.requested[wi]; r.IsValid() && r != x {
				fatal("%s: holds %s, requests %s", key, x, r)
			}
			holders[x] = append(holders[x], key)
			pf := poolFam{asg.Pool, f}
			if recount[pf] == nil {
				recount[pf] = map[netip.Addr]bool{}
			}
			recount[pf][x] = true
		}
		if p := m.snap.Pool(asg.Pool); p != nil && p.IPMode != asg.IPMode {
			fatal("%s: ipMode %s, pool has %s", key, asg.IPMode, p.IPMode)
		}
		if !m.stale[key] {
			if !m.fits(key) {
				fatal("%s: %v does not fit its pool", key, asg)
			}
			if req.Pool != "" && asg.Pool != req.Pool {
				fatal("%s: in pool %q, names %q", key, asg.Pool, req.Pool)
			}
		}
	}
	for x, keys := range holders {
		for i, k := range keys {
			ai, _ := m.a.Assigned(k)
			for _, o := range keys[i+1:] {
				ao, _ := m.a.Assigned(o)
				ri, ro := m.reqs[k], m.reqs[o]
				if why := conflict(newSharing(&ri), newSharing(&ro)); why != "" || ai.Pool != ao.Pool {
					fatal("%s held by %s and %s (pools %q, %q): %s", x, k, o, ai.Pool, ao.Pool, why)
				}
			}
		}
	}
	names := map[string]bool{}
	for _, p := range m.snap.Pools {
		names[p.Name] = true
	}
	for pf := range recount {
		names[pf.pool] = true
	}
	for name := range names {
		u, ok := m.a.Usage(name)
		live := m.snap.Pool(name)
		if !ok || u.Retired != (live == nil) {
			fatal("Usage(%q) = %+v, %v; live %v", name, u, ok, live != nil)
		}
		if u.IPv4.InUse != len(recount[poolFam{name, config.IPv4}]) || u.IPv6.InUse != len(recount[poolFam{name, config.IPv6}]) {
			fatal("Usage(%q) in use %d/%d, recount %d/%d", name, u.IPv4.InUse, u.IPv6.InUse,
				len(recount[poolFam{name, config.IPv4}]), len(recount[poolFam{name, config.IPv6}]))
		}
		if live != nil && (u.IPv4.Capacity.Cmp(live.Capacity4) != 0 || u.IPv6.Capacity.Cmp(live.Capacity6) != 0) {
			fatal("Usage(%q) capacity %s/%s, pool %s/%s", name, u.IPv4.Capacity, u.IPv6.Capacity, live.Capacity4, live.Capacity6)
		}
	}
	for _, name := range poolNames {
		if !names[name] {
			if u, ok := m.a.Usage(name); ok {
				fatal("Usage(%q) = %+v for a pool that neither exists nor holds anything", name, u)
			}
		}
	}
}

func (m *model) randomKey() Key {
	return Key{Namespace: []string{"prod", "dev"}[m.rng.IntN(2)], Name: fmt.Sprint("s", m.rng.IntN(20))}
}

// created gives every Service a fixed age, with ties.
func created4(key Key) reqEdit {
	var n int
	fmt.Sscan(key.Name[1:], &n)
	return created(n / 3)
}

func (m *model) randomRequest(key Key) Request {
	r := svc(key.Name, created4(key))
	r.Key.Namespace = key.Namespace
	r.NamespaceLabels = labels.Set{"env": key.Namespace}
	if m.rng.IntN(3) == 0 {
		r.ServiceLabels = labels.Set{"team": "x"}
	}
	switch n := m.rng.IntN(20); {
	case n < 11:
	case n < 14:
		r.Families = []config.Family{config.IPv6}
	default:
		r.Families = []config.Family{config.IPv4, config.IPv6}
		if m.rng.IntN(2) == 0 {
			r.Families[0], r.Families[1] = r.Families[1], r.Families[0]
		}
		r.Policy = []FamilyPolicy{PreferDualStack, RequireDualStack, SingleStack}[m.rng.IntN(3)]
	}
	if m.rng.IntN(7) == 0 {
		r.Pool = poolNames[m.rng.IntN(len(poolNames))]
	}
	if m.rng.IntN(6) == 0 {
		for _, f := range r.Families[:1+m.rng.IntN(len(r.Families))] {
			if x := m.randomAddr(); config.FamilyOf(x) == f {
				r.RequestedIPs = append(r.RequestedIPs, x)
			}
		}
	}
	r.SharingKey = sharingSet[m.rng.IntN(len(sharingSet))]
	r.Ports = []Port{portSet[m.rng.IntN(len(portSet))]}
	if m.rng.IntN(3) == 0 {
		r.Ports = append(r.Ports, portSet[m.rng.IntN(len(portSet))])
	}
	if m.rng.IntN(5) == 0 {
		r.LocalTraffic, r.Selector = true, []string{"app=a", "app=b"}[m.rng.IntN(2)]
	}
	return r
}

// randomAddr returns an address released recently, or one of a random slot (of the huge
// slot, one of its first few).
func (m *model) randomAddr() netip.Addr {
	if n := len(m.statuses); n > 0 && m.rng.IntN(3) == 0 {
		if ips := m.statuses[n-1-m.rng.IntN(min(n, 8))]; len(ips) > 0 {
			return ips[m.rng.IntN(len(ips))]
		}
	}
	r, _ := config.ParseRange(slots[m.rng.IntN(len(slots))])
	n := r.Size()
	if n.Cmp(big.NewInt(16)) > 0 {
		n = big.NewInt(16)
	}
	x := r.First
	for range m.rng.IntN(int(n.Int64())) {
		x = x.Next()
	}
	return x
}

// randomConfig cuts the slots into random pools: a slot goes whole, in part, or not at all
// to one of the pools, so pools grow, shrink, move and disappear from one call to the next.
func (m *model) randomConfig() *config.Snapshot {
	ranges := map[string][]v1alpha1.AddressRange{}
	for _, s := range slots {
		if m.rng.IntN(5) == 0 {
			continue
		}
		r, _ := config.ParseRange(s)
		if m.rng.IntN(3) == 0 && r.Size().Cmp(big.NewInt(16)) <= 0 {
			// A part of the slot.
			n := int(r.Size().Int64())
			i, j := m.rng.IntN(n), m.rng.IntN(n)
			if i > j {
				i, j = j, i
			}
			first, last := r.First, r.First
			for range i {
				first = first.Next()
			}
			for range j {
				last = last.Next()
			}
			r = config.Range{First: first, Last: last}
		}
		name := poolNames[m.rng.IntN(len(poolNames))]
		ranges[name] = append(ranges[name], v1alpha1.AddressRange(r.String()))
	}
	var pools []v1alpha1.IPPool
	for _, name := range poolNames {
		if len(ranges[name]) == 0 {
			continue
		}
		p := v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(epoch)}}
		p.Spec.Addresses = ranges[name]
		p.Spec.Priority = int32(m.rng.IntN(3))
		p.Spec.AutoAssign = ptr.To(m.rng.IntN(5) != 0)
		p.Spec.AvoidBuggyIPs = m.rng.IntN(3) == 0
		if m.rng.IntN(5) == 0 {
			p.Spec.IPMode = v1alpha1.IPModeProxy
		}
		if m.rng.IntN(5) == 0 {
			p.Spec.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "x"}}
		}
		if m.rng.IntN(5) == 0 {
			p.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
		}
		pools = append(pools, p)
	}
	m.pools = pools
	return snapshot(m.t, pools...)
}

// tweakConfig changes one thing of one pool, so that most free sets are kept as they are.
func (m *model) tweakConfig() *config.Snapshot {
	if len(m.pools) == 0 {
		return m.randomConfig()
	}
	pools := slices.Clone(m.pools)
	i := m.rng.IntN(len(pools))
	p := pools[i].DeepCopy()
	switch m.rng.IntN(6) {
	case 0:
		p.Spec.Priority = int32(m.rng.IntN(3))
	case 1:
		p.Spec.AutoAssign = ptr.To(!*p.Spec.AutoAssign)
	case 2:
		p.Spec.AvoidBuggyIPs = !p.Spec.AvoidBuggyIPs
	case 3:
		p.Spec.IPMode = []v1alpha1.IPMode{v1alpha1.IPModeVIP, v1alpha1.IPModeProxy}[m.rng.IntN(2)]
	case 4:
		if len(p.Spec.Addresses) > 1 {
			j := m.rng.IntN(len(p.Spec.Addresses))
			p.Spec.Addresses = slices.Delete(p.Spec.Addresses, j, j+1)
		}
	case 5:
		pools = slices.Delete(pools, i, i+1)
		m.pools = pools
		return snapshot(m.t, pools...)
	}
	pools[i] = *p
	m.pools = pools
	return snapshot(m.t, pools...)
}
