package allocator

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"

	"github.com/berthlb/berth/config"
)

// SetConfig switches to the pools of snap. Every assignment is kept; the free addresses of
// a pool whose ranges did not change are kept as they were, release order included.
//
// It returns, sorted, the Services to look at again: those whose addresses no longer fit
// (their pool left the configuration, or no longer contains, allows or selects them),
// which the caller moves by calling Allocate, and those whose pool's ipMode changed, whose
// status must be rewritten. Until moved, a Service keeps its addresses, and a pool that
// left the configuration is retired: Usage still reports it, so its finalizer stays.
//
// widened reports that a pool was added, or changed its ranges, selectors, autoAssign or
// avoidBuggyIPs: Services that failed to get an address may succeed now. Releases free
// addresses too; retrying failed Services with backoff covers those.
func (a *Allocator) SetConfig(snap *config.Snapshot) (reexamine []Key, widened bool) {
	if snap == nil {
		snap = &config.Snapshot{} // no pools
	}
	old := a.live
	a.live = make(map[string]*pool, len(snap.Pools))
	for _, c := range snap.Pools {
		op := old[c.Name]
		if op == nil || mayAdmitMore(op.cfg, c) {
			widened = true
		}
		a.live[c.Name] = a.buildPool(c, op)
		delete(a.retired, c.Name) // its holders move to the live pool below
	}
	a.indexPools()
	a.seed(old)
	for name, op := range old {
		if a.live[name] == nil {
			op.retired, op.free = true, [2]*freeSet{}
			a.retired[name] = op
		}
	}

	for _, s := range a.services {
		was := s.pool
		if p := a.live[was.cfg.Name]; p != nil {
			s.pool = p
		} else {
			a.retired[was.cfg.Name] = was
		}
		if !a.fits(s) || s.pool.cfg.IPMode != was.cfg.IPMode {
			reexamine = append(reexamine, s.key)
		}
	}
	a.recount()
	slices.SortFunc(reexamine, Key.compare)
	return reexamine, widened
}

// mayAdmitMore reports whether pool o changing into n may let a Service that failed to get
// an address succeed (conservatively: any change of what or whom the pool serves).
func mayAdmitMore(o, n *config.Pool) bool {
	return !slices.Equal(o.Ranges, n.Ranges) || o.AvoidBuggyIPs != n.AvoidBuggyIPs || o.AutoAssign != n.AutoAssign ||
		selectorString(o.ServiceSelector) != selectorString(n.ServiceSelector) ||
		selectorString(o.NamespaceSelector) != selectorString(n.NamespaceSelector)
}

// buildPool makes the pool for c, reusing what it can of op, the live pool of that name
// before: a family's whole free set when its ranges and avoidBuggyIPs did not change, else
// the cursors of the ranges that did not.
func (a *Allocator) buildPool(c *config.Pool, op *pool) *pool {
	p := &pool{cfg: c, selects: !selectsAll(c.ServiceSelector) || !selectsAll(c.NamespaceSelector)}
	for f, family := range families {
		var rs []config.Range
		for _, r := range c.Ranges {
			if r.Family() == family {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		var ofs *freeSet
		if op != nil && op.free[f] != nil && op.free[f].avoidBuggy == c.AvoidBuggyIPs {
			ofs = op.free[f]
		}
		if ofs != nil && slices.EqualFunc(ofs.cursors, rs, func(c *cursor, r config.Range) bool { return c.r == r }) {
			p.free[f] = ofs
			continue
		}
		fs := &freeSet{avoidBuggy: c.AvoidBuggyIPs, maxReleased: a.maxReleased}
		for _, r := range rs {
			// A forgotten address may lie behind any old cursor: start them all afresh.
			if ofs != nil && ofs.forgotten == 0 {
				if oc := ofs.cursorFor(r.First); oc != nil && oc.r == r {
					fs.cursors = append(fs.cursors, oc)
					continue
				}
			}
			fs.cursors = append(fs.cursors, newCursor(r))
		}
		p.free[f] = fs
	}
	return p
}

// indexPools orders the live pools for automatic choice and indexes their ranges.
func (a *Allocator) indexPools() {
	a.order, a.spans = a.order[:0], a.spans[:0]
	for _, p := range a.live {
		a.order = append(a.order, p)
		for _, r := range p.cfg.Ranges {
			a.spans = append(a.spans, span{Range: r, pool: p})
		}
	}
	slices.SortFunc(a.order, func(p, q *pool) int {
		if p.selects != q.selects {
			if p.selects {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(p.cfg.Priority, q.cfg.Priority), cmp.Compare(p.cfg.Name, q.cfg.Name))
	})
	slices.SortFunc(a.spans, func(s, t span) int { return s.First.Compare(t.First) })
}

// seed completes the cursors buildPool made afresh: it puts the addresses in use ahead of
// them on their heaps. And it carries the released addresses of the free sets it rebuilt
// over to the pools that hold them now, oldest first, so they stay last in line.
func (a *Allocator) seed(old map[string]*pool) {
	before := map[*freeSet]bool{}
	for _, op := range old {
		for _, fs := range op.free {
			if fs != nil {
				before[fs] = true
			}
		}
	}
	var fresh []*cursor
	for _, p := range a.live {
		for _, fs := range p.free {
			if fs == nil {
				continue
			}
			for _, c := range fs.cursors {
				if c.fresh {
					fresh = append(fresh, c)
				}
			}
		}
	}
	if len(fresh) > 0 {
		for x := range a.inUse {
			if c := a.cursorAt(x); c != nil && c.fresh {
				c.ahead.push(x)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(old)) {
		for f, ofs := range old[name].free {
			if ofs == nil || before[a.freeSetOf(name, f)] {
				continue // kept whole, queue included
			}
			for x := range ofs.released.all() {
				p := a.locate(x)
				// A free set kept whole cannot hold x: its ranges belonged to its pool alone.
				if p == nil || !p.allowsAddr(x) || before[p.free[f]] {
					continue
				}
				if c := p.free[f].cursorFor(x); c.fresh {
					c.ahead.push(x)
				}
				p.free[f].release(x)
			}
		}
	}
	for _, c := range fresh {
		c.fresh = false
	}
}

func (a *Allocator) freeSetOf(pool string, f int) *freeSet {
	if p := a.live[pool]; p != nil {
		return p.free[f]
	}
	return nil
}

func (a *Allocator) cursorAt(x netip.Addr) *cursor {
	p := a.locate(x)
	if p == nil {
		return nil
	}
	if fs := p.free[fam(config.FamilyOf(x))]; fs != nil {
		return fs.cursorFor(x)
	}
	return nil
}

// fits reports whether what s holds still fits the configuration.
func (a *Allocator) fits(s *service) bool {
	if s.pool.retired || !s.pool.admits(s.svcLabels, s.nsLabels) {
		return false
	}
	for _, x := range s.addrs() {
		if a.locate(x) != s.pool || !s.pool.allowsAddr(x) {
			return false
		}
	}
	return true
}

// recount counts the addresses in use per pool and family from scratch, and drops the
// retired pools nothing is held from any more.
func (a *Allocator) recount() {
	for _, p := range a.live {
		p.inUse = [2]int{}
	}
	for _, p := range a.retired {
		p.inUse = [2]int{}
	}
	for x, s := range a.inUse {
		s.pool.inUse[fam(config.FamilyOf(x))]++
	}
	for name, p := range a.retired {
		if p.idle() {
			delete(a.retired, name)
		}
	}
}
