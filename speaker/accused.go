package speaker

import (
	"slices"
	"sync"
	"time"
)

// Memberlist declares a suspected member dead only when the suspicion times out:
// 2 × log10(N) probe intervals, 324 ms at 12 nodes and 510 ms at 50, half of the L2
// failover time. Each failed probe of a member is an accusation, which every speaker hears
// within a round trip (membership.List.Accused). The speaker then probes the accused member
// itself, at once: when it does not answer this node either, the L2 election here passes it
// over (Input.Unreachable) and its runner-up takes its IPs a suspicion timeout sooner. A
// member that was only slow refutes the suspicion, is elected again, and announces its IPs
// anew (membership.Config.OnRefute, l2.Announcer.Reannounce), so that its announcement is
// the last one the clients see.

// accusations follows the members accused of having failed and what this node's probe of
// each found. The mutex also orders the calls of set, so the newest list is the last set.
type accusations struct {
	probe func(name string) bool // true: the member answered
	set   func(unreachable []string)

	mu     sync.Mutex
	probed map[string]probeResult
}

// probeResult is this node's probe of an accused member, for the accusation made at at.
type probeResult struct {
	at     time.Time
	failed bool
}

func newAccusations(probe func(string) bool, set func([]string)) *accusations {
	return &accusations{probe: probe, set: set, probed: map[string]probeResult{}}
}

// update takes the members accused now, with when each was last accused: members no
// longer accused are forgotten (refuted, or dead and gone from the members); each new
// accusation is checked with a probe in the background, and until that probe answers a
// member keeps what the last one found.
func (a *accusations) update(accused map[string]time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	changed := false
	for name, p := range a.probed {
		if _, ok := accused[name]; !ok {
			delete(a.probed, name)
			changed = changed || p.failed
		}
	}
	for name, at := range accused {
		p, ok := a.probed[name]
		if ok && !at.After(p.at) {
			continue
		}
		a.probed[name] = probeResult{at: at, failed: p.failed}
		go a.check(name, at)
	}
	if changed {
		a.set(a.unreachableLocked())
	}
}

// check probes name for the accusation made at at, and records what it found unless a
// newer accusation or none replaced it meanwhile.
func (a *accusations) check(name string, at time.Time) {
	failed := !a.probe(name)
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.probed[name]
	if !ok || !p.at.Equal(at) || p.failed == failed {
		return
	}
	a.probed[name] = probeResult{at: at, failed: failed}
	a.set(a.unreachableLocked())
}

func (a *accusations) unreachableLocked() []string {
	var out []string
	for name, p := range a.probed {
		if p.failed {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
