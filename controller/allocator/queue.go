package allocator

import (
	"iter"
	"net/netip"
)

// addrQueue is an ordered set of addresses: first in, first out, and any member can be
// removed at once. It holds released addresses, so the oldest release is reused first,
// and an address taken out of turn (a requested IP) leaves no live entry behind.
//
// A ring of entries keeps the order; a map from address to the sequence number of its
// live entry keeps membership. Removing an address only deletes it from the map: its
// entry goes stale and is skipped or compacted away later. (A doubly linked list in a map
// took twice the map operations, the dominant cost of a release.)
type addrQueue struct {
	live map[netip.Addr]uint64
	ring []queued // from head on, oldest first; stale entries included
	head int
	seq  uint64
}

type queued struct {
	addr netip.Addr
	seq  uint64
}

func (q *addrQueue) len() int { return len(q.live) }

func (q *addrQueue) has(x netip.Addr) bool {
	_, ok := q.live[x]
	return ok
}

// front returns the oldest member.
func (q *addrQueue) front() (netip.Addr, bool) {
	for ; q.head < len(q.ring); q.head++ {
		if e := q.ring[q.head]; q.live[e.addr] == e.seq {
			return e.addr, true
		}
	}
	return netip.Addr{}, false
}

// pushBack queues x last; x must not be queued already.
func (q *addrQueue) pushBack(x netip.Addr) {
	if q.live == nil {
		q.live = make(map[netip.Addr]uint64)
	}
	q.compact()
	q.seq++
	q.live[x] = q.seq
	q.ring = append(q.ring, queued{x, q.seq})
}

// remove takes x out of the queue and reports whether it was there.
func (q *addrQueue) remove(x netip.Addr) bool {
	if _, ok := q.live[x]; !ok {
		return false
	}
	delete(q.live, x)
	return true
}

// compact drops the entries before head and the stale ones once they outnumber the live
// ones, so the ring stays within about twice the queue's length; the copying is paid for
// by the pops and removals that made them.
func (q *addrQueue) compact() {
	if len(q.ring) <= 2*len(q.live)+16 {
		return
	}
	n := 0
	for _, e := range q.ring[q.head:] {
		if q.live[e.addr] == e.seq {
			q.ring[n] = e
			n++
		}
	}
	clear(q.ring[n:])
	q.ring, q.head = q.ring[:n], 0
}

// all yields the queue's members, oldest first.
func (q *addrQueue) all() iter.Seq[netip.Addr] {
	return func(yield func(netip.Addr) bool) {
		for _, e := range q.ring[q.head:] {
			if q.live[e.addr] == e.seq && !yield(e.addr) {
				return
			}
		}
	}
}

// addrHeap is a min-heap of addresses. (container/heap would box every address.)
type addrHeap []netip.Addr

func (h *addrHeap) push(x netip.Addr) {
	*h = append(*h, x)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s[i].Less(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h addrHeap) min() (netip.Addr, bool) {
	if len(h) == 0 {
		return netip.Addr{}, false
	}
	return h[0], true
}

func (h *addrHeap) pop() {
	s := *h
	n := len(s) - 1
	if n == 0 {
		// Let a heap that held a whole restore go.
		*h = nil
		return
	}
	s[0] = s[n]
	s = s[:n]
	for i := 0; ; {
		m := 2*i + 1
		if m >= n {
			break
		}
		if r := m + 1; r < n && s[r].Less(s[m]) {
			m = r
		}
		if !s[m].Less(s[i]) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
}
