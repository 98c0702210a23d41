package l2

import (
	"testing"
	"time"
)

func TestConflictLimiter(t *testing.T) {
	l := newConflictLimiter(10 * time.Second)
	t0 := time.Unix(1000, 0)
	a, b := addr("198.18.2.200"), addr("2001:db8:18:2::1:a")
	steps := []struct {
		ip    string
		at    time.Duration
		allow bool
	}{
		{"a", 0, true},
		{"a", time.Second, false},
		{"b", time.Second, true}, // per IP
		{"a", 9999 * time.Millisecond, false},
		{"a", 10 * time.Second, true},
		{"b", 10 * time.Second, false},
		{"b", 11 * time.Second, true},
	}
	for i, s := range steps {
		ip := a
		if s.ip == "b" {
			ip = b
		}
		if got := l.allow(ip, t0.Add(s.at)); got != s.allow {
			t.Errorf("step %d: allow(%s, +%v) = %t, want %t", i, s.ip, s.at, got, s.allow)
		}
	}
}

func TestConflictLimiterPrunes(t *testing.T) {
	l := newConflictLimiter(time.Second)
	t0 := time.Unix(1000, 0)
	base := addr("2001:db8::")
	ip := base
	for range limiterPrune {
		ip = ip.Next()
		l.allow(ip, t0)
	}
	l.allow(base, t0.Add(2*time.Second))
	if len(l.last) != 1 {
		t.Errorf("after expiry the limiter keeps %d IPs, want 1", len(l.last))
	}
}
