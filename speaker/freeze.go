package speaker

import (
	"sync/atomic"
	"time"
)

// freezeGuard tells when this process may have been frozen (SIGSTOP, a paused VM, a
// stalled host) long enough for the other nodes to take its L2 IPs. A ticker calls tick;
// the L2 socket readers call silent for every packet. Both work on the monotonic clock,
// which runs on through a freeze.
//
// silent needs no tick to see a freeze: a reader that runs first after waking finds the
// last tick too old. tick stores the hold before the tick time, so a reader that sees the
// new tick also sees the hold.
type freezeGuard struct {
	epoch           time.Time
	threshold, hold time.Duration
	running         atomic.Bool  // between start and stop: only a ticking guard can tell
	last            atomic.Int64 // the latest tick, in nanoseconds since epoch
	until           atomic.Int64 // silent until then, in nanoseconds since epoch
}

func newFreezeGuard(now time.Time, threshold, hold time.Duration) *freezeGuard {
	return &freezeGuard{epoch: now, threshold: threshold, hold: hold}
}

// start begins the watch at now: the time before it (caches syncing) is no freeze.
func (g *freezeGuard) start(now time.Time) {
	g.last.Store(int64(now.Sub(g.epoch)))
	g.running.Store(true)
}

// stop ends the watch: a speaker shutting down keeps answering until it has left
// memberlist and the others took over (cmd/berth-speaker), with nothing ticking.
func (g *freezeGuard) stop() { g.running.Store(false) }

// tick records that the process ran at now. It returns the time since the previous tick
// and whether that gap was a freeze, which starts a hold.
func (g *freezeGuard) tick(now time.Time) (gap time.Duration, froze bool) {
	n := int64(now.Sub(g.epoch))
	gap = time.Duration(n - g.last.Load())
	if froze = gap >= g.threshold; froze {
		g.until.Store(n + int64(g.hold))
	}
	g.last.Store(n)
	return gap, froze
}

// silent reports whether L2 must stay silent at now: a freeze is under way or just ended
// (no tick for threshold), or its hold has not ended. Before start and after stop, never.
func (g *freezeGuard) silent(now time.Time) bool {
	if !g.running.Load() {
		return false
	}
	n := int64(now.Sub(g.epoch))
	return n-g.last.Load() >= int64(g.threshold) || n < g.until.Load()
}

// heldUntil is when the current hold ends (the zero time when none was ever started).
func (g *freezeGuard) heldUntil() time.Time {
	u := g.until.Load()
	if u == 0 {
		return time.Time{}
	}
	return g.epoch.Add(time.Duration(u))
}
