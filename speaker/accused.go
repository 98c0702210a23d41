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
	// every is the pause between two probes of a member that stays unreachable and accused:
	// one that was only slow is elected again as soon as it answers, one that died stays
	// passed over until memberlist's own death reaches the decisions, whichever comes
	// first after the accusation ended.
	every time.Duration

	mu     sync.Mutex
	probed map[string]probeResult
}

// probeResult is this node's probe of an accused member, for the accusation made at at.
type probeResult struct {
	at     time.Time
	failed bool
}

func newAccusations(probe func(string) bool, set func([]string), every time.Duration) *accusations {
	return &accusations{probe: probe, set: set, every: every, probed: map[string]probeResult{}}
}

// update takes the members accused now, with when each was last accused: members no
// longer accused (the accusation is old) are forgotten; each new accusation is checked
// with a probe in the background, and until that probe answers a member keeps what the
// last one found.
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
// newer accusation or none replaced it meanwhile; while the member does not answer it
// probes again, every a.every.
func (a *accusations) check(name string, at time.Time) {
	for {
		failed := !a.probe(name)
		a.mu.Lock()
		p, ok := a.probed[name]
		if !ok || !p.at.Equal(at) {
			a.mu.Unlock()
			return
		}
		if p.failed != failed {
			a.probed[name] = probeResult{at: at, failed: failed}
			a.set(a.unreachableLocked())
		}
		a.mu.Unlock()
		if !failed {
			return
		}
		time.Sleep(a.every)
	}
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
