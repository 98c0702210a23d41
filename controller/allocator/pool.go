package allocator

import (
	"math/big"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/config"
)

// pool is one IPPool as the allocator sees it.
type pool struct {
	cfg *config.Pool
	// free holds the free addresses per family (fam); nil when the pool has no range of
	// that family, and for retired pools.
	free [2]*freeSet
	// inUse counts per family the addresses Services hold from this pool.
	inUse [2]int
	// selects is true when a selector narrows the pool: such pools are tried before the
	// ones that take any Service.
	selects bool
	// retired pools have left the configuration but Services still hold their addresses.
	retired bool
}

// fam is the index of family f in per-family arrays.
func fam(f config.Family) int {
	if f == config.IPv6 {
		return 1
	}
	return 0
}

var families = [2]config.Family{config.IPv4, config.IPv6}

// admits reports whether the pool's selectors select a Service with these labels.
func (p *pool) admits(svc, ns labels.Set) bool {
	return matches(p.cfg.ServiceSelector, svc) && matches(p.cfg.NamespaceSelector, ns)
}

func matches(sel labels.Selector, set labels.Set) bool { return sel == nil || sel.Matches(set) }

func selectsAll(sel labels.Selector) bool { return sel == nil || sel.Empty() }

func selectorString(sel labels.Selector) string {
	if sel == nil {
		return ""
	}
	return sel.String()
}

// allowsAddr reports whether the pool may hand out x, one of its addresses.
func (p *pool) allowsAddr(x netip.Addr) bool {
	return !(p.cfg.AvoidBuggyIPs && config.IsBuggyIPv4(x))
}

func (p *pool) capacity(f config.Family) *big.Int {
	if c := p.cfg.Capacity(f); c != nil {
		return c
	}
	return new(big.Int)
}

func (p *pool) idle() bool { return p.inUse == [2]int{} }

// span is a range of a live pool.
type span struct {
	config.Range
	pool *pool
}

// locate returns the live pool that contains x, or nil.
func (a *Allocator) locate(x netip.Addr) *pool {
	lo, hi := 0, len(a.spans)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if a.spans[m].First.Compare(x) <= 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 || !a.spans[lo-1].Contains(x) {
		return nil
	}
	return a.spans[lo-1].pool
}

// FamilyUsage counts the addresses of one family of a pool.
type FamilyUsage struct {
	// InUse is the number of distinct addresses Services hold (a shared IP counts once).
	InUse int
	// Capacity is the number of addresses the pool can hand out (config.Pool.Capacity).
	Capacity *big.Int
}

// PoolUsage is what a pool holds.
type PoolUsage struct {
	IPv4, IPv6 FamilyUsage
	// Retired is true when the pool has left the configuration but Services still hold
	// its addresses: the pool's finalizer must stay until they move.
	Retired bool
}

// Usage reports what pool holds, for pools in the configuration and for retired pools
// Services still hold addresses of. It returns false for any other name.
func (a *Allocator) Usage(pool string) (PoolUsage, bool) {
	p := a.live[pool]
	if p == nil {
		p = a.retired[pool]
	}
	if p == nil {
		return PoolUsage{}, false
	}
	return PoolUsage{
		IPv4:    FamilyUsage{InUse: p.inUse[0], Capacity: new(big.Int).Set(p.capacity(config.IPv4))},
		IPv6:    FamilyUsage{InUse: p.inUse[1], Capacity: new(big.Int).Set(p.capacity(config.IPv6))},
		Retired: p.retired,
	}, true
}

// Pools returns the names of the pools Usage reports on: those in the configuration and
// the retired ones Services still hold addresses of, sorted.
func (a *Allocator) Pools() []string {
	names := make([]string, 0, len(a.live)+len(a.retired))
	for n := range a.live {
		names = append(names, n)
	}
	for n := range a.retired {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
