package config_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

// fullOpts compares whole Snapshots, lookup maps included.
var fullOpts = cmp.Options{cmpOpts, cmp.AllowUnexported(config.Snapshot{})}

// conflictingResources is a fixed set of objects with every kind of conflict: overlapping
// pools (one pair created in the same second), duplicate peers, advertisements that
// disagree on localPref, and references to missing and left-out objects.
func conflictingResources() config.Resources {
	type bspec = v1alpha1.BGPAdvertisementSpec
	type lspec = v1alpha1.L2AdvertisementSpec
	return config.Resources{
		Pools: []v1alpha1.IPPool{
			ipPool("edge", 0, "198.18.2.0/24", "2001:db8:2::/64"),
			ipPool("edge-copy", 0, "198.18.2.128/25"), // same age as edge: loses on name
			ipPool("lab", 1, "198.18.3.0-198.18.3.100"),
			ipPool("lab2", 2, "198.18.3.100-198.18.3.200"), // overlaps lab
			ipPool("v6", 2, "2001:db8:2::ffff:0:0:0-2001:db8:3::"),
			ipPool("tail", 3, "198.18.3.201/32", "198.18.4.0/22"),
			ipPool("broken", 4, "198.18.9.9/24"),
			with(ipPool("prod", 5, "198.18.64.0/20"), func(p *v1alpha1.IPPool) { p.Labels = map[string]string{"env": "prod"} }),
		},
		Peers: []v1alpha1.BGPPeer{
			bgpPeer("tor-a", 0, "192.0.2.1"),
			bgpPeer("tor-a-again", 1, "192.0.2.1"),
			with(bgpPeer("rack-a", 2, "192.0.2.2"), func(p *v1alpha1.BGPPeer) { p.Spec.NodeSelector = matchLabels("rack", "a") }),
			with(bgpPeer("rack-b", 2, "192.0.2.2"), func(p *v1alpha1.BGPPeer) { p.Spec.NodeSelector = matchLabels("rack", "b") }),
			with(bgpPeer("rack-ab", 2, "192.0.2.2"), func(p *v1alpha1.BGPPeer) { p.Spec.NodeSelector = matchIn("rack", "a", "b") }),
			bgpPeer("loop", 3, "127.0.0.1"),
		},
		BGPAdvertisements: []v1alpha1.BGPAdvertisement{
			bgpAdv("all", 0, func(s *bspec) { s.LocalPref = ptr.To[int64](100) }),
			bgpAdv("all-200", 0, func(s *bspec) { s.LocalPref = ptr.To[int64](200) }),
			bgpAdv("lab-tor", 1, func(s *bspec) { s.IPPools, s.Peers = names("lab", "lab2"), names("tor-a", "tor-a-again") }),
			bgpAdv("prod", 1, func(s *bspec) {
				s.IPPoolSelector, s.Communities, s.LocalPref = matchLabels("env", "prod"), []v1alpha1.Community{"no-export"}, ptr.To[int64](100)
			}),
			bgpAdv("bad-comm", 2, func(s *bspec) { s.LargeCommunities = []v1alpha1.LargeCommunity{"1:2"} }),
		},
		L2Advertisements: []v1alpha1.L2Advertisement{
			l2Adv("l2", 0, func(s *lspec) {
				s.IPPools, s.Interfaces = names("edge-copy", "lab"), []v1alpha1.InterfaceName{"eth1", "eth0"}
			}),
			l2Adv("l2-all", 1),
		},
	}
}

// randomResources makes objects drawn from small sets of addresses, ages and selectors, so
// that overlaps, duplicates, same-age ties and localPref disagreements are common.
func randomResources(rnd *rand.Rand) config.Resources {
	var res config.Resources
	var poolNames []string
	for i := range 3 + rnd.IntN(25) {
		name := fmt.Sprintf("pool-%02d", i)
		poolNames = append(poolNames, name)
		var addrs []string
		for range 1 + rnd.IntN(3) {
			switch rnd.IntN(4) {
			case 0:
				addrs = append(addrs, fmt.Sprintf("10.0.%d.%d/%d", rnd.IntN(2), rnd.IntN(8)*32, 27+rnd.IntN(6)))
			case 1:
				a := rnd.IntN(500)
				b := a + rnd.IntN(60)
				addrs = append(addrs, fmt.Sprintf("10.0.%d.%d-10.0.%d.%d", a/256, a%256, b/256, b%256))
			case 2:
				addrs = append(addrs, fmt.Sprintf("2001:db8::%x00/120", rnd.IntN(6)))
			default:
				addrs = append(addrs, fmt.Sprintf("2001:db8::%x-2001:db8::%x", rnd.IntN(0x300), 0x200+rnd.IntN(0x300)))
			}
		}
		p := ipPool(name, rnd.IntN(4), addrs...)
		p.Spec.AvoidBuggyIPs = rnd.IntN(2) == 0
		if rnd.IntN(3) == 0 {
			p.Labels = map[string]string{"env": []string{"prod", "dev"}[rnd.IntN(2)]}
		}
		res.Pools = append(res.Pools, p)
	}
	selectors := []*metav1.LabelSelector{nil, matchLabels("rack", "a"), matchLabels("rack", "b"), matchIn("rack", "a", "c"), matchLabels("zone", "z")}
	var peerNames []string
	for i := range 1 + rnd.IntN(10) {
		name := fmt.Sprintf("peer-%02d", i)
		peerNames = append(peerNames, name)
		p := bgpPeer(name, rnd.IntN(4), fmt.Sprintf("192.0.2.%d", 1+rnd.IntN(3)))
		p.Spec.PeerPort = []int32{0, 179, 1179}[rnd.IntN(3)]
		p.Spec.NodeSelector = selectors[rnd.IntN(len(selectors))]
		if rnd.IntN(8) == 0 {
			p.Spec.HoldTime = dur(1) // invalid
		}
		res.Peers = append(res.Peers, p)
	}
	pick := func(from []string) []v1alpha1.ObjectName {
		var out []v1alpha1.ObjectName
		for range rnd.IntN(3) {
			if rnd.IntN(5) == 0 {
				out = append(out, "missing")
				continue
			}
			out = append(out, v1alpha1.ObjectName(from[rnd.IntN(len(from))]))
		}
		return out
	}
	for i := range rnd.IntN(10) {
		a := bgpAdv(fmt.Sprintf("bgp-%02d", i), rnd.IntN(4), func(s *v1alpha1.BGPAdvertisementSpec) {
			s.IPPools, s.Peers = pick(poolNames), pick(peerNames)
			if rnd.IntN(3) == 0 {
				s.IPPoolSelector = matchLabels("env", "prod")
			}
			if rnd.IntN(3) > 0 {
				s.LocalPref = ptr.To(int64(100 * rnd.IntN(3)))
			}
			if rnd.IntN(3) == 0 {
				s.AggregationLength = ptr.To[int32](24)
			}
		})
		res.BGPAdvertisements = append(res.BGPAdvertisements, a)
	}
	for i := range rnd.IntN(4) {
		res.L2Advertisements = append(res.L2Advertisements, l2Adv(fmt.Sprintf("l2-%02d", i), rnd.IntN(4),
			func(s *v1alpha1.L2AdvertisementSpec) { s.IPPools = pick(poolNames) }))
	}
	return res
}

func shuffled(rnd *rand.Rand, res config.Resources) config.Resources {
	out := config.Resources{
		Pools:             append([]v1alpha1.IPPool(nil), res.Pools...),
		Peers:             append([]v1alpha1.BGPPeer(nil), res.Peers...),
		BGPAdvertisements: append([]v1alpha1.BGPAdvertisement(nil), res.BGPAdvertisements...),
		L2Advertisements:  append([]v1alpha1.L2Advertisement(nil), res.L2Advertisements...),
	}
	rnd.Shuffle(len(out.Pools), func(i, j int) { out.Pools[i], out.Pools[j] = out.Pools[j], out.Pools[i] })
	rnd.Shuffle(len(out.Peers), func(i, j int) { out.Peers[i], out.Peers[j] = out.Peers[j], out.Peers[i] })
	rnd.Shuffle(len(out.BGPAdvertisements), func(i, j int) {
		out.BGPAdvertisements[i], out.BGPAdvertisements[j] = out.BGPAdvertisements[j], out.BGPAdvertisements[i]
	})
	rnd.Shuffle(len(out.L2Advertisements), func(i, j int) {
		out.L2Advertisements[i], out.L2Advertisements[j] = out.L2Advertisements[j], out.L2Advertisements[i]
	})
	return out
}

// TestBuildDeterministic checks the property Build promises: the same objects in any order
// give the same Snapshot and the same problems.
func TestBuildDeterministic(t *testing.T) {
	const permutations = 100
	inputs := map[string]config.Resources{"conflicting": conflictingResources()}
	for seed := range uint64(12) {
		inputs[fmt.Sprintf("random-%02d", seed)] = randomResources(rand.New(rand.NewPCG(seed, 0x5eed)))
	}
	// The inputs must exercise every kind of conflict, or the property says little.
	seen := map[config.Reason]bool{}
	for _, res := range inputs {
		_, problems := config.Build(res)
		for _, p := range problems {
			seen[p.Reason] = true
		}
	}
	for _, r := range []config.Reason{
		config.PoolOverlap, config.InvalidAddresses, config.DuplicatePeer, config.InvalidPeer,
		config.AdvertisementConflict, config.InvalidCommunity, config.PoolNotFound, config.PeerNotFound,
	} {
		if !seen[r] {
			t.Errorf("no input has a problem with reason %s", r)
		}
	}

	for name, res := range inputs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			wantSnap, wantProblems := config.Build(res)
			checkInvariants(t, res, wantSnap, wantProblems)
			rnd := rand.New(rand.NewPCG(1, 2))
			for i := range permutations {
				snap, problems := config.Build(shuffled(rnd, res))
				if d := cmp.Diff(wantSnap, snap, fullOpts); d != "" {
					t.Fatalf("permutation %d: Build() snapshot (-first +this):\n%s", i, d)
				}
				if d := cmp.Diff(wantProblems, problems, cmpOpts); d != "" {
					t.Fatalf("permutation %d: Build() problems (-first +this):\n%s", i, d)
				}
			}
		})
	}
}

// checkInvariants checks what holds for any input: every object is either in the snapshot
// or has an Accepted problem, never both; accepted pools never overlap; and the problems
// are sorted.
func checkInvariants(t *testing.T, res config.Resources, snap *config.Snapshot, problems []config.Problem) {
	t.Helper()
	left := map[config.ObjectRef]int{}
	for _, p := range problems {
		if p.Condition == v1alpha1.ConditionAccepted {
			left[p.Object]++
		}
	}
	in := map[config.ObjectRef]bool{}
	for _, p := range snap.Pools {
		in[config.ObjectRef{Kind: config.KindIPPool, Name: p.Name}] = true
	}
	for _, p := range snap.Peers {
		in[config.ObjectRef{Kind: config.KindBGPPeer, Name: p.Name}] = true
	}
	for _, a := range snap.BGPAdvertisements {
		in[config.ObjectRef{Kind: config.KindBGPAdvertisement, Name: a.Name}] = true
	}
	for _, a := range snap.L2Advertisements {
		in[config.ObjectRef{Kind: config.KindL2Advertisement, Name: a.Name}] = true
	}
	var all []config.ObjectRef
	for _, o := range res.Pools {
		all = append(all, config.ObjectRef{Kind: config.KindIPPool, Name: o.Name})
	}
	for _, o := range res.Peers {
		all = append(all, config.ObjectRef{Kind: config.KindBGPPeer, Name: o.Name})
	}
	for _, o := range res.BGPAdvertisements {
		all = append(all, config.ObjectRef{Kind: config.KindBGPAdvertisement, Name: o.Name})
	}
	for _, o := range res.L2Advertisements {
		all = append(all, config.ObjectRef{Kind: config.KindL2Advertisement, Name: o.Name})
	}
	for _, o := range all {
		if in[o] == (left[o] > 0) || left[o] > 1 {
			t.Errorf("%s: in snapshot %v, %d Accepted problems; want exactly one of the two", o, in[o], left[o])
		}
	}
	for i, p := range snap.Pools {
		for _, q := range snap.Pools[i+1:] {
			for _, r := range p.Ranges {
				for _, s := range q.Ranges {
					if r.Overlaps(s) {
						t.Errorf("accepted pools %s (%s) and %s (%s) overlap", p.Name, r, q.Name, s)
					}
				}
			}
		}
	}
	sorted := append([]config.Problem(nil), problems...)
	sortProblems(sorted)
	if d := cmp.Diff(sorted, problems, cmpOpts); d != "" {
		t.Errorf("Build() problems not sorted (-sorted +got):\n%s", d)
	}
}
