package membership

import (
	"bytes"
	"maps"
	"slices"
	"sync"
	"time"
)

// memberlist does not tell whom it suspects: the Nodes that Members returns stay
// StateAlive until declared dead (memberlist keeps the state in a field it does not
// export), and no event tells of a suspicion. What it does tell is its log line "Suspect X
// has failed, no acks received", when this node's own probe of X went unanswered. The
// List records that accusation and sends it at once, as a user message (encrypted like all
// memberlist traffic), to every other live member, which records it too: within a round
// trip everyone knows, where memberlist's own suspect message spreads by gossip.

// accusationMemory is how long an accusation stands: longer than memberlist's suspicion
// timeout, 2 × log10(N) probe intervals (0.9 s at 1,000 nodes with the default timings),
// after which the member was declared dead (and is no longer a member) or refuted it.
const accusationMemory = 2 * time.Second

// accusationPrefix starts berth's accusation message; the accused member's name follows.
var accusationPrefix = []byte("berth-accuse\x00")

func encodeAccusation(name string) []byte { return append(slices.Clip(accusationPrefix), name...) }

func decodeAccusation(b []byte) (string, bool) {
	name, ok := bytes.CutPrefix(b, accusationPrefix)
	if !ok || len(name) == 0 {
		return "", false
	}
	return string(name), true
}

// accusations are the members accused recently: by this node's probes (mine) or by any
// node's (all), with when.
type accusations struct {
	mu        sync.Mutex
	mine, all map[string]time.Time
}

func newAccusations() *accusations {
	return &accusations{mine: map[string]time.Time{}, all: map[string]time.Time{}}
}

func (a *accusations) record(name string, mine bool, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.all[name] = now
	if mine {
		a.mine[name] = now
	}
}

// standing returns the accusations made within accusationMemory of now, mine only or
// all, with when each member was last accused, and forgets older ones.
func (a *accusations) standing(now time.Time, mine bool) map[string]time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range []map[string]time.Time{a.mine, a.all} {
		for name, at := range m {
			if now.Sub(at) > accusationMemory {
				delete(m, name)
			}
		}
	}
	from := a.all
	if mine {
		from = a.mine
	}
	return maps.Clone(from)
}

// accuse records this node's failed probe of name and tells every other live member.
// It runs on its own goroutine, fed by the log bridge.
func (l *List) accuse(name string) {
	l.accused.record(name, true, time.Now())
	msg := encodeAccusation(name)
	for _, n := range l.ml.Members() {
		if n.Name == l.name || n.Name == name {
			continue
		}
		if err := l.ml.SendBestEffort(n, msg); err != nil {
			l.logger.V(4).Info("Cannot send an accusation", "accused", name, "to", n.Name, "err", err)
		}
	}
}

// heard records another member's accusation.
func (l *List) heard(msg []byte) {
	if name, ok := decodeAccusation(msg); ok && name != l.name {
		l.accused.record(name, false, time.Now())
	}
}

// liveAmong returns the names in accused that are live members other than this node,
// sorted.
func (l *List) liveAmong(accused map[string]time.Time) []string {
	if len(accused) == 0 {
		return nil
	}
	var out []string
	for _, n := range l.ml.Members() {
		if _, ok := accused[n.Name]; ok && n.Name != l.name {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return out
}
