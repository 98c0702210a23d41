package speaker

import (
	"context"
	"time"
)

// pacer spaces an executor's passes. Each pass reconciles the whole desired state, so its
// cost grows with the number of Services: at 10,000, back-to-back passes while Services
// are being allocated would keep a core busy and starve the apiserver beside them. After a
// pass that took d, the next starts no sooner than ratio×d after it ended. A change after
// a quiet spell goes through at once; a stream of changes is taken in batches that grow
// with the pass's cost, and the executor's share of a core stays under 1/(1+ratio).
type pacer struct {
	ratio int

	ended time.Time     // when the last pass ended; zero before the first
	took  time.Duration // how long it took
}

// executorPaceRatio bounds an executor to a quarter of a core while Services stream in.
const executorPaceRatio = 3

// next is when the next pass may start.
func (p *pacer) next() time.Time {
	if p.ended.IsZero() {
		return time.Time{}
	}
	return p.ended.Add(time.Duration(p.ratio) * p.took)
}

// wait blocks until the next pass may start; false when ctx ended first.
func (p *pacer) wait(ctx context.Context) bool {
	d := time.Until(p.next())
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// done records a pass that started at start and ends now.
func (p *pacer) done(start time.Time) {
	p.ended = time.Now()
	p.took = p.ended.Sub(start)
}
