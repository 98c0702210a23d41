package speaker

import (
	"slices"
	"testing"
	"time"
)

// TestAccusations: each accusation of a member is checked with one probe; a member is
// unreachable while its latest probe failed and it stays accused.
func TestAccusations(t *testing.T) {
	answers := map[string]chan bool{"b": make(chan bool), "c": make(chan bool), "d": make(chan bool)}
	probed := make(chan string, 10)
	sets := make(chan []string, 10)
	a := newAccusations(func(name string) bool {
		probed <- name
		return <-answers[name]
	}, func(u []string) { sets <- u }, time.Hour) // no second probe within the test
	next := func(what string) []string {
		t.Helper()
		select {
		case u := <-sets:
			return u
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no unreachable set within 5 s", what)
			return nil
		}
	}
	probedNow := func(want ...string) {
		t.Helper()
		var got []string
		for range want {
			select {
			case name := <-probed:
				got = append(got, name)
			case <-time.After(5 * time.Second):
				t.Fatalf("probed %v, want %v", got, want)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("probed %v, want %v", got, want)
		}
	}
	t0 := time.Now()
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	a.update(map[string]time.Time{"b": at(0), "c": at(0)})
	probedNow("b", "c")
	a.update(map[string]time.Time{"b": at(0), "c": at(0)}) // the same accusations: no second probe
	answers["b"] <- true
	answers["c"] <- false
	if got := next("c fails the probe"); !slices.Equal(got, []string{"c"}) {
		t.Errorf("unreachable = %v, want [c]", got)
	}
	a.update(map[string]time.Time{"b": at(0), "c": at(0), "d": at(1)})
	probedNow("d")
	answers["d"] <- false
	if got := next("d fails the probe"); !slices.Equal(got, []string{"c", "d"}) {
		t.Errorf("unreachable = %v, want [c d]", got)
	}
	a.update(map[string]time.Time{"d": at(1)}) // c refuted or died; b was never unreachable
	if got := next("c no longer accused"); !slices.Equal(got, []string{"d"}) {
		t.Errorf("unreachable = %v, want [d]", got)
	}

	// A new accusation probes again: b, which answered before, now fails; d, which
	// failed, now answers (it was only slow).
	a.update(map[string]time.Time{"b": at(2), "d": at(2)})
	probedNow("b", "d")
	answers["b"] <- false
	if got := next("b fails its second probe"); !slices.Equal(got, []string{"b", "d"}) {
		t.Errorf("unreachable = %v, want [b d]", got)
	}
	answers["d"] <- true
	if got := next("d answers its second probe"); !slices.Equal(got, []string{"b"}) {
		t.Errorf("unreachable = %v, want [b]", got)
	}

	// A probe that ends after its accusation was dropped changes nothing.
	a.update(map[string]time.Time{"b": at(2), "c": at(3)})
	probedNow("c")
	a.update(map[string]time.Time{"b": at(2)})
	answers["c"] <- false
	a.update(nil)
	if got := next("b no longer accused"); len(got) != 0 {
		t.Errorf("unreachable = %v, want none", got)
	}
	select {
	case u := <-sets:
		t.Errorf("unexpected unreachable set %v", u)
	case name := <-probed:
		t.Errorf("unexpected probe of %s", name)
	default:
	}
}

// TestAccusationsProbeAgain: a member that does not answer is probed again while accused,
// and is reachable again as soon as it answers.
func TestAccusationsProbeAgain(t *testing.T) {
	answers := make(chan bool)
	sets := make(chan []string, 10)
	a := newAccusations(func(string) bool { return <-answers }, func(u []string) { sets <- u }, time.Millisecond)
	a.update(map[string]time.Time{"b": time.Now()})
	answers <- false
	select {
	case u := <-sets:
		if !slices.Equal(u, []string{"b"}) {
			t.Fatalf("unreachable = %v, want [b]", u)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b not unreachable within 5 s")
	}
	answers <- false // the second probe
	answers <- true  // the third: b was only slow
	select {
	case u := <-sets:
		if len(u) != 0 {
			t.Errorf("unreachable = %v, want none once b answered", u)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b still unreachable 5 s after it answered")
	}
}
