package config_test

import (
	"math/big"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

// FuzzBuild runs config.Build on objects decoded from a line-based text (see
// decodeResources; the seeds in testdata/fuzz/FuzzBuild show it) and checks what holds for
// any input:
//   - Build is pure and order-independent: the same objects, and the same objects in the
//     reverse order, give an equal Snapshot and equal problems;
//   - every object is in the snapshot or has one Accepted problem, never both; accepted
//     pools never overlap; problems are sorted (checkInvariants, shared with
//     TestBuildDeterministic);
//   - every problem names an object of the input, a condition that kind carries, a reason
//     and a message;
//   - what the snapshot holds is valid and resolved: pool ranges are the parsed addresses,
//     sorted and disjoint, capacities recount; peers pass their own validation rules;
//     advertisements name only accepted pools and peers, sorted and unique;
//   - left-out objects disturb nothing: Build on the input without them gives the same
//     snapshot, and the same problems minus theirs.
func FuzzBuild(f *testing.F) {
	f.Add("pool a 0 198.18.2.0/24\npool b 1 198.18.2.128/25\nbgp x 0 pools=a,b,c")
	f.Fuzz(func(t *testing.T, text string) {
		res := decodeResources(text)
		snap, problems := config.Build(res)

		again, againProblems := config.Build(res)
		if d := cmp.Diff(snap, again, fullOpts); d != "" {
			t.Fatalf("Build() twice, snapshots differ (-first +second):\n%s", d)
		}
		if d := cmp.Diff(problems, againProblems, cmpOpts); d != "" {
			t.Fatalf("Build() twice, problems differ (-first +second):\n%s", d)
		}
		rsnap, rproblems := config.Build(reversed(res))
		if d := cmp.Diff(snap, rsnap, fullOpts); d != "" {
			t.Fatalf("Build() of the reversed objects, snapshot (-in order +reversed):\n%s", d)
		}
		if d := cmp.Diff(problems, rproblems, cmpOpts); d != "" {
			t.Fatalf("Build() of the reversed objects, problems (-in order +reversed):\n%s", d)
		}

		checkInvariants(t, res, snap, problems)
		checkLookups(t, snap)
		checkProblemsNameObjects(t, res, problems)
		checkPools(t, res, snap)
		checkPeers(t, snap)
		checkAdvertisements(t, res, snap)

		// Left-out objects disturb nothing.
		left := map[config.ObjectRef]bool{}
		for _, p := range problems {
			if p.Condition == v1alpha1.ConditionAccepted {
				left[p.Object] = true
			}
		}
		kept := withoutObjects(res, left)
		ksnap, kproblems := config.Build(kept)
		if d := cmp.Diff(snap, ksnap, fullOpts); d != "" {
			t.Fatalf("Build() without the %d left-out objects, snapshot (-all +without):\n%s", len(left), d)
		}
		want := slices.DeleteFunc(slices.Clone(problems), func(p config.Problem) bool { return left[p.Object] })
		if d := cmp.Diff(want, kproblems, cmpOpts); d != "" {
			t.Fatalf("Build() without the %d left-out objects, problems (-want +got):\n%s", len(left), d)
		}
	})
}

// decodeResources reads one object per line; unknown lines, words and values are skipped,
// and of two objects of one kind with the same name the first is kept, since names are
// unique in a cluster:
//
//	pool NAME AGE ADDRESS... [buggy] [manual] [deleting] [mode=M] [prio=N] [label=V] [svcsel=V]
//	peer NAME AGE ADDRESS [asn=N] [myasn=N] [port=N] [src=A] [rid=A] [hold=D] [keep=D] [connect=D] [multihop] [gr=D] [rack=V] [racks=V,V]
//	bgp NAME AGE [pools=P,P] [peers=P,P] [poolsel=V] [lp=N] [agg=N] [agg6=N] [comm=C,C] [large=C,C] [svcsel=V]
//	l2 NAME AGE [pools=P,P] [poolsel=V] [if=I,I] [nodesel=V]
//
// AGE is minutes after an epoch; a label or selector value V stands for env=V, and a rack
// for the node label rack.
func decodeResources(text string) config.Resources {
	var res config.Resources
	seen := map[string]bool{}
	for line := range strings.Lines(text) {
		w := strings.Fields(line)
		if len(w) < 3 || seen[w[0]+"/"+w[1]] {
			continue
		}
		age, err := strconv.Atoi(w[2])
		if err != nil || age < 0 || age > 1000 {
			continue
		}
		meta := objMeta(w[1], age)
		opts, rest := options(w[3:])
		switch w[0] {
		case "pool":
			p := v1alpha1.IPPool{ObjectMeta: meta}
			for _, a := range rest {
				switch a {
				case "buggy":
					p.Spec.AvoidBuggyIPs = true
				case "manual":
					p.Spec.AutoAssign = new(bool)
				case "deleting":
					p.DeletionTimestamp = &meta.CreationTimestamp
				default:
					p.Spec.Addresses = append(p.Spec.Addresses, v1alpha1.AddressRange(a))
				}
			}
			p.Spec.IPMode = v1alpha1.IPMode(opts["mode"])
			p.Spec.Priority = int32(atoi(opts["prio"]))
			if v, ok := opts["label"]; ok {
				p.Labels = map[string]string{"env": v}
			}
			p.Spec.ServiceSelector = envSelector(opts, "svcsel")
			res.Pools = append(res.Pools, p)
		case "peer":
			p := v1alpha1.BGPPeer{ObjectMeta: meta, Spec: v1alpha1.BGPPeerSpec{MyASN: 64512, PeerASN: 64513}}
			if len(rest) > 0 {
				p.Spec.PeerAddress = rest[0]
			}
			if v, ok := opts["asn"]; ok {
				p.Spec.PeerASN = atoi(v)
			}
			if v, ok := opts["myasn"]; ok {
				p.Spec.MyASN = atoi(v)
			}
			p.Spec.PeerPort = int32(atoi(opts["port"]))
			p.Spec.SourceAddress, p.Spec.RouterID = opts["src"], opts["rid"]
			p.Spec.HoldTime, p.Spec.KeepaliveTime = duration(opts["hold"]), duration(opts["keep"])
			p.Spec.ConnectTime = duration(opts["connect"])
			p.Spec.EBGPMultiHop = slices.Contains(rest, "multihop")
			if v, ok := opts["gr"]; ok {
				p.Spec.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true, RestartTime: duration(v)}
			}
			if v, ok := opts["rack"]; ok {
				p.Spec.NodeSelector = matchLabels("rack", v)
			} else if v, ok := opts["racks"]; ok {
				p.Spec.NodeSelector = matchIn("rack", strings.Split(v, ",")...)
			}
			res.Peers = append(res.Peers, p)
		case "bgp":
			a := v1alpha1.BGPAdvertisement{ObjectMeta: meta}
			a.Spec.AdvertisementTarget = target(opts)
			a.Spec.Peers = list(opts, "peers")
			for _, c := range strings.Split(opts["comm"], ",") {
				if c != "" {
					a.Spec.Communities = append(a.Spec.Communities, v1alpha1.Community(c))
				}
			}
			for _, c := range strings.Split(opts["large"], ",") {
				if c != "" {
					a.Spec.LargeCommunities = append(a.Spec.LargeCommunities, v1alpha1.LargeCommunity(c))
				}
			}
			if v, err := strconv.ParseInt(opts["lp"], 10, 64); err == nil {
				a.Spec.LocalPref = &v
			}
			if v, err := strconv.ParseInt(opts["agg"], 10, 32); err == nil {
				a.Spec.AggregationLength = new(int32(v))
			}
			if v, err := strconv.ParseInt(opts["agg6"], 10, 32); err == nil {
				a.Spec.AggregationLengthV6 = new(int32(v))
			}
			res.BGPAdvertisements = append(res.BGPAdvertisements, a)
		case "l2":
			a := v1alpha1.L2Advertisement{ObjectMeta: meta}
			a.Spec.AdvertisementTarget = target(opts)
			for _, i := range strings.Split(opts["if"], ",") {
				if i != "" {
					a.Spec.Interfaces = append(a.Spec.Interfaces, v1alpha1.InterfaceName(i))
				}
			}
			res.L2Advertisements = append(res.L2Advertisements, a)
		default:
			continue
		}
		seen[w[0]+"/"+w[1]] = true
	}
	return res
}

// options splits words into key=value options and the other words.
func options(words []string) (map[string]string, []string) {
	opts := map[string]string{}
	var rest []string
	for _, w := range words {
		if k, v, ok := strings.Cut(w, "="); ok {
			opts[k] = v
			continue
		}
		rest = append(rest, w)
	}
	return opts, rest
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func duration(s string) *metav1.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil
	}
	return &metav1.Duration{Duration: d}
}

func envSelector(opts map[string]string, key string) *metav1.LabelSelector {
	if v, ok := opts[key]; ok {
		return matchLabels("env", v)
	}
	return nil
}

func list(opts map[string]string, key string) []v1alpha1.ObjectName {
	var out []v1alpha1.ObjectName
	for _, n := range strings.Split(opts[key], ",") {
		if n != "" {
			out = append(out, v1alpha1.ObjectName(n))
		}
	}
	return out
}

func target(opts map[string]string) v1alpha1.AdvertisementTarget {
	return v1alpha1.AdvertisementTarget{
		IPPools:         list(opts, "pools"),
		IPPoolSelector:  envSelector(opts, "poolsel"),
		ServiceSelector: envSelector(opts, "svcsel"),
		NodeSelector:    envSelector(opts, "nodesel"),
	}
}

func reversed(res config.Resources) config.Resources {
	out := config.Resources{
		Pools:             slices.Clone(res.Pools),
		Peers:             slices.Clone(res.Peers),
		BGPAdvertisements: slices.Clone(res.BGPAdvertisements),
		L2Advertisements:  slices.Clone(res.L2Advertisements),
	}
	slices.Reverse(out.Pools)
	slices.Reverse(out.Peers)
	slices.Reverse(out.BGPAdvertisements)
	slices.Reverse(out.L2Advertisements)
	return out
}

func withoutObjects(res config.Resources, drop map[config.ObjectRef]bool) config.Resources {
	gone := func(k config.Kind, name string) bool { return drop[config.ObjectRef{Kind: k, Name: name}] }
	return config.Resources{
		Pools: slices.DeleteFunc(slices.Clone(res.Pools), func(o v1alpha1.IPPool) bool {
			return gone(config.KindIPPool, o.Name)
		}),
		Peers: slices.DeleteFunc(slices.Clone(res.Peers), func(o v1alpha1.BGPPeer) bool {
			return gone(config.KindBGPPeer, o.Name)
		}),
		BGPAdvertisements: slices.DeleteFunc(slices.Clone(res.BGPAdvertisements), func(o v1alpha1.BGPAdvertisement) bool {
			return gone(config.KindBGPAdvertisement, o.Name)
		}),
		L2Advertisements: slices.DeleteFunc(slices.Clone(res.L2Advertisements), func(o v1alpha1.L2Advertisement) bool {
			return gone(config.KindL2Advertisement, o.Name)
		}),
	}
}

// checkProblemsNameObjects checks that every problem names an input object and a
// condition its kind carries, with a reason and a message.
func checkProblemsNameObjects(t *testing.T, res config.Resources, problems []config.Problem) {
	t.Helper()
	in := map[config.ObjectRef]bool{}
	for _, o := range res.Pools {
		in[config.ObjectRef{Kind: config.KindIPPool, Name: o.Name}] = true
	}
	for _, o := range res.Peers {
		in[config.ObjectRef{Kind: config.KindBGPPeer, Name: o.Name}] = true
	}
	for _, o := range res.BGPAdvertisements {
		in[config.ObjectRef{Kind: config.KindBGPAdvertisement, Name: o.Name}] = true
	}
	for _, o := range res.L2Advertisements {
		in[config.ObjectRef{Kind: config.KindL2Advertisement, Name: o.Name}] = true
	}
	for _, p := range problems {
		adv := p.Object.Kind == config.KindBGPAdvertisement || p.Object.Kind == config.KindL2Advertisement
		switch {
		case !in[p.Object]:
			t.Errorf("problem %q names %s, which is not in the input", p.Message, p.Object)
		case p.Condition != v1alpha1.ConditionAccepted && (p.Condition != v1alpha1.ConditionResolvedRefs || !adv):
			t.Errorf("problem of %s turns condition %q False, which a %s does not carry", p.Object, p.Condition, p.Object.Kind)
		case p.Reason == "" || p.Reason == config.Accepted || p.Reason == config.RefsResolved || p.Message == "":
			t.Errorf("problem of %s: reason %q, message %q", p.Object, p.Reason, p.Message)
		}
	}
}

// checkPools checks that each accepted pool holds its parsed addresses, sorted and
// disjoint, and that its capacities recount.
func checkPools(t *testing.T, res config.Resources, snap *config.Snapshot) {
	t.Helper()
	specs := map[string]*v1alpha1.IPPool{}
	for i := range res.Pools {
		specs[res.Pools[i].Name] = &res.Pools[i]
	}
	for _, p := range snap.Pools {
		var want []config.Range
		for _, s := range specs[p.Name].Spec.Addresses {
			r, err := config.ParseRange(string(s))
			if err != nil {
				t.Errorf("pool %s accepted with address %q: %v", p.Name, s, err)
				continue
			}
			want = append(want, r)
		}
		slices.SortFunc(want, func(a, b config.Range) int { return a.First.Compare(b.First) })
		if d := cmp.Diff(want, p.Ranges, cmpOpts); d != "" {
			t.Errorf("pool %s ranges (-parsed +snapshot):\n%s", p.Name, d)
		}
		c4, c6 := new(big.Int), new(big.Int)
		for i, r := range p.Ranges {
			if i > 0 && p.Ranges[i-1].Overlaps(r) {
				t.Errorf("pool %s: ranges %s and %s overlap", p.Name, p.Ranges[i-1], r)
			}
			if r.Family() == config.IPv6 {
				c6.Add(c6, r.Size())
				continue
			}
			n := r.Size()
			if p.AvoidBuggyIPs {
				n.Sub(n, big.NewInt(countBuggy(r)))
			}
			c4.Add(c4, n)
		}
		if c4.Cmp(p.Capacity4) != 0 || c6.Cmp(p.Capacity6) != 0 {
			t.Errorf("pool %s capacity %s/%s, recount %s/%s", p.Name, p.Capacity4, p.Capacity6, c4, c6)
		}
		if p.Deleting && p.AutoAssign {
			t.Errorf("pool %s is being deleted but assigns automatically", p.Name)
		}
	}
}

// countBuggy counts the addresses of an IPv4 range ending in .0 or .255, by /24.
func countBuggy(r config.Range) int64 {
	first, last := r.First.As4(), r.Last.As4()
	lo := int64(first[0])<<16 | int64(first[1])<<8 | int64(first[2])
	hi := int64(last[0])<<16 | int64(last[1])<<8 | int64(last[2])
	n := 2 * (hi - lo + 1)
	if first[3] > 0 {
		n-- // the first /24's .0 is outside
	}
	if last[3] < 255 {
		n-- // the last /24's .255 is outside
	}
	return n
}

// checkPeers checks that every accepted peer passes the rules Build promises.
func checkPeers(t *testing.T, snap *config.Snapshot) {
	t.Helper()
	for _, p := range snap.Peers {
		var why string
		switch {
		case p.MyASN == 0 || p.PeerASN == 0:
			why = "zero ASN"
		case !p.Address.IsValid() || p.Address.IsUnspecified() || p.Address.IsLoopback() || p.Address.Zone() != "" || p.Address.Is4In6():
			why = "bad address"
		case p.Port == 0:
			why = "port 0"
		case p.SourceAddress.IsValid() && p.SourceAddress.BitLen() != p.Address.BitLen():
			why = "source address of another family"
		case p.RouterID.IsValid() && (!p.RouterID.Is4() || p.RouterID.IsUnspecified()):
			why = "bad router ID"
		case p.HoldTime == 0 && p.KeepaliveTime != 0:
			why = "keepalives without a hold time"
		case p.HoldTime != 0 && (p.HoldTime < 3*time.Second || p.HoldTime > 65535*time.Second ||
			p.KeepaliveTime <= 0 || p.KeepaliveTime >= p.HoldTime):
			why = "hold or keepalive time out of range"
		case p.ConnectTime < time.Second:
			why = "connect time under 1s"
		case p.EBGPMultiHop && p.IBGP():
			why = "multihop iBGP"
		case p.NodeSelector == nil:
			why = "no node selector"
		}
		if why != "" {
			t.Errorf("peer %s accepted with %s: %+v", p.Name, why, p)
		}
	}
}

// checkAdvertisements checks that advertisements name only accepted pools and peers,
// sorted and unique, and cover exactly the pools their spec selects.
func checkAdvertisements(t *testing.T, res config.Resources, snap *config.Snapshot) {
	t.Helper()
	targets := map[config.ObjectRef]v1alpha1.AdvertisementTarget{}
	for _, a := range res.BGPAdvertisements {
		targets[config.ObjectRef{Kind: config.KindBGPAdvertisement, Name: a.Name}] = a.Spec.AdvertisementTarget
	}
	for _, a := range res.L2Advertisements {
		targets[config.ObjectRef{Kind: config.KindL2Advertisement, Name: a.Name}] = a.Spec.AdvertisementTarget
	}
	check := func(ref config.ObjectRef, tg config.Target) {
		if tg.ServiceSelector == nil || tg.NodeSelector == nil {
			t.Errorf("%s: nil selector", ref)
		}
		spec := targets[ref]
		var want []string
		for _, p := range snap.Pools {
			named := slices.Contains(spec.IPPools, v1alpha1.ObjectName(p.Name))
			all := len(spec.IPPools) == 0 && spec.IPPoolSelector == nil
			if named || all || spec.IPPoolSelector != nil && mustMatch(t, spec.IPPoolSelector, p.Labels) {
				want = append(want, p.Name)
			}
		}
		if d := cmp.Diff(want, tg.Pools, cmpOpts); d != "" {
			t.Errorf("%s pools (-want +got):\n%s", ref, d)
		}
	}
	for _, a := range snap.BGPAdvertisements {
		ref := config.ObjectRef{Kind: config.KindBGPAdvertisement, Name: a.Name}
		check(ref, a.Target)
		if !slices.IsSorted(a.Peers) || len(slices.Compact(slices.Clone(a.Peers))) != len(a.Peers) {
			t.Errorf("%s peers %q not sorted and unique", ref, a.Peers)
		}
		for _, p := range a.Peers {
			if snap.Peer(p) == nil {
				t.Errorf("%s names peer %q, which is not accepted", ref, p)
			}
		}
		if a.AllPeers != (len(a.Peers) == 0 && targetPeers(res, a.Name) == 0) {
			t.Errorf("%s: AllPeers %v with peers %q", ref, a.AllPeers, a.Peers)
		}
		if a.AggregationLength < 0 || a.AggregationLength > 32 || a.AggregationLengthV6 < 0 || a.AggregationLengthV6 > 128 {
			t.Errorf("%s: aggregation lengths %d/%d", ref, a.AggregationLength, a.AggregationLengthV6)
		}
	}
	for _, a := range snap.L2Advertisements {
		check(config.ObjectRef{Kind: config.KindL2Advertisement, Name: a.Name}, a.Target)
	}
}

func targetPeers(res config.Resources, name string) int {
	for _, a := range res.BGPAdvertisements {
		if a.Name == name {
			return len(a.Spec.Peers)
		}
	}
	return -1
}

func mustMatch(t *testing.T, s *metav1.LabelSelector, set labels.Set) bool {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		t.Errorf("an advertisement with selector %v was accepted: %v", s, err)
		return false
	}
	return sel.Matches(set)
}
