package echo

import (
	"strconv"
	"testing"
	"time"
)

func TestProbeLog(t *testing.T) {
	base := time.Unix(1000, 0)
	at := func(ms int) string { return itoa(base.Add(time.Duration(ms) * time.Millisecond).UnixNano()) }
	log := at(30) + " web-b\nnoise\n" + at(10) + " web-a\n" + at(20) + " web-a\n" + at(500) + " web-b\n"
	got := ParseProbeLog(log)
	if len(got) != 4 || got[0].Pod != "web-a" || got[3].Pod != "web-b" {
		t.Fatalf("ParseProbeLog = %v, want 4 replies in time order", got)
	}
	for _, tc := range []struct {
		from, to int
		want     time.Duration
	}{
		{0, 600, 470 * time.Millisecond},   // 30 → 500
		{0, 100, 70 * time.Millisecond},    // 30 → the end of the window
		{600, 700, 100 * time.Millisecond}, // no reply at all
	} {
		if got := LongestSilence(got, base.Add(time.Duration(tc.from)*time.Millisecond), base.Add(time.Duration(tc.to)*time.Millisecond)); got != tc.want {
			t.Errorf("LongestSilence(%d..%d ms) = %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
