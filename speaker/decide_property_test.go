package speaker

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/config"
)

// world is a random cluster: some nodes excluded, some not live, some with eth1 down;
// Services with random policies and endpoints, some sharing an IP.
type world struct {
	in   Input
	svcs []Service
}

var zones = []string{"a", "b", "c"}

func randomWorld(seed uint64, nodes, services int) world {
	rng := rand.New(rand.NewPCG(seed, 0))
	snap := &config.Snapshot{
		Pools: []*config.Pool{
			pool("bgp", "203.0.113.0/24", "2001:db8:113::/64"),
			pool("l2", "198.18.2.192/26", "2001:db8:18:2::1:0/112"),
		},
		Peers: []*config.Peer{peer("tor-a", ""), peer("tor-b", "zone=b")},
		BGPAdvertisements: []*config.BGPAdvertisement{
			{Name: "all", Target: target([]string{"bgp"}, "", ""), AllPeers: true},
		},
		L2Advertisements: []*config.L2Advertisement{
			{Name: "lan", Target: target([]string{"l2"}, "", "zone in (a, b)"), Interfaces: []string{"eth1"}},
			{Name: "lan-c", Target: target([]string{"l2"}, "tier=edge", "zone=c"), Interfaces: []string{"eth*"}},
		},
	}
	w := world{in: Input{Config: snap}}
	for i := range nodes {
		name := fmt.Sprintf("node-%03d", i)
		w.in.Nodes = append(w.in.Nodes, Node{Name: name, Labels: labels.Set{"zone": zones[rng.IntN(3)]},
			Excluded: rng.IntN(20) == 0})
		if rng.IntN(10) == 0 {
			continue // not live
		}
		m := Member{Name: name, DecisionVersion: 1, L2Interfaces: []string{"eth0", "eth1"}}
		if rng.IntN(10) == 0 {
			m.L2Interfaces = []string{"eth0"}
		}
		w.in.Members = append(w.in.Members, m)
	}
	w.in.Self = w.in.Nodes[0].Name
	for i := range services {
		s := Service{Namespace: "ns", Name: fmt.Sprintf("svc-%d", i), Labels: labels.Set{}}
		if rng.IntN(2) == 0 {
			s.Labels["tier"] = "edge"
		}
		if rng.IntN(3) == 0 {
			s.TrafficPolicy = TrafficPolicyLocal
		}
		s.Ingress = []Ingress{{IP: netip.AddrFrom4([4]byte{198, 18, 2, byte(192 + rng.IntN(64))})}}
		if rng.IntN(4) == 0 {
			s.Ingress = append(s.Ingress, Ingress{IP: netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x18, 0, 2, 14: 0, 15: byte(rng.IntN(256))})})
		}
		if rng.IntN(5) == 0 {
			s.Ingress = append(s.Ingress, Ingress{IP: netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.IntN(256))})})
		}
		for range rng.IntN(6) {
			e := Endpoint{Ready: rng.IntN(3) > 0}
			e.Serving = e.Ready || rng.IntN(2) == 0
			e.Terminating = !e.Ready && rng.IntN(2) == 0
			if rng.IntN(10) > 0 {
				e.Node = w.in.Nodes[rng.IntN(nodes)].Name
			}
			s.Endpoints = append(s.Endpoints, e)
		}
		w.svcs = append(w.svcs, s)
	}
	return w
}

// ownership maps Service IP keys ("ns/name ip") to the L2 decision's owner and next.
func ownership(ds []*ServiceDecision) map[string][2]string {
	out := map[string][2]string{}
	for _, s := range ds {
		for _, d := range s.IPs {
			if d.L2.Reason != NoAdvertisement && d.L2.Reason != NoPool {
				out[s.Namespace+"/"+s.Name+" "+d.IP.String()] = [2]string{d.L2.Owner, d.L2.Next}
			}
		}
	}
	return out
}

func forSeeds(t *testing.T, f func(t *testing.T, w world)) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			f(t, randomWorld(seed, 5+int(seed)*3, 60))
		})
	}
}

// Every speaker decides for itself; together exactly the owner announces each IP, every
// speaker names the same owner, and the owner may answer.
func TestPropertyOneOwner(t *testing.T) {
	forSeeds(t, func(t *testing.T, w world) {
		type key struct {
			svc int
			ip  netip.Addr
		}
		announcers := map[key][]string{}
		owners := map[key]L2Decision{}
		for _, n := range w.in.Nodes {
			in := w.in
			in.Self = n.Name
			for i, s := range NewCluster(in).Decide(w.svcs) {
				for _, d := range s.IPs {
					k := key{i, d.IP}
					if d.L2.Announce {
						announcers[k] = append(announcers[k], n.Name)
					}
					if prev, ok := owners[k]; ok && (prev.Owner != d.L2.Owner || prev.Next != d.L2.Next) {
						t.Errorf("%s %s: %s elects %q/%q, another node %q/%q", s.Name, d.IP, n.Name, d.L2.Owner, d.L2.Next, prev.Owner, prev.Next)
					}
					owners[k] = d.L2
				}
			}
		}
		for k, d := range owners {
			var want []string
			if d.Owner != "" {
				want = []string{d.Owner}
				if !mayAnswer(w, &w.svcs[k.svc], d.Owner) {
					t.Errorf("%s %s: owner %s may not answer", w.svcs[k.svc].Name, k.ip, d.Owner)
				}
			}
			if d.Next != "" && !mayAnswer(w, &w.svcs[k.svc], d.Next) {
				t.Errorf("%s %s: next %s may not answer", w.svcs[k.svc].Name, k.ip, d.Next)
			}
			if !slices.Equal(want, announcers[k]) {
				t.Errorf("%s %s: announced by %v, want %v", w.svcs[k.svc].Name, k.ip, announcers[k], want)
			}
		}
	})
}

// mayAnswer restates node eligibility for L2 plainly, apart from the bitsets.
func mayAnswer(w world, s *Service, node string) bool {
	var n *Node
	for i := range w.in.Nodes {
		if w.in.Nodes[i].Name == node {
			n = &w.in.Nodes[i]
		}
	}
	var m *Member
	for i := range w.in.Members {
		if w.in.Members[i].Name == node {
			m = &w.in.Members[i]
		}
	}
	if n == nil || m == nil || n.Excluded {
		return false
	}
	ok := false
	for _, a := range w.in.Config.L2Advertisements {
		if a.ServiceSelector.Matches(s.Labels) && a.NodeSelector.Matches(n.Labels) &&
			slices.ContainsFunc(m.L2Interfaces, func(i string) bool { return interfaceAllowed(a.Interfaces, i) }) {
			ok = true
		}
	}
	if !ok || s.TrafficPolicy != TrafficPolicyLocal {
		return ok
	}
	anyReady := slices.ContainsFunc(s.Endpoints, func(e Endpoint) bool { return e.Ready })
	return slices.ContainsFunc(s.Endpoints, func(e Endpoint) bool {
		return e.Node == node && (e.Ready || !anyReady && e.Serving && e.Terminating)
	})
}

// Losing a node that owns nothing moves no IP, whichever way it goes.
func TestPropertyRemovingNonOwnerMovesNothing(t *testing.T) {
	forSeeds(t, func(t *testing.T, w world) {
		before := ownership(NewCluster(w.in).Decide(w.svcs))
		owners := map[string]bool{}
		for _, on := range before {
			owners[on[0]] = true
		}
		for _, n := range w.in.Nodes {
			if owners[n.Name] {
				continue
			}
			for how, edit := range removals(n.Name) {
				in := w.in
				edit(&in)
				after := ownership(NewCluster(in).Decide(w.svcs))
				for k, on := range before {
					if after[k][0] != on[0] {
						t.Errorf("%s %s: %s moved to %s", how, n.Name, k, after[k][0])
					}
				}
			}
		}
	})
}

// The precomputed next node is the owner once the owner is gone.
func TestPropertyNextIsOwnerAfterRemoval(t *testing.T) {
	forSeeds(t, func(t *testing.T, w world) {
		before := ownership(NewCluster(w.in).Decide(w.svcs))
		byOwner := map[string][]string{}
		for k, on := range before {
			if on[0] != "" {
				byOwner[on[0]] = append(byOwner[on[0]], k)
			}
		}
		for owner, keys := range byOwner {
			for how, edit := range removals(owner) {
				in := w.in
				edit(&in)
				after := ownership(NewCluster(in).Decide(w.svcs))
				for _, k := range keys {
					if after[k][0] != before[k][1] {
						t.Errorf("%s %s: %s went to %q, next was %q", how, owner, k, after[k][0], before[k][1])
					}
				}
			}
		}
	})
}

// removals are the ways a node drops out: it leaves memberlist, is excluded, is deleted.
func removals(name string) map[string]func(*Input) {
	return map[string]func(*Input){
		"leave": func(in *Input) {
			in.Members = slices.DeleteFunc(slices.Clone(in.Members), func(m Member) bool { return m.Name == name })
		},
		"exclude": func(in *Input) {
			in.Nodes = slices.Clone(in.Nodes)
			for i := range in.Nodes {
				if in.Nodes[i].Name == name {
					in.Nodes[i].Excluded = true
				}
			}
		},
		"delete": func(in *Input) {
			in.Nodes = slices.DeleteFunc(slices.Clone(in.Nodes), func(n Node) bool { return n.Name == name })
		},
	}
}

// The order of nodes, members, interfaces and endpoints changes nothing.
func TestPropertyOrderChangesNothing(t *testing.T) {
	forSeeds(t, func(t *testing.T, w world) {
		want := NewCluster(w.in).Decide(w.svcs)
		rng := rand.New(rand.NewPCG(uint64(len(w.in.Nodes)), 1))
		for range 3 {
			in := w.in
			in.Nodes = shuffled(rng, in.Nodes)
			in.Members = shuffled(rng, in.Members)
			for i := range in.Members {
				in.Members[i].L2Interfaces = shuffled(rng, in.Members[i].L2Interfaces)
			}
			svcs := slices.Clone(w.svcs)
			for i := range svcs {
				svcs[i].Endpoints = shuffled(rng, svcs[i].Endpoints)
			}
			if d := cmp.Diff(want, NewCluster(in).Decide(svcs), decisionOpts()); d != "" {
				t.Fatalf("Decide() after shuffling (-want +got):\n%s", d)
			}
		}
	})
}

func shuffled[T any](rng *rand.Rand, s []T) []T {
	s = slices.Clone(s)
	rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	return s
}

// Services that share an IP and the same view of the cluster share the announcer.
func TestPropertySharedIPOneOwner(t *testing.T) {
	forSeeds(t, func(t *testing.T, w world) {
		// Sharing, as the allocator allows it: Cluster policy; give all the same labels.
		var svcs []Service
		for _, s := range w.svcs {
			s.TrafficPolicy, s.Labels = TrafficPolicyCluster, labels.Set{"tier": "edge"}
			svcs = append(svcs, s)
		}
		owner := map[netip.Addr]string{}
		for _, s := range NewCluster(w.in).Decide(svcs) {
			for _, d := range s.IPs {
				if d.L2.Reason == NoAdvertisement || d.L2.Reason == NoEndpoints {
					continue
				}
				if o, ok := owner[d.IP]; ok && o != d.L2.Owner {
					t.Errorf("%s: %s elects %q, another Service %q", d.IP, s.Name, d.L2.Owner, o)
				}
				owner[d.IP] = d.L2.Owner
			}
		}
	})
}

// The decision elects as Elect does over the eligible nodes.
func TestPropertyAgreesWithElect(t *testing.T) {
	forSeeds(t, func(t *testing.T, w world) {
		c := NewCluster(w.in)
		for i := range w.svcs {
			s := &w.svcs[i]
			var cand []string
			for _, n := range w.in.Nodes {
				if mayAnswer(w, s, n.Name) {
					cand = append(cand, n.Name)
				}
			}
			for _, d := range c.DecideService(s) {
				if d.Pool != "l2" || d.L2.Reason == NoEndpoints {
					continue
				}
				o, n := Elect(c.Version(), d.IP, cand)
				if o != d.L2.Owner || n != d.L2.Next {
					t.Errorf("%s %s: decided %q/%q, Elect says %q/%q", s.Name, d.IP, d.L2.Owner, d.L2.Next, o, n)
				}
			}
		}
	})
}

// A Cluster is read-only: Services decided from many goroutines at once get the answers
// they get one at a time (run with -race).
func TestDecideConcurrently(t *testing.T) {
	w := randomWorld(7, 30, 200)
	c := NewCluster(w.in)
	want := c.Decide(w.svcs)
	got := make([][]IPDecision, len(w.svcs))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < len(w.svcs); i += 4 {
				got[i] = c.DecideService(&w.svcs[i])
			}
		})
	}
	wg.Wait()
	for i := range want {
		if d := cmp.Diff(want[i].IPs, got[i], decisionOpts()); d != "" {
			t.Errorf("%s: DecideService() concurrently (-sequential +concurrent):\n%s", w.svcs[i].Name, d)
		}
	}
}
