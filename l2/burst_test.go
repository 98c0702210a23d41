package l2

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBurstQueue(t *testing.T) {
	const every = 250 * time.Millisecond
	t0 := time.Unix(1000, 0)
	a := pair{"eth0", addr("198.18.2.200")}
	b := pair{"eth1", addr("2001:db8:18:2::1:a")}
	q := burstQueue{}
	if _, ok := q.next(); ok {
		t.Fatal("empty queue has a next repeat")
	}
	q.add(a, 3, t0.Add(every))
	q.add(b, 2, t0.Add(2*every))
	q.add(pair{"eth2", addr("198.18.2.201")}, 0, t0) // Burst 0: nothing

	type step struct {
		at   time.Duration
		due  []pair
		next time.Duration // -1: nothing left
	}
	steps := []step{
		{0, nil, every},
		{every, []pair{a}, 2 * every},
		{2 * every, []pair{a, b}, 3 * every},
		// A late loop: the next repeat stays on the original grid.
		{3*every + 100*time.Millisecond, []pair{a, b}, -1},
		{10 * every, nil, -1},
	}
	for i, s := range steps {
		got := q.due(t0.Add(s.at), every)
		if d := cmp.Diff(s.due, got, ipCmp); d != "" {
			t.Errorf("step %d: due(+%v) (-want +got):\n%s", i, s.at, d)
		}
		next, ok := q.next()
		switch {
		case s.next < 0 && ok:
			t.Errorf("step %d: next = +%v, want nothing", i, next.Sub(t0))
		case s.next >= 0 && (!ok || !next.Equal(t0.Add(s.next))):
			t.Errorf("step %d: next = +%v (%t), want +%v", i, next.Sub(t0), ok, s.next)
		}
	}

	q.add(a, 3, t0.Add(every))
	q.drop(a)
	if got := q.due(t0.Add(time.Hour), every); len(got) != 0 {
		t.Errorf("a dropped pair is still due: %v", got)
	}
}

func TestBurstQueueDropsStale(t *testing.T) {
	q := burstQueue{}
	start := time.Unix(1000, 0)
	p := pair{"eth1", netip.MustParseAddr("198.18.2.193")}
	q.add(p, 3, start)
	if got := q.due(start.Add(staleAfter+time.Millisecond), 250*time.Millisecond); len(got) != 0 {
		t.Errorf("a burst %v late was sent: %v", staleAfter, got)
	}
	if _, ok := q.next(); ok {
		t.Errorf("a stale burst stays scheduled")
	}
}
