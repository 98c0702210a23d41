package allocator

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzAllocatorOps drives the model of TestRandomized with the fuzz input instead of a
// seeded generator: every byte is one choice (which operation, which Service, which
// families, pools, sharing key, ports, requested IPs, which configuration change), so the
// fuzzer's mutations change single decisions of a sequence of operations on a real
// allocator. After every operation it checks the allocator's bookkeeping from the inside
// (checkInvariants: holders, sharing index, counts, no free address lost) and its answers
// from the outside (checkOutside: no address held by two Services that may not share it,
// every assignment of the Service's families inside a live pool that admits it, Usage
// equal to a recount), and also:
//   - Allocate answers the same Request again with the same Assignment, changing nothing;
//   - Release frees what the Service held alone: it is no longer in use, and its pool's
//     Usage drops by exactly that many addresses;
//   - a failed Allocate changes nothing (checked by the model).
func FuzzAllocatorOps(f *testing.F) {
	f.Add([]byte("allocate,release,allocate again,claim,set config"))
	f.Fuzz(func(t *testing.T, data []byte) {
		src := &byteSource{data: data}
		m := &model{t: t, rng: rand.New(src), reqs: map[Key]Request{}, stale: map[Key]bool{}, claimed: map[Key]bool{}}
		m.snap = m.randomConfig()
		m.a = newAllocator(m.snap, 2)
		for step := 0; !src.exhausted() && step < 400; step++ {
			var op string
			switch m.rng.IntN(8) {
			case 0, 1, 2:
				op = m.allocate()
			case 3:
				op = m.allocateAgain()
			case 4:
				op = m.release()
			case 5:
				op = m.claim()
			case 6:
				op = m.setConfig()
			default:
				op = m.restart()
			}
			if err := checkInvariants(m.a); err != nil {
				t.Fatalf("step %d (%s): invariants: %v", step, op, err)
			}
			m.checkOutside(step, op)
		}
	})
}

// allocateAgain allocates a Service that holds addresses with the Request it was last
// allocated with, and checks that nothing changes.
func (m *model) allocateAgain() string {
	key := m.randomKey()
	req, ok := m.reqs[key]
	if !ok || m.stale[key] || m.claimed[key] {
		return m.allocate()
	}
	before, _ := m.a.Assigned(key)
	asg, err := m.a.Allocate(req)
	op := fmt.Sprintf("allocate %s again: %v %v", key, asg, err)
	if err != nil {
		m.t.Fatalf("%s: the Request it holds %v with is refused", op, before)
	}
	// A PreferDualStack Service may get the family it lacked, once; then it is stable.
	if !cmp.Equal(result(before, nil), result(asg, nil)) {
		again, err := m.a.Allocate(req)
		if err != nil || !cmp.Equal(result(asg, nil), result(again, nil)) {
			m.t.Fatalf("%s: changed from %v, then to %v %v", op, before, again, err)
		}
	}
	return op
}

// release releases a random Service and checks that the addresses it held alone are free
// and no longer counted.
func (m *model) release() string {
	key := m.randomKey()
	asg, held := m.a.Assigned(key)
	var alone []netip.Addr
	if held {
		m.statuses = append(m.statuses, asg.IPs)
		for _, x := range asg.IPs {
			if m.a.sharers[x] == nil {
				alone = append(alone, x)
			}
		}
	}
	before, _ := m.a.Usage(asg.Pool)
	m.a.Release(key)
	delete(m.reqs, key)
	delete(m.stale, key)
	delete(m.claimed, key)
	op := fmt.Sprintf("release %s holding %v", key, asg.IPs)
	if _, still := m.a.Assigned(key); still {
		m.t.Fatalf("%s: still assigned", op)
	}
	if !held {
		return op
	}
	for _, x := range asg.IPs {
		_, used := m.a.inUse[x]
		sharedWithIt := slices.ContainsFunc(m.a.sharers[x], func(h *service) bool { return h.key == key })
		if wasAlone := slices.Contains(alone, x); used == wasAlone || sharedWithIt || used && m.a.inUse[x].key == key {
			m.t.Fatalf("%s: %s held alone %v, in use %v after the release", op, x, wasAlone, used)
		}
	}
	after, _ := m.a.Usage(asg.Pool)
	freed := before.IPv4.InUse + before.IPv6.InUse - after.IPv4.InUse - after.IPv6.InUse
	if freed != len(alone) {
		m.t.Fatalf("%s: usage of %q went from %+v to %+v, want %d fewer", op, asg.Pool, before, after, len(alone))
	}
	return op
}

// byteSource is a rand.Source that hands out the fuzz input one byte per draw, spread
// over 64 bits so that rand.IntN(n) maps byte b to about b*n/256: a mutated byte changes
// one decision. Past the end it goes on with SplitMix64, so draws never repeat forever
// (rand.IntN rejects some values and draws again).
type byteSource struct {
	data []byte
	next int
	mix  uint64
}

func (s *byteSource) exhausted() bool { return s.next >= len(s.data) }

func (s *byteSource) Uint64() uint64 {
	if s.next < len(s.data) {
		b := s.data[s.next]
		s.next++
		return uint64(b)*0x0101010101010101 ^ uint64(s.next)
	}
	s.mix += 0x9e3779b97f4a7c15
	z := s.mix
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
