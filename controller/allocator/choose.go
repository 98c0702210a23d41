package allocator

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/berthlb/berth/config"
)

// plan is an assignment not committed yet: a pool and the addresses found in it, in the
// order of the Service's families.
type plan struct {
	pool *pool
	ips  [2]netip.Addr
	// free marks the addresses that came from the free set: committing them needs no
	// lookup of their holders.
	free [2]bool
	n    int
}

func (pl *plan) addrs() []netip.Addr { return pl.ips[:pl.n] }

func (pl *plan) has(x netip.Addr) bool { return slices.Contains(pl.addrs(), x) }

func (pl *plan) add(x netip.Addr, free bool) {
	pl.ips[pl.n], pl.free[pl.n] = x, free
	pl.n++
}

// choose finds what the Service should hold. It changes nothing a caller can see: at most
// it moves cursors past addresses they would skip anyway.
func (a *Allocator) choose(req *Request, w *wanted, held *service) (plan, error) {
	var named *pool
	if req.Pool != "" {
		if named = a.live[req.Pool]; named == nil {
			return plan{}, fail(PoolNotFound, req.Pool, netip.Addr{}, "pool %q does not exist or is not accepted", req.Pool)
		}
	}
	p := named
	if w.anyRequested {
		var err *Error
		if p, err = a.requestedPool(req, w); err != nil {
			return plan{}, err
		}
	}
	if p == nil {
		return a.automatic(req, w, held)
	}
	if p.cfg.Deleting && (held == nil || held.pool == nil || held.pool.cfg.Name != p.cfg.Name) {
		return plan{}, fail(PoolNotFound, p.cfg.Name, netip.Addr{},
			"pool %q is being deleted: it keeps the addresses in use and hands out no new ones", p.cfg.Name)
	}
	if !p.admits(req.ServiceLabels, req.NamespaceLabels) {
		return plan{}, fail(PoolNotAllowed, p.cfg.Name, netip.Addr{},
			"pool %q does not select this Service (serviceSelector %q, namespaceSelector %q)",
			p.cfg.Name, selectorString(p.cfg.ServiceSelector), selectorString(p.cfg.NamespaceSelector))
	}
	pl, err := a.attempt(p, req, w, held, w.required)
	if err != nil {
		return plan{}, err
	}
	return pl, nil
}

// requestedPool returns the pool that holds every requested IP.
func (a *Allocator) requestedPool(req *Request, w *wanted) (*pool, *Error) {
	var p *pool
	for _, r := range w.requested[:w.n] {
		if !r.IsValid() {
			continue
		}
		q := a.locate(r)
		switch {
		case q == nil:
			return nil, fail(RequestedIPNotInPool, req.Pool, r, "requested IP %s is in no accepted pool", r)
		case req.Pool != "" && q.cfg.Name != req.Pool:
			return nil, fail(RequestedIPNotInPool, req.Pool, r, "requested IP %s is in pool %q, not in pool %q the Service names", r, q.cfg.Name, req.Pool)
		case !q.allowsAddr(r):
			return nil, fail(RequestedIPNotInPool, q.cfg.Name, r, "requested IP %s ends in .0 or .255, which pool %q avoids (avoidBuggyIPs)", r, q.cfg.Name)
		case p != nil && q != p:
			return nil, fail(RequestedIPNotInPool, q.cfg.Name, r, "requested IPs are in pools %q and %q; a Service takes all its IPs from one pool", p.cfg.Name, q.cfg.Name)
		}
		p = q
	}
	return p, nil
}

// automatic chooses among the autoAssign pools that select the Service, starting with the
// pool of the addresses it holds, so that nothing moves while it fits.
func (a *Allocator) automatic(req *Request, w *wanted, held *service) (plan, error) {
	var heldFail []*Error
	first := a.home(req, held)
	if first != nil {
		pl, err := a.attempt(first, req, w, held, w.required)
		if err == nil {
			return pl, nil
		}
		heldFail = append(heldFail, err)
	}
	// First look for a pool with every family, then settle for the required ones.
	needs := []int{w.n}
	if w.required < w.n {
		needs = append(needs, w.required)
	}
	var fails []*Error
	tried := first != nil
	for _, need := range needs {
		fails = append(fails[:0], heldFail...)
		for _, p := range a.order {
			if p == first || !p.cfg.AutoAssign || !p.admits(req.ServiceLabels, req.NamespaceLabels) {
				continue
			}
			tried = true
			pl, err := a.attempt(p, req, w, held, need)
			if err == nil {
				return pl, nil
			}
			fails = append(fails, err)
		}
	}
	if !tried {
		return plan{}, fail(NoPoolForService, "", netip.Addr{}, "no pool with autoAssign selects this Service")
	}
	return plan{}, summarize(fails)
}

// home returns the pool to try first for a Service holding addresses: the live pool that
// contains them now (a configuration change may have moved a range to another pool, and the
// address matters more than the pool's name), else the pool they came from. autoAssign
// does not matter: it governs new choices only.
func (a *Allocator) home(req *Request, held *service) *pool {
	if held == nil {
		return nil
	}
	for _, x := range held.addrs() {
		if p := a.locate(x); p != nil && p.admits(req.ServiceLabels, req.NamespaceLabels) {
			return p
		}
	}
	if !held.pool.retired && held.pool.admits(req.ServiceLabels, req.NamespaceLabels) {
		return held.pool
	}
	return nil
}

// summarize turns the failures of several pools into one error.
func summarize(fails []*Error) *Error {
	if len(fails) == 1 {
		return fails[0]
	}
	reason := FamilyUnavailable
	msgs := make([]string, len(fails))
	for i, e := range fails {
		if e.Reason == PoolExhausted {
			reason = PoolExhausted
		}
		msgs[i] = e.Message
	}
	return fail(reason, "", netip.Addr{}, "%s", strings.Join(msgs, "; "))
}

// attempt finds addresses in p for the Service's families; the first need ones and the
// requested ones must be found, the others are best effort.
func (a *Allocator) attempt(p *pool, req *Request, w *wanted, held *service, need int) (plan, *Error) {
	pl := plan{pool: p}
	for i := range w.n {
		x, free, err := a.pick(p, req, w, i, held)
		if err == nil && p.cfg.Deleting && (held == nil || !slices.Contains(held.addrs(), x)) {
			err = fail(PoolNotFound, p.cfg.Name, x, "pool %q is being deleted: it keeps the addresses in use and hands out no new ones", p.cfg.Name)
		}
		if err != nil {
			if i < need || w.requested[i].IsValid() {
				return plan{}, err
			}
			continue
		}
		pl.add(x, free)
	}
	return pl, nil
}

// pick finds the address of family w.fams[i] in p: the requested one, else the one the
// Service holds, else one in use under its sharing key, else the next free one (free).
func (a *Allocator) pick(p *pool, req *Request, w *wanted, i int, held *service) (x netip.Addr, free bool, err *Error) {
	f := w.fams[i]
	if r := w.requested[i]; r.IsValid() {
		if err := a.canHold(r, p, req); err != nil {
			return netip.Addr{}, false, err
		}
		return r, false, nil
	}
	if held != nil {
		for _, x := range held.addrs() {
			if config.FamilyOf(x) == f && a.keepable(x, p, req, held) {
				return x, false, nil
			}
		}
	}
	if req.SharingKey != "" {
		for _, x := range a.sharing[req.SharingKey] {
			if h := a.inUse[x]; h != nil && h.pool == p && config.FamilyOf(x) == f && a.locate(x) == p && p.allowsAddr(x) && a.canHold(x, p, req) == nil {
				return x, false, nil
			}
		}
	}
	fs := p.free[fam(f)]
	if fs == nil || p.capacity(f).Sign() == 0 {
		return netip.Addr{}, false, &Error{Reason: FamilyUnavailable, Pool: p.cfg.Name,
			Message: fmt.Sprintf("pool %q has no %s addresses", p.cfg.Name, f)}
	}
	if x, ok := fs.next(a.inUse); ok {
		return x, true, nil
	}
	return netip.Addr{}, false, &Error{Reason: PoolExhausted, Pool: p.cfg.Name,
		Message: fmt.Sprintf("pool %q has no free %s address", p.cfg.Name, f)}
}

// keepable reports whether s, asking req, may keep x as its address in p.
func (a *Allocator) keepable(x netip.Addr, p *pool, req *Request, s *service) bool {
	if a.locate(x) != p || !p.allowsAddr(x) {
		return false
	}
	// A shared address stays in the pool its holders took it from.
	if s.pool != p && a.sharers[x] != nil {
		return false
	}
	return a.canHold(x, p, req) == nil
}
