package allocator

import (
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net/netip"
	"slices"

	"github.com/berthlb/berth/config"
)

// checkInvariants checks the allocator's internal bookkeeping against itself. For ranges
// of up to maxWalk addresses it also walks every address to check that none is lost:
// each one is in use, queued, avoided, ahead of its cursor, or counted as forgotten.
func checkInvariants(a *Allocator) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	registered := func(p *pool) bool {
		if p.retired {
			return a.retired[p.cfg.Name] == p
		}
		return a.live[p.cfg.Name] == p
	}
	holders := func(x netip.Addr) []*service {
		if hs := a.sharers[x]; hs != nil {
			return hs
		}
		if s, ok := a.inUse[x]; ok {
			return []*service{s}
		}
		return nil
	}

	for key, s := range a.services {
		if s.key != key || !s.ips[0].IsValid() || s.pool == nil || !registered(s.pool) {
			bad("service %s: key %s, addresses %v, pool %v registered %v", key, s.key, s.ips, s.pool != nil, s.pool != nil && registered(s.pool))
			continue
		}
		if s.ips[1].IsValid() && config.FamilyOf(s.ips[0]) == config.FamilyOf(s.ips[1]) {
			bad("service %s holds two %s addresses", key, config.FamilyOf(s.ips[0]))
		}
		for _, x := range s.addrs() {
			if !slices.Contains(holders(x), s) {
				bad("service %s holds %s, which does not list it as a holder", key, x)
			}
		}
	}

	counts := map[*pool]*[2]int{}
	for x, first := range a.inUse {
		hs := holders(x)
		if hs[0] != first || (a.sharers[x] != nil && len(hs) < 2) {
			bad("%s: first holder %s, %d sharers", x, first.key, len(a.sharers[x]))
		}
		for i, h := range hs {
			if a.services[h.key] != h || !h.holds(x) {
				bad("%s: holder %s does not hold it", x, h.key)
			}
			if h.pool != first.pool {
				bad("%s: holders %s and %s in pools %q and %q", x, first.key, h.key, first.pool.cfg.Name, h.pool.cfg.Name)
			}
			for _, o := range hs[i+1:] {
				if why := conflict(h.share, o.share); why != "" {
					bad("%s: held by %s and %s, which may not share: %s", x, h.key, o.key, why)
				}
			}
		}
		if k := first.share.sharingKey(); k != "" && !slices.Contains(a.sharing[k], x) {
			bad("%s: missing from the index of sharing key %q", x, k)
		}
		if counts[first.pool] == nil {
			counts[first.pool] = new([2]int)
		}
		counts[first.pool][fam(config.FamilyOf(x))]++
	}
	for x := range a.sharers {
		if _, ok := a.inUse[x]; !ok {
			bad("%s: sharers but not in use", x)
		}
	}
	for k, xs := range a.sharing {
		for i, x := range xs {
			if s, ok := a.inUse[x]; !ok || s.share.sharingKey() != k || slices.Contains(xs[i+1:], x) {
				bad("sharing key %q lists %s, held under key %q", k, x, s.share.sharingKey())
			}
		}
	}

	for _, p := range append(slices.Collect(maps.Values(a.live)), slices.Collect(maps.Values(a.retired))...) {
		want := [2]int{}
		if c := counts[p]; c != nil {
			want = *c
		}
		if p.inUse != want {
			bad("pool %q counts %v in use, recount %v", p.cfg.Name, p.inUse, want)
		}
		if p.retired && p.idle() {
			bad("retired pool %q is idle but kept", p.cfg.Name)
		}
		if !p.retired {
			errs = append(errs, checkFreeSets(a, p)...)
		}
	}
	for p := range counts {
		if !registered(p) {
			bad("pool %q holds addresses but is not registered", p.cfg.Name)
		}
	}
	for i, sp := range a.spans {
		if a.live[sp.pool.cfg.Name] != sp.pool || i > 0 && a.spans[i-1].Overlaps(sp.Range) {
			bad("span %s of pool %q", sp.Range, sp.pool.cfg.Name)
		}
	}
	return errors.Join(errs...)
}

// maxWalk bounds the ranges checkFreeSets walks address by address.
const maxWalk = 1 << 12

func checkFreeSets(a *Allocator, p *pool) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("pool %q: "+format, append([]any{p.cfg.Name}, args...)...))
	}
	for f, fs := range p.free {
		var rs []config.Range
		for _, r := range p.cfg.Ranges {
			if fam(r.Family()) == f {
				rs = append(rs, r)
			}
		}
		if fs == nil {
			if len(rs) > 0 {
				bad("no free set for %s", families[f])
			}
			continue
		}
		if !slices.EqualFunc(fs.cursors, rs, func(c *cursor, r config.Range) bool { return c.r == r }) {
			bad("%s cursors do not match the ranges %v", families[f], rs)
		}
		if fs.avoidBuggy != p.cfg.AvoidBuggyIPs {
			bad("free set avoidBuggy %v", fs.avoidBuggy)
		}
		n := 0
		for x := range fs.released.all() {
			n++
			if _, used := a.inUse[x]; used || fs.cursorFor(x) == nil || !p.allowsAddr(x) {
				bad("queued %s is in use, outside the pool or avoided", x)
			}
		}
		if n != fs.released.len() || n > fs.maxReleased {
			bad("queue walks %d of %d entries (max %d)", n, fs.released.len(), fs.maxReleased)
		}
		if err := checkQueue(&fs.released, fs.maxReleased); err != nil {
			bad("%v", err)
		}
		forgotten := 0
		for _, c := range fs.cursors {
			if c.fresh {
				bad("cursor %s still fresh", c.r)
			}
			if _, used := a.inUse[c.next]; c.settled && (c.done || used || fs.released.has(c.next)) {
				bad("cursor %s settled on %s (done %v), which is in use or queued", c.r, c.next, c.done)
			}
			ahead := map[netip.Addr]bool{}
			for _, x := range c.ahead {
				ahead[x] = true
			}
			tracked := func(x netip.Addr) bool {
				_, used := a.inUse[x]
				return used || fs.released.has(x)
			}
			for x := range a.inUse {
				if c.r.Contains(x) && !c.passed(x) && !ahead[x] {
					bad("%s in use ahead of cursor %s at %s, not on its heap", x, c.r, c.next)
				}
			}
			for x := range fs.released.all() {
				if c.r.Contains(x) && !c.passed(x) && !ahead[x] {
					bad("queued %s ahead of cursor %s at %s, not on its heap", x, c.r, c.next)
				}
			}
			if c.r.Size().Cmp(big.NewInt(maxWalk)) > 0 {
				forgotten = -1
				continue
			}
			for x := c.r.First; ; x = x.Next() {
				if c.passed(x) && p.allowsAddr(x) && !tracked(x) && forgotten >= 0 {
					forgotten++
				}
				if x == c.r.Last {
					break
				}
			}
		}
		if forgotten >= 0 && forgotten != fs.forgotten {
			bad("%s: %d free addresses behind the cursors are not queued, forgotten counts %d", families[f], forgotten, fs.forgotten)
		}
	}
	return errs
}

// checkQueue checks that a queue's ring stays within twice the longest the queue has been.
func checkQueue(q *addrQueue, longest int) error {
	if len(q.ring) > 2*longest+17 {
		return fmt.Errorf("queue of %d (at most %d) keeps a ring of %d entries", q.len(), longest, len(q.ring))
	}
	return nil
}
