//go:build privileged && timing

package membership

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthlb/berth/lab/netns/netnstest"
)

// TestDeathDetectionSLO times how long three members take to drop a fourth that went
// silent, as SIGKILL leaves it. Bound: each sample ≤ 2 s, median ≤ 1 s.
func TestDeathDetectionSLO(t *testing.T) {
	if !netnstest.Reexec(t) {
		return
	}
	key := randomKey(t)
	var lists []testList
	for i := range 3 {
		lists = append(lists, startList(t, fmt.Sprintf("n%d", i), fmt.Sprintf("127.0.0.%d:0", i+1), key, Meta{DecisionVersion: 1}, ""))
	}
	if _, err := lists[0].Join([]netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}); err != nil {
		t.Fatal(err)
	}
	measureDeathDetection(t, key, lists)
}

// measureDeathDetection joins a victim to observers, shuts it down without Leave (what
// SIGKILL leaves behind: silent sockets, no leave broadcast), and times until no observer
// lists it, several times.
func measureDeathDetection(t *testing.T, key []byte, observers []testList) {
	const samples = 5
	var times []time.Duration
	for i := range samples {
		name := fmt.Sprintf("victim-%d", i)
		v := startList(t, name, fmt.Sprintf("127.0.1.%d:0", i+1), key, Meta{}, "")
		if _, err := v.Join([]netip.Addr{netip.MustParseAddr("127.0.0.1")}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, name+" seen by all", func() (string, bool) {
			for _, o := range observers {
				if ns := names(o.Members()); !slices.Contains(ns, name) {
					return fmt.Sprintf("%s sees %v", o.name, ns), false
				}
			}
			return "", true
		})
		start := time.Now()
		if err := v.Shutdown(); err != nil {
			t.Fatal(err)
		}
		dropped(t, 10*time.Second, name, observers)
		times = append(times, time.Since(start))
	}
	sorted := slices.Sorted(slices.Values(times))
	p50, maxT := sorted[len(sorted)/2], sorted[len(sorted)-1]
	var s []string
	for _, d := range times {
		s = append(s, d.Round(time.Millisecond).String())
	}
	t.Logf("death detection, %d nodes, %d samples: %s; p50 %v, max %v",
		len(observers)+1, samples, strings.Join(s, " "), p50.Round(time.Millisecond), maxT.Round(time.Millisecond))
	for i, d := range times {
		if d > 2*time.Second {
			t.Errorf("sample %d: %v to detect a killed member, want ≤ 2s", i, d)
		}
	}
	if p50 > time.Second {
		t.Errorf("median detection %v, want ≤ 1s", p50)
	}
}
