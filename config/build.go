package config

import (
	"cmp"
	"fmt"
	"maps"
	"math/big"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/config/v1alpha1"
)

// Resources are berth's custom resources as read from the cluster, in any order.
type Resources struct {
	Pools             []v1alpha1.IPPool
	Peers             []v1alpha1.BGPPeer
	BGPAdvertisements []v1alpha1.BGPAdvertisement
	L2Advertisements  []v1alpha1.L2Advertisement
}

// BGP timer defaults, as in RFC 4271's suggestions, except a short connect retry so a
// session comes back quickly after a router restart.
const (
	DefaultHoldTime    = 90 * time.Second
	DefaultConnectTime = 10 * time.Second
	DefaultRestartTime = 120 * time.Second
	DefaultPeerPort    = 179
)

// Build validates res and returns the configuration to use and what is wrong with the rest.
// It is deterministic: the same objects in any order give the same result. Objects that
// conflict with an older object (creationTimestamp, then name) are left out and reported;
// nothing else is disturbed.
func Build(res Resources) (*Snapshot, []Problem) {
	b := &builder{snap: &Snapshot{poolsByName: map[string]*Pool{}, peersByName: map[string]*Peer{}}}
	b.pools(res.Pools)
	b.peers(res.Peers)
	b.bgpAdvertisements(res.BGPAdvertisements)
	b.l2Advertisements(res.L2Advertisements)
	sortProblems(b.problems)
	return b.snap, b.problems
}

type builder struct {
	snap     *Snapshot
	problems []Problem
}

func (b *builder) report(kind Kind, name, condition string, reason Reason, format string, args ...any) {
	b.problems = append(b.problems, Problem{
		Object:    ObjectRef{Kind: kind, Name: name},
		Condition: condition,
		Reason:    reason,
		Message:   fmt.Sprintf(format, args...),
	})
}

func (b *builder) reject(kind Kind, name string, reason Reason, format string, args ...any) {
	b.report(kind, name, v1alpha1.ConditionAccepted, reason, format, args...)
}

// byAge returns the indices of objs, oldest first, ties broken by name.
func byAge[T any](objs []T, meta func(*T) *metav1.ObjectMeta) []int {
	idx := make([]int, len(objs))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(i, j int) bool {
		a, b := meta(&objs[idx[i]]), meta(&objs[idx[j]])
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c < 0
		}
		return a.Name < b.Name
	})
	return idx
}

// owned is an accepted range and the pool it belongs to.
type owned struct {
	Range
	pool string
}

func (b *builder) pools(objs []v1alpha1.IPPool) {
	// taken holds the accepted pools' ranges sorted by first address; they never overlap,
	// so they are sorted by last address too.
	var taken []owned
	for _, i := range byAge(objs, func(p *v1alpha1.IPPool) *metav1.ObjectMeta { return &p.ObjectMeta }) {
		obj := &objs[i]
		p, ok := b.pool(obj)
		if !ok {
			continue
		}
		if clash, ok := firstOverlap(taken, p.Ranges); ok {
			b.reject(KindIPPool, p.Name, PoolOverlap,
				"addresses %s overlap %s of older pool %q; this pool is not used until the overlap is removed",
				clash.mine, clash.theirs.Range, clash.theirs.pool)
			continue
		}
		for _, r := range p.Ranges {
			at, _ := slices.BinarySearchFunc(taken, r.First, func(o owned, a netip.Addr) int { return o.First.Compare(a) })
			taken = slices.Insert(taken, at, owned{Range: r, pool: p.Name})
		}
		b.snap.poolsByName[p.Name] = p
	}
	b.snap.Pools = sortedValues(b.snap.poolsByName)
}

type overlap struct {
	mine   Range
	theirs owned
}

// firstOverlap finds a range of rs that overlaps one in taken.
func firstOverlap(taken []owned, rs []Range) (overlap, bool) {
	for _, r := range rs {
		// The first taken range whose last address is not before r.First is the only
		// candidate: later ones start after it ends.
		at := sort.Search(len(taken), func(i int) bool { return taken[i].Last.Compare(r.First) >= 0 })
		if at < len(taken) && taken[at].Overlaps(r) {
			return overlap{mine: r, theirs: taken[at]}, true
		}
	}
	return overlap{}, false
}

// pool validates one IPPool on its own.
func (b *builder) pool(obj *v1alpha1.IPPool) (*Pool, bool) {
	p := &Pool{
		Name:          obj.Name,
		Created:       obj.CreationTimestamp.Time,
		Labels:        labels.Set(maps.Clone(obj.Labels)),
		AutoAssign:    obj.Spec.AutoAssign == nil || *obj.Spec.AutoAssign,
		AvoidBuggyIPs: obj.Spec.AvoidBuggyIPs,
		Priority:      obj.Spec.Priority,
		IPMode:        cmp.Or(obj.Spec.IPMode, v1alpha1.IPModeVIP),
		Deleting:      obj.DeletionTimestamp != nil,
		Capacity4:     new(big.Int),
		Capacity6:     new(big.Int),
	}
	if p.Deleting {
		p.AutoAssign = false
	}
	var errs []string
	if len(obj.Spec.Addresses) == 0 {
		errs = append(errs, "no addresses")
	}
	for i, s := range obj.Spec.Addresses {
		r, err := ParseRange(string(s))
		if err != nil {
			errs = append(errs, fmt.Sprintf("addresses[%d]: %v", i, err))
			continue
		}
		p.Ranges = append(p.Ranges, r)
	}
	slices.SortFunc(p.Ranges, func(a, b Range) int { return a.First.Compare(b.First) })
	for i := 1; i < len(p.Ranges); i++ {
		if p.Ranges[i-1].Overlaps(p.Ranges[i]) {
			errs = append(errs, fmt.Sprintf("%s overlaps %s in the same pool", p.Ranges[i], p.Ranges[i-1]))
		}
	}
	if p.IPMode != v1alpha1.IPModeVIP && p.IPMode != v1alpha1.IPModeProxy {
		errs = append(errs, fmt.Sprintf("ipMode %q is neither VIP nor Proxy", p.IPMode))
	}
	if len(errs) > 0 {
		b.reject(KindIPPool, obj.Name, InvalidAddresses, "%s", strings.Join(errs, "; "))
		return nil, false
	}
	var err error
	if p.ServiceSelector, err = selector(obj.Spec.ServiceSelector); err != nil {
		b.reject(KindIPPool, obj.Name, InvalidSelector, "serviceSelector: %v", err)
		return nil, false
	}
	if p.NamespaceSelector, err = selector(obj.Spec.NamespaceSelector); err != nil {
		b.reject(KindIPPool, obj.Name, InvalidSelector, "namespaceSelector: %v", err)
		return nil, false
	}
	for _, r := range p.Ranges {
		n := r.Size()
		if r.Family() == IPv4 {
			if p.AvoidBuggyIPs {
				n.Sub(n, big.NewInt(buggyIPv4(r)))
			}
			p.Capacity4.Add(p.Capacity4, n)
		} else {
			p.Capacity6.Add(p.Capacity6, n)
		}
	}
	return p, true
}

// selector converts a label selector; nil selects everything.
func selector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(s)
}

func sortedValues[T any](m map[string]*T) []*T {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*T, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}
