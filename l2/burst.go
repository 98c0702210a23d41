package l2

import (
	"slices"
	"time"
)

// burstQueue schedules the repeats of the gratuitous announcement sent when an IP is
// taken on an interface. It holds plain data and takes the time as an argument.
type burstQueue map[pair]burstItem

type burstItem struct {
	left int       // repeats still to send
	next time.Time // when the next one is due
}

// add schedules n repeats of p, the first at first; it replaces what p had scheduled.
func (q burstQueue) add(p pair, n int, first time.Time) {
	if n <= 0 {
		delete(q, p)
		return
	}
	q[p] = burstItem{left: n, next: first}
}

// drop forgets p: it is no longer answered there.
func (q burstQueue) drop(p pair) { delete(q, p) }

// staleAfter is how late a repeat may be before the whole burst is dropped: a repeat that
// late means the process did not run (SIGSTOP, a paused VM), and while it was stopped the
// other nodes may have taken the IP; announcing it now would take it back.
const staleAfter = time.Second

// due returns the pairs whose repeat is due at now, sorted, and schedules their next
// repeat interval later (measured from when it was due, so a late loop does not stretch
// the burst). Bursts more than staleAfter late are dropped, unsent.
func (q burstQueue) due(now time.Time, interval time.Duration) []pair {
	var out []pair
	for p, it := range q {
		if it.next.After(now) {
			continue
		}
		if now.Sub(it.next) > staleAfter {
			delete(q, p)
			continue
		}
		out = append(out, p)
		if it.left--; it.left == 0 {
			delete(q, p)
			continue
		}
		it.next = it.next.Add(interval)
		q[p] = it
	}
	slices.SortFunc(out, comparePairs)
	return out
}

// next returns when the earliest repeat is due, false when nothing is scheduled.
func (q burstQueue) next() (time.Time, bool) {
	var (
		first time.Time
		ok    bool
	)
	for _, it := range q {
		if !ok || it.next.Before(first) {
			first, ok = it.next, true
		}
	}
	return first, ok
}
