package allocator

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestAddrQueue checks the queue against a plain slice under random pushes, pops and
// removals, and that its ring stays proportionate to its length.
func TestAddrQueue(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	var q addrQueue
	var want []netip.Addr
	longest := 0
	base := netip.MustParseAddr("2001:db8::")
	addr := func(i int) netip.Addr {
		x := base
		for range i {
			x = x.Next()
		}
		return x
	}
	for step := range 20000 {
		x := addr(rng.IntN(200))
		switch rng.IntN(3) {
		case 0:
			if !slices.Contains(want, x) {
				q.pushBack(x)
				want = append(want, x)
			}
		case 1:
			got := q.remove(x)
			i := slices.Index(want, x)
			if got != (i >= 0) {
				t.Fatalf("step %d: remove(%s) = %v", step, x, got)
			}
			if i >= 0 {
				want = slices.Delete(want, i, i+1)
			}
		case 2:
			if f, ok := q.front(); ok {
				q.remove(f)
			}
			if len(want) > 0 {
				want = want[1:]
			}
		}
		if d := cmp.Diff(want, slices.Collect(q.all()), cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("step %d: members (-want +got):\n%s", step, d)
		}
		if f, ok := q.front(); ok != (len(want) > 0) || ok && f != want[0] || q.len() != len(want) {
			t.Fatalf("step %d: front %s %v, len %d; want %v", step, f, ok, q.len(), want)
		}
		longest = max(longest, len(want))
		if err := checkQueue(&q, longest); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
	}
}

func TestAddrHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	var h addrHeap
	var want []netip.Addr
	for range 5000 {
		if rng.IntN(3) > 0 {
			x := netip.AddrFrom4([4]byte{198, 51, byte(rng.IntN(4)), byte(rng.IntN(256))})
			h.push(x)
			want = append(want, x)
			continue
		}
		slices.SortFunc(want, netip.Addr.Compare)
		m, ok := h.min()
		if ok != (len(want) > 0) || ok && m != want[0] {
			t.Fatalf("min = %s %v, want %v", m, ok, want[:min(len(want), 1)])
		}
		if ok {
			h.pop()
			want = want[1:]
		}
	}
}
