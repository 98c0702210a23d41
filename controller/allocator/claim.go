package allocator

import (
	"cmp"
	"errors"
	"net/netip"
	"slices"

	"github.com/berthlb/berth/config"
)

// Existing is a Service found with addresses in its status, for ClaimAll.
type Existing struct {
	Request Request
	IPs     []netip.Addr
}

// ClaimAll claims the addresses of every Service, oldest first (creationTimestamp, then
// namespace/name), so that of two Services showing one IP the older keeps it whatever
// order they were found in. It returns Claim's errors by Service.
func (a *Allocator) ClaimAll(existing []Existing) map[Key]error {
	order := make([]int, len(existing))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int {
		ri, rj := &existing[i].Request, &existing[j].Request
		if c := ri.Created.Compare(rj.Created); c != 0 {
			return c
		}
		return cmp.Or(ri.Key.compare(rj.Key), cmp.Compare(i, j))
	})
	if len(a.services) == 0 {
		// After a restart: size the maps once rather than grow them step by step.
		a.services = make(map[Key]*service, len(existing))
		a.inUse = make(map[netip.Addr]*service, len(existing))
	}
	errs := map[Key]error{}
	for _, i := range order {
		if _, err := a.claim(existing[i].Request, existing[i].IPs); err != nil {
			errs[existing[i].Request.Key] = err
		}
	}
	return errs
}

// Claim takes back addresses found in the Service's status, typically after a restart,
// before anything is allocated. It claims each address only while it fits the Service's
// spec: a family the Service has (the first address of each), its requested IP if any,
// the pool it names if any, a pool that still contains the address, allows it and selects
// the Service, one pool for all, and no holder it may not share with. It returns what it
// claimed, and for each address it did not, an *Error (StaleAssignment, PoolNotAllowed or
// IPInUse), joined. The caller then calls Allocate, which keeps what was claimed and
// completes it.
//
// A Service that already holds an assignment keeps it: the allocator's record is newer
// than any status the caller read, and Claim returns it unchanged.
func (a *Allocator) Claim(req Request, ips []netip.Addr) (Assignment, error) {
	s, err := a.claim(req, ips)
	if s == nil {
		return Assignment{}, err
	}
	return s.assignment(), err
}

// claim is Claim returning what the Service holds afterwards, or nil.
func (a *Allocator) claim(req Request, ips []netip.Addr) (*service, error) {
	w, werr := want(&req)
	if werr != nil {
		return nil, werr
	}
	if s := a.services[req.Key]; s != nil {
		return s, nil
	}
	var errs []error // per address in ips, made on the first error
	refuse := func(j int, err error) {
		if errs == nil {
			errs = make([]error, len(ips))
		}
		errs[j] = err
	}
	chosen := [2]int{-1, -1} // index in ips of the address claimed for each family
	for j, x := range ips {
		i := -1
		if x.IsValid() {
			i = w.index(config.FamilyOf(x))
		}
		switch {
		case i < 0:
			refuse(j, fail(StaleAssignment, "", x, "%s is not of the Service's IP families %v", x, w.families()))
		case chosen[i] >= 0:
			refuse(j, fail(StaleAssignment, "", x, "the Service already has %s address %s", config.FamilyOf(x), ips[chosen[i]]))
		default:
			chosen[i] = j
		}
	}
	var rp *pool
	if w.anyRequested {
		rp, _ = a.requestedPool(&req, &w)
	}
	pl := plan{}
	for i := range w.n {
		j := chosen[i]
		if j < 0 {
			continue
		}
		x := ips[j]
		p, err := a.claimable(&req, &w, i, x, pl.pool, rp)
		if err != nil {
			refuse(j, err)
			continue
		}
		pl.pool = p
		pl.add(x, false)
	}
	var s *service
	if pl.n > 0 {
		s = a.commit(&req, pl, nil)
	}
	return s, errors.Join(errs...)
}

// claimable checks x as the Service's address of family w.fams[i] and returns its pool.
// inPool is the pool of the addresses claimed so far, requested the pool of the requested
// IPs; either may be nil.
func (a *Allocator) claimable(req *Request, w *wanted, i int, x netip.Addr, inPool, requested *pool) (*pool, error) {
	p := a.locate(x)
	switch r := w.requested[i]; {
	case r.IsValid() && r != x:
		return nil, fail(StaleAssignment, "", x, "the Service requests %s, not %s", r, x)
	case p == nil:
		return nil, fail(StaleAssignment, "", x, "%s is in no accepted pool", x)
	case !p.allowsAddr(x):
		return nil, fail(StaleAssignment, p.cfg.Name, x, "%s ends in .0 or .255, which pool %q avoids (avoidBuggyIPs)", x, p.cfg.Name)
	case req.Pool != "" && p.cfg.Name != req.Pool:
		return nil, fail(StaleAssignment, p.cfg.Name, x, "%s is in pool %q, but the Service names pool %q", x, p.cfg.Name, req.Pool)
	case requested != nil && p != requested:
		return nil, fail(StaleAssignment, p.cfg.Name, x, "%s is in pool %q, but the Service's requested IPs are in pool %q", x, p.cfg.Name, requested.cfg.Name)
	case inPool != nil && p != inPool:
		return nil, fail(StaleAssignment, p.cfg.Name, x, "%s is in pool %q, but the Service's other IP is in pool %q", x, p.cfg.Name, inPool.cfg.Name)
	case !p.admits(req.ServiceLabels, req.NamespaceLabels):
		return nil, fail(PoolNotAllowed, p.cfg.Name, x, "pool %q of %s no longer selects this Service", p.cfg.Name, x)
	}
	if err := a.canHold(x, p, req); err != nil {
		return nil, err
	}
	return p, nil
}
