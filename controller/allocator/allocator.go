// Package allocator hands out LoadBalancer IP addresses from berth's pools.
//
// The allocator is pure: it reads a config.Snapshot and Requests (a plain view of a
// Service the provider builds) and answers with Assignments or typed errors (*Error, whose
// Reason doubles as the Event reason). It does no I/O, keeps no clock, and is not safe for
// concurrent use: the provider calls it under its own mutex.
//
// Rules:
//   - A Service takes all its addresses from one pool, as in MetalLB, so that the pool's
//     ipMode and advertisements apply to the Service as a whole. A pool serves a family
//     only if it has addresses of that family.
//   - Pool choice. Requested IPs (at most one per family) fix the pool: the accepted pool
//     that contains them, which must select the Service; autoAssign does not matter. A pool
//     named by berth.dev/pool is the only one tried, and must select the Service too (the
//     selectors are the pool owner's access control). Otherwise: the autoAssign pools that
//     select the Service, those with a selector before those that take any Service, then
//     by priority (lower first), then by name. PreferDualStack prefers the first pool that
//     can give every family, and settles for the primary family only if none can.
//   - avoidBuggyIPs: the pool never hands out IPv4 addresses ending in .0 or .255, not even
//     when requested (RequestedIPNotInPool): its Capacity leaves them out, so usage never
//     exceeds capacity, and the pool owner asked for it.
//   - Free addresses go out never-used first, in address order, then released ones, oldest
//     release first: an address just released is the last one reused (see freeSet).
//   - Sharing: Services with the same sharing key may hold the same IP when their ports
//     (protocol and number) do not overlap, their externalTrafficPolicy is the same, and
//     with Local their pod selectors are equal. A Service with a sharing key takes an
//     address already used under that key, if one fits, before a fresh one.
//   - An assignment never moves on its own: Allocate keeps the addresses a Service holds
//     while they fit its spec (even when a pool of better priority appears, or the pool's
//     autoAssign is turned off), adds a missing PreferDualStack family when its pool can,
//     and replaces addresses only by committing new ones. On error nothing changes.
//   - Restart: Claim takes back the addresses found in a Service's status before anything
//     is allocated, each one only while it fits the spec; ClaimAll claims oldest Service
//     first, so of two Services claiming one IP the older (creationTimestamp, then
//     namespace/name) keeps it, and the other gets IPInUse naming it.
//   - Configuration changes (SetConfig) keep every assignment and report the Services
//     whose addresses no longer fit, or whose ipMode changed; a pool that left the
//     configuration is retired, still counted in Usage, until its last address is released.
package allocator

import (
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/config"
)

// Allocator assigns pool addresses to Services. It is not safe for concurrent use; the
// zero value is not usable: call New.
type Allocator struct {
	live    map[string]*pool
	retired map[string]*pool
	order   []*pool // live pools in the order automatic choice tries them
	spans   []span  // live pools' ranges by first address; they never overlap

	services map[Key]*service
	// inUse maps every address in use to its first holder; sharers lists all holders of
	// the addresses more than one Service holds.
	inUse   map[netip.Addr]*service
	sharers map[netip.Addr][]*service
	// sharing lists the addresses in use per sharing key, in the order they were taken.
	sharing map[string][]netip.Addr

	maxReleased int
}

// service is what a Service holds and what others need to know to share with it.
type service struct {
	key                 Key
	svcLabels, nsLabels labels.Set
	share               *sharing // nil without a sharing key
	pool                *pool
	// ips holds one or two addresses; the second is the zero Addr for one. (No count
	// field: without it the struct fits a smaller size class.)
	ips [2]netip.Addr
}

func (s *service) addrs() []netip.Addr {
	switch {
	case s.ips[1].IsValid():
		return s.ips[:]
	case s.ips[0].IsValid():
		return s.ips[:1]
	}
	return nil
}

func (s *service) holds(x netip.Addr) bool { return slices.Contains(s.addrs(), x) }

func (s *service) assignment() Assignment {
	return Assignment{Pool: s.pool.cfg.Name, IPs: slices.Clone(s.addrs()), IPMode: s.pool.cfg.IPMode}
}

// New returns an allocator for the pools of snap, holding nothing.
func New(snap *config.Snapshot) *Allocator { return newAllocator(snap, defaultMaxReleased) }

func newAllocator(snap *config.Snapshot, maxReleased int) *Allocator {
	a := &Allocator{
		live:        map[string]*pool{},
		retired:     map[string]*pool{},
		services:    map[Key]*service{},
		inUse:       map[netip.Addr]*service{},
		sharers:     map[netip.Addr][]*service{},
		sharing:     map[string][]netip.Addr{},
		maxReleased: max(maxReleased, 1),
	}
	a.SetConfig(snap)
	return a
}

// Allocate returns the Service's assignment, choosing one if it holds none, or changing
// what it holds as little as its (possibly changed) spec requires. Called again with the
// same Request it returns the same Assignment. On error the Service keeps what it held.
func (a *Allocator) Allocate(req Request) (Assignment, error) {
	w, werr := want(&req)
	if werr != nil {
		return Assignment{}, werr
	}
	held := a.services[req.Key]
	pl, err := a.choose(&req, &w, held)
	if err != nil {
		return Assignment{}, err
	}
	return a.commit(&req, pl, held).assignment(), nil
}

// Assigned returns what the Service holds.
func (a *Allocator) Assigned(key Key) (Assignment, bool) {
	s := a.services[key]
	if s == nil {
		return Assignment{}, false
	}
	return s.assignment(), true
}

// Release frees everything the Service holds. A shared address stays in use until its
// last holder is released.
func (a *Allocator) Release(key Key) {
	s := a.services[key]
	if s == nil {
		return
	}
	for _, x := range s.addrs() {
		a.unhold(x, s)
	}
	delete(a.services, key)
}

// commit makes the Service hold exactly the plan's addresses.
func (a *Allocator) commit(req *Request, pl plan, s *service) *service {
	if s == nil {
		s = &service{key: req.Key}
		a.services[req.Key] = s
	}
	for _, x := range s.addrs() {
		if !pl.has(x) {
			a.unhold(x, s)
		}
	}
	oldKey := s.share.sharingKey()
	s.svcLabels, s.nsLabels = req.ServiceLabels, req.NamespaceLabels
	s.share = newSharing(req)
	for i, x := range pl.addrs() {
		if s.holds(x) {
			a.rehold(x, s, oldKey, pl.pool)
		} else {
			a.hold(x, s, pl.pool, pl.free[i])
		}
	}
	s.pool, s.ips = pl.pool, pl.ips
	return s
}

// hold adds s to x's holders; x is free (known to be if free), or its holders may
// share it with s.
func (a *Allocator) hold(x netip.Addr, s *service, p *pool, free bool) {
	if !free {
		if first, ok := a.inUse[x]; ok {
			hs := a.sharers[x]
			if hs == nil {
				hs = []*service{first}
			}
			a.sharers[x] = append(hs, s)
			return
		}
	}
	f := fam(config.FamilyOf(x))
	a.inUse[x] = s
	p.inUse[f]++
	p.free[f].take(x, a.inUse)
	a.index(s.share.sharingKey(), x)
}

// rehold keeps x, which s already holds, under s's new pool and sharing key. Both can only
// change for an address s holds alone: a shared one must fit its other holders.
func (a *Allocator) rehold(x netip.Addr, s *service, oldKey string, p *pool) {
	if a.sharers[x] != nil {
		return
	}
	if k := s.share.sharingKey(); k != oldKey {
		a.unindex(oldKey, x)
		a.index(k, x)
	}
	if s.pool != p {
		f := fam(config.FamilyOf(x))
		s.pool.inUse[f]--
		p.inUse[f]++
		a.retireIfIdle(s.pool)
	}
}

// unhold removes s from x's holders and frees x after the last one.
func (a *Allocator) unhold(x netip.Addr, s *service) {
	if hs := a.sharers[x]; hs != nil {
		hs = slices.DeleteFunc(hs, func(h *service) bool { return h == s })
		a.inUse[x] = hs[0]
		if len(hs) == 1 {
			delete(a.sharers, x)
		} else {
			a.sharers[x] = hs
		}
		return
	}
	f := fam(config.FamilyOf(x))
	delete(a.inUse, x)
	s.pool.inUse[f]--
	a.retireIfIdle(s.pool)
	a.unindex(s.share.sharingKey(), x)
	// The address goes back to whichever live pool holds it now, if any.
	if p := a.locate(x); p != nil && p.allowsAddr(x) {
		p.free[f].release(x)
	}
}

func (a *Allocator) retireIfIdle(p *pool) {
	if p.retired && p.idle() && a.retired[p.cfg.Name] == p {
		delete(a.retired, p.cfg.Name)
	}
}
