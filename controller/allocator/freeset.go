package allocator

import (
	"net/netip"

	"github.com/berthlb/berth/config"
)

// defaultMaxReleased bounds the queue of released addresses of one family of one pool
// (a few MB at most). Without a bound an IPv6 pool, whose cursor never runs out, would remember
// every address ever released.
const defaultMaxReleased = 1 << 16

// freeSet hands out the free addresses of one family of one pool without ever listing
// them: a pool may be an IPv6 /64. Never-used addresses come first, in address order, from
// a cursor per range; then released ones, oldest release first, from a queue. So an address
// just released is the last to be reused (caches that still map it to the old Service get
// the most time to forget), and an allocation costs, amortised, the same whatever the
// pool holds.
//
// Addresses taken out of turn (requested or claimed IPs) ahead of a cursor go on that
// cursor's heap, and the cursor skips them when it gets there. Invariant: every address at
// or after a cursor that is in use or queued is on the cursor's heap; every address before
// it is in use, queued, avoided (.0/.255) or counted in forgotten.
//
// The queue is bounded: past maxReleased the oldest entry is dropped. A dropped address
// ahead of its cursor is still on the heap, and the cursor finds it free when it gets
// there; one behind its cursor is only counted (forgotten), and once the cursors are done
// next restarts them to find the forgotten, before the queue since they were released
// earlier. No address is ever lost.
type freeSet struct {
	avoidBuggy  bool
	cursors     []*cursor // one per range, sorted
	live        int       // cursors before live are done
	released    addrQueue
	maxReleased int
	forgotten   int
}

// cursor walks one range in address order.
type cursor struct {
	r     config.Range
	next  netip.Addr // the first address not passed yet, unless done
	done  bool       // every address of r has been passed
	ahead addrHeap
	// settled is true while next is known to be free and not queued: settle found it so,
	// and next can only become used through take, which moves the cursor on. It saves a
	// lookup in the queue's map, the slowest part of an allocation.
	settled bool
	// fresh marks a cursor SetConfig has just built, whose heap it still has to seed.
	fresh bool
}

func newCursor(r config.Range) *cursor { return &cursor{r: r, next: r.First, fresh: true} }

// passed reports whether the cursor has gone past x.
func (c *cursor) passed(x netip.Addr) bool { return c.done || x.Less(c.next) }

func (c *cursor) advance() {
	c.settled = false
	if c.next == c.r.Last {
		c.done = true
		c.ahead = nil
		return
	}
	c.next = c.next.Next()
}

// settle moves the cursor onto the first address it may hand out and reports whether
// there is one. Every heap entry is popped once, so the work is paid for by the takes that
// pushed them.
func (c *cursor) settle(s *freeSet, used map[netip.Addr]*service) bool {
	for !c.done {
		if m, ok := c.ahead.min(); ok && !c.next.Less(m) {
			c.ahead.pop()
			if m != c.next {
				continue // passed already
			}
			if _, u := used[m]; u || s.released.has(m) {
				c.advance()
				continue
			}
			// Dropped from the queue while ahead of the cursor: free after all.
		}
		if s.avoidBuggy && config.IsBuggyIPv4(c.next) {
			c.advance()
			continue
		}
		c.settled = true
		return true
	}
	return false
}

// cursorFor returns the cursor whose range holds x, or nil.
func (s *freeSet) cursorFor(x netip.Addr) *cursor {
	lo, hi := 0, len(s.cursors)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s.cursors[m].r.First.Compare(x) <= 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 || !s.cursors[lo-1].r.Contains(x) {
		return nil
	}
	return s.cursors[lo-1]
}

// next returns the address to hand out next, without taking it.
func (s *freeSet) next(used map[netip.Addr]*service) (netip.Addr, bool) {
	if x, ok := s.fromCursors(used); ok {
		return x, true
	}
	// The forgotten were released before anything still queued: they go first.
	if s.forgotten > 0 {
		s.restart(used)
		if x, ok := s.fromCursors(used); ok {
			return x, true
		}
	}
	for x, ok := s.released.front(); ok; x, ok = s.released.front() {
		if _, u := used[x]; !u {
			return x, true
		}
		// Never expected (take removes queued addresses); drop it rather than hand out
		// an address in use.
		s.released.remove(x)
	}
	return netip.Addr{}, false
}

func (s *freeSet) fromCursors(used map[netip.Addr]*service) (netip.Addr, bool) {
	for ; s.live < len(s.cursors); s.live++ {
		if c := s.cursors[s.live]; c.settle(s, used) {
			return c.next, true
		}
	}
	return netip.Addr{}, false
}

// take removes x from the free addresses; the caller has just marked it used.
func (s *freeSet) take(x netip.Addr, used map[netip.Addr]*service) {
	c := s.cursorFor(x)
	if c == nil || !c.settled || x != c.next {
		if s.released.remove(x) {
			return
		}
	}
	switch {
	case c == nil:
	case !c.done && x == c.next:
		c.advance()
		// Catch up with addresses claimed out of turn just ahead, so that the first
		// allocation after a restore does not pay for all of them.
		c.settle(s, used)
	case !c.passed(x):
		c.ahead.push(x)
	case s.forgotten > 0:
		// Behind the cursor and not queued: one of the forgotten.
		s.forgotten--
	}
}

// release makes x, which the caller has just marked unused (so it is not queued), free again.
func (s *freeSet) release(x netip.Addr) {
	s.released.pushBack(x)
	if s.released.len() <= s.maxReleased {
		return
	}
	old, _ := s.released.front()
	s.released.remove(old)
	if c := s.cursorFor(old); c != nil && c.passed(old) {
		s.forgotten++
	}
}

// restart walks every range again from its start, skipping what is in use or queued, to
// find the forgotten addresses. It runs only once the cursors are done, that is after at
// least as many allocations as the family has addresses.
func (s *freeSet) restart(used map[netip.Addr]*service) {
	for _, c := range s.cursors {
		c.next, c.done, c.settled, c.ahead = c.r.First, false, false, nil
	}
	s.live, s.forgotten = 0, 0
	for x := range used {
		if c := s.cursorFor(x); c != nil {
			c.ahead.push(x)
		}
	}
	for x := range s.released.all() {
		s.cursorFor(x).ahead.push(x)
	}
}
