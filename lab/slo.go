package lab

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// SLO prints a timing goal's samples (when few), p50, p99 and max, and checks CI's rule
// for a noisy 2-core machine: each sample ≤ 2× goal and the median ≤ goal (`make bench`,
// run alone, judges p99).
func SLO(t testing.TB, what string, samples []time.Duration, goal time.Duration) {
	t.Helper()
	if len(samples) == 0 {
		t.Errorf("%s: no samples", what)
		return
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	p50, p99, worst := s[len(s)/2], s[min(len(s)-1, len(s)*99/100)], s[len(s)-1]
	shown := ""
	if len(samples) <= 10 {
		shown = fmt.Sprintf("samples %v; ", samples)
	}
	t.Logf("%s: %sp50 %v p99 %v max %v; bound: each ≤ %v, median ≤ %v", what, shown, p50, p99, worst, 2*goal, goal)
	if worst > 2*goal || p50 > goal {
		t.Errorf("%s: p50 %v, max %v; want median ≤ %v and each ≤ %v", what, p50, worst, goal, 2*goal)
	}
}
