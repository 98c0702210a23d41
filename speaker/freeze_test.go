package speaker

import (
	"testing"
	"time"
)

func TestFreezeGuard(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	g := newFreezeGuard(t0, 400*time.Millisecond, 2*time.Second)
	if g.silent(at(5000)) {
		t.Error("silent before start: the speaker's start-up is no freeze")
	}
	g.start(at(0))
	steps := []struct {
		what   string
		ticks  []int // ms
		check  int   // ms, after the ticks
		silent bool
		froze  bool // at the last tick
	}{
		{"running, ticks on time", []int{100}, 150, false, false},
		{"a late tick below the threshold", []int{450}, 460, false, false},
		{"woke: a reader runs before any tick", nil, 1500, true, false},
		{"the first tick after waking starts the hold", []int{1510}, 1520, true, true},
		{"inside the hold", []int{1610, 1900, 2200}, 2250, true, false},
		{"the hold is over", []int{2500, 2800, 3100, 3400}, 3510, false, false},
		{"the ticks stall: silent before the next tick", nil, 3800, true, false},
	}
	for _, s := range steps {
		for i, ms := range s.ticks {
			last := time.Duration(g.last.Load())
			gap, froze := g.tick(at(ms))
			if want := s.froze && i == len(s.ticks)-1; froze != want {
				t.Errorf("%s: tick at %d ms after %v: froze %v, want %v", s.what, ms, gap, froze, want)
			}
			if want := time.Duration(ms)*time.Millisecond - last; gap != want {
				t.Errorf("%s: gap %v, want %v", s.what, gap, want)
			}
		}
		if got := g.silent(at(s.check)); got != s.silent {
			t.Errorf("%s: silent at %d ms = %v, want %v", s.what, s.check, got, s.silent)
		}
	}
	if got, want := g.heldUntil(), at(1510+2000); !got.Equal(want) {
		t.Errorf("held until %v, want %v", got.Sub(t0), want.Sub(t0))
	}
	g.stop()
	if g.silent(at(10000)) {
		t.Error("silent after stop: a speaker shutting down keeps answering until the others took over")
	}
}

// Caches take a while to sync before the watch starts: its first tick is no freeze.
func TestFreezeGuardLateStart(t *testing.T) {
	t0 := time.Now()
	g := newFreezeGuard(t0, 400*time.Millisecond, 2*time.Second)
	g.start(t0.Add(5 * time.Second))
	if _, froze := g.tick(t0.Add(5*time.Second + 100*time.Millisecond)); froze {
		t.Error("the first tick after a late start counted as a freeze")
	}
	if g.silent(t0.Add(5*time.Second + 150*time.Millisecond)) {
		t.Error("silent right after a late start")
	}
}
