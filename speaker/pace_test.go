package speaker

import (
	"context"
	"testing"
	"time"
)

func TestPacerNext(t *testing.T) {
	end := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		p    pacer
		want time.Time
	}{
		{"before the first pass: at once", pacer{ratio: 3}, time.Time{}},
		{"a cheap pass: a short pause", pacer{ratio: 3, ended: end, took: time.Millisecond}, end.Add(3 * time.Millisecond)},
		{"a costly pass: ratio times its cost", pacer{ratio: 3, ended: end, took: 50 * time.Millisecond}, end.Add(150 * time.Millisecond)},
	} {
		if got := tc.p.next(); !got.Equal(tc.want) {
			t.Errorf("%s: next = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPacerWait(t *testing.T) {
	p := pacer{ratio: 3}
	p.done(time.Now().Add(-40 * time.Millisecond)) // a 40 ms pass: the next waits 120 ms
	begin := time.Now()
	if !p.wait(t.Context()) {
		t.Fatal("wait = false with a live context")
	}
	if waited := time.Since(begin); waited < 110*time.Millisecond {
		t.Errorf("waited %v after a 40 ms pass, want ≥ 120 ms", waited)
	}
	// A quiet spell longer than the pause: the next pass starts at once.
	p.ended = time.Now().Add(-time.Second)
	begin = time.Now()
	p.wait(t.Context())
	if waited := time.Since(begin); waited > 20*time.Millisecond {
		t.Errorf("waited %v after a quiet spell, want none", waited)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	p.done(time.Now().Add(-time.Second))
	if p.wait(ctx) {
		t.Error("wait = true with an ended context")
	}
}
