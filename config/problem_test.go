package config_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

func TestConditions(t *testing.T) {
	pool := config.ObjectRef{Kind: config.KindIPPool, Name: "p"}
	peer := config.ObjectRef{Kind: config.KindBGPPeer, Name: "r1"}
	bgp := config.ObjectRef{Kind: config.KindBGPAdvertisement, Name: "adv"}
	l2 := config.ObjectRef{Kind: config.KindL2Advertisement, Name: "adv"}
	accepted := func(gen int64) metav1.Condition {
		return metav1.Condition{Type: v1alpha1.ConditionAccepted, Status: metav1.ConditionTrue, ObservedGeneration: gen,
			Reason: "Accepted", Message: "in use"}
	}
	resolved := func(gen int64) metav1.Condition {
		return metav1.Condition{Type: v1alpha1.ConditionResolvedRefs, Status: metav1.ConditionTrue, ObservedGeneration: gen,
			Reason: "ResolvedRefs", Message: "every referenced object exists"}
	}
	falseCond := func(typ string, gen int64, reason config.Reason, msg string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: metav1.ConditionFalse, ObservedGeneration: gen, Reason: string(reason), Message: msg}
	}
	others := []config.Problem{
		// Same name, other kinds: none of these concern pool, peer, bgp or l2 below.
		rejected(config.KindIPPool, "adv", config.InvalidAddresses, "no addresses"),
		rejected(config.KindBGPPeer, "p", config.InvalidPeer, "bad"),
		unresolved(config.KindL2Advertisement, "r1", config.PoolNotFound, "gone"),
	}
	tests := []struct {
		name     string
		obj      config.ObjectRef
		gen      int64
		problems []config.Problem
		want     []metav1.Condition
	}{
		{name: "pool in use", obj: pool, gen: 3, problems: others, want: []metav1.Condition{accepted(3)}},
		{name: "peer in use", obj: peer, gen: 1, want: []metav1.Condition{accepted(1)}},
		{
			name:     "pool left out",
			obj:      pool,
			gen:      2,
			problems: append([]config.Problem{rejected(config.KindIPPool, "p", config.PoolOverlap, "overlaps q")}, others...),
			want:     []metav1.Condition{falseCond(v1alpha1.ConditionAccepted, 2, config.PoolOverlap, "overlaps q")},
		},
		{
			name: "first reason, every message",
			obj:  peer,
			gen:  5,
			problems: []config.Problem{
				rejected(config.KindBGPPeer, "r1", config.InvalidPeer, "first"),
				rejected(config.KindBGPPeer, "r1", config.DuplicatePeer, "second"),
				rejected(config.KindBGPPeer, "r2", config.DuplicatePeer, "other peer"),
			},
			want: []metav1.Condition{falseCond(v1alpha1.ConditionAccepted, 5, config.InvalidPeer, "first; second")},
		},
		{
			name: "BGP advertisement in use",
			obj:  bgp,
			gen:  1,
			// Problems of the L2Advertisement of the same name do not count.
			problems: []config.Problem{unresolved(config.KindL2Advertisement, "adv", config.PoolNotFound, "no pool")},
			want:     []metav1.Condition{accepted(1), resolved(1)},
		},
		{
			name: "BGP advertisement with missing references",
			obj:  bgp,
			gen:  4,
			problems: []config.Problem{
				unresolved(config.KindBGPAdvertisement, "adv", config.PoolNotFound, `no accepted IPPool named "x"`),
				unresolved(config.KindBGPAdvertisement, "adv", config.PeerNotFound, `no accepted BGPPeer named "y"`),
			},
			want: []metav1.Condition{
				accepted(4),
				falseCond(v1alpha1.ConditionResolvedRefs, 4, config.PoolNotFound,
					`no accepted IPPool named "x"; no accepted BGPPeer named "y"`),
			},
		},
		{
			name: "BGP advertisement left out with missing references",
			obj:  bgp,
			gen:  1,
			problems: []config.Problem{
				rejected(config.KindBGPAdvertisement, "adv", config.AdvertisementConflict, "conflict"),
				unresolved(config.KindBGPAdvertisement, "adv", config.PeerNotFound, "no peer"),
			},
			want: []metav1.Condition{
				falseCond(v1alpha1.ConditionAccepted, 1, config.AdvertisementConflict, "conflict"),
				falseCond(v1alpha1.ConditionResolvedRefs, 1, config.PeerNotFound, "no peer"),
			},
		},
		{
			name:     "L2 advertisement with a missing pool",
			obj:      l2,
			gen:      7,
			problems: []config.Problem{unresolved(config.KindL2Advertisement, "adv", config.PoolNotFound, "no pool")},
			want:     []metav1.Condition{accepted(7), falseCond(v1alpha1.ConditionResolvedRefs, 7, config.PoolNotFound, "no pool")},
		},
		{
			name:     "L2 advertisement left out",
			obj:      l2,
			gen:      7,
			problems: []config.Problem{rejected(config.KindL2Advertisement, "adv", config.InvalidSelector, "bad selector")},
			want:     []metav1.Condition{falseCond(v1alpha1.ConditionAccepted, 7, config.InvalidSelector, "bad selector"), resolved(7)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := config.Conditions(tc.obj, tc.gen, tc.problems)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Conditions() (-want +got):\n%s", d)
			}
		})
	}
}

func TestApplyConditions(t *testing.T) {
	then := metav1.NewTime(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	now := metav1.NewTime(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
	cond := func(typ string, status metav1.ConditionStatus, reason, msg string, gen int64, at metav1.Time) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen, LastTransitionTime: at}
	}
	const (
		acc = v1alpha1.ConditionAccepted
		ref = v1alpha1.ConditionResolvedRefs
		yes = metav1.ConditionTrue
		no  = metav1.ConditionFalse
	)
	tests := []struct {
		name        string
		have        []metav1.Condition
		want        []metav1.Condition // as Conditions returns them: no time
		wantHave    []metav1.Condition
		wantChanged bool
	}{
		{
			name:        "first time",
			want:        []metav1.Condition{cond(acc, yes, "Accepted", "in use", 1, metav1.Time{})},
			wantHave:    []metav1.Condition{cond(acc, yes, "Accepted", "in use", 1, now)},
			wantChanged: true,
		},
		{
			name:        "unchanged",
			have:        []metav1.Condition{cond(acc, yes, "Accepted", "in use", 1, then)},
			want:        []metav1.Condition{cond(acc, yes, "Accepted", "in use", 1, metav1.Time{})},
			wantHave:    []metav1.Condition{cond(acc, yes, "Accepted", "in use", 1, then)},
			wantChanged: false,
		},
		{
			name:        "status changed",
			have:        []metav1.Condition{cond(acc, yes, "Accepted", "in use", 1, then)},
			want:        []metav1.Condition{cond(acc, no, "PoolOverlap", "overlaps", 1, metav1.Time{})},
			wantHave:    []metav1.Condition{cond(acc, no, "PoolOverlap", "overlaps", 1, now)},
			wantChanged: true,
		},
		{
			// LastTransitionTime is when the status last changed.
			name:        "reason changed, status not",
			have:        []metav1.Condition{cond(acc, no, "InvalidAddresses", "bad", 1, then)},
			want:        []metav1.Condition{cond(acc, no, "PoolOverlap", "overlaps", 1, metav1.Time{})},
			wantHave:    []metav1.Condition{cond(acc, no, "PoolOverlap", "overlaps", 1, then)},
			wantChanged: true,
		},
		{
			name:        "message changed",
			have:        []metav1.Condition{cond(acc, no, "PoolOverlap", "overlaps a", 1, then)},
			want:        []metav1.Condition{cond(acc, no, "PoolOverlap", "overlaps b", 1, metav1.Time{})},
			wantHave:    []metav1.Condition{cond(acc, no, "PoolOverlap", "overlaps b", 1, then)},
			wantChanged: true,
		},
		{
			name:        "generation changed",
			have:        []metav1.Condition{cond(acc, yes, "Accepted", "in use", 1, then)},
			want:        []metav1.Condition{cond(acc, yes, "Accepted", "in use", 2, metav1.Time{})},
			wantHave:    []metav1.Condition{cond(acc, yes, "Accepted", "in use", 2, then)},
			wantChanged: true,
		},
		{
			name: "one of two changed, others kept",
			have: []metav1.Condition{
				cond("Ready", yes, "Up", "", 1, then),
				cond(acc, yes, "Accepted", "in use", 1, then),
				cond(ref, yes, "ResolvedRefs", "every referenced object exists", 1, then),
			},
			want: []metav1.Condition{
				cond(acc, yes, "Accepted", "in use", 1, metav1.Time{}),
				cond(ref, no, "PoolNotFound", "no pool", 1, metav1.Time{}),
			},
			wantHave: []metav1.Condition{
				cond("Ready", yes, "Up", "", 1, then),
				cond(acc, yes, "Accepted", "in use", 1, then),
				cond(ref, no, "PoolNotFound", "no pool", 1, now),
			},
			wantChanged: true,
		},
		{
			name: "nothing changed of two",
			have: []metav1.Condition{
				cond(acc, yes, "Accepted", "in use", 3, then),
				cond(ref, no, "PoolNotFound", "no pool", 3, then),
			},
			want: []metav1.Condition{
				cond(acc, yes, "Accepted", "in use", 3, metav1.Time{}),
				cond(ref, no, "PoolNotFound", "no pool", 3, metav1.Time{}),
			},
			wantHave: []metav1.Condition{
				cond(acc, yes, "Accepted", "in use", 3, then),
				cond(ref, no, "PoolNotFound", "no pool", 3, then),
			},
			wantChanged: false,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			have := append([]metav1.Condition(nil), tc.have...)
			changed := config.ApplyConditions(&have, tc.want, now)
			if changed != tc.wantChanged {
				t.Errorf("ApplyConditions() = %v, want %v", changed, tc.wantChanged)
			}
			if d := cmp.Diff(tc.wantHave, have); d != "" {
				t.Errorf("ApplyConditions() conditions (-want +got):\n%s", d)
			}
		})
	}
}

// TestApplyConditionsBuild runs the whole loop: Build, Conditions, ApplyConditions twice.
func TestApplyConditionsBuild(t *testing.T) {
	then := metav1.NewTime(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	now := metav1.NewTime(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
	_, problems := config.Build(config.Resources{Pools: []v1alpha1.IPPool{
		ipPool("old", 0, "10.0.0.0/24"), ipPool("new", 1, "10.0.0.0/25"),
	}})
	var status []metav1.Condition
	obj := config.ObjectRef{Kind: config.KindIPPool, Name: "new"}
	if !config.ApplyConditions(&status, config.Conditions(obj, 1, problems), then) {
		t.Errorf("first ApplyConditions() = false, want true")
	}
	if config.ApplyConditions(&status, config.Conditions(obj, 1, problems), now) {
		t.Errorf("second ApplyConditions() = true, want false")
	}
	want := []metav1.Condition{{
		Type: v1alpha1.ConditionAccepted, Status: metav1.ConditionFalse, ObservedGeneration: 1,
		LastTransitionTime: then, Reason: "PoolOverlap",
		Message: `addresses 10.0.0.0/25 overlap 10.0.0.0/24 of older pool "old"; this pool is not used until the overlap is removed`,
	}}
	if d := cmp.Diff(want, status); d != "" {
		t.Errorf("conditions (-want +got):\n%s", d)
	}
}

// TestBuildProblemsSorted checks Build sorts its problems by kind, name and condition,
// whatever order it found them in.
func TestBuildProblemsSorted(t *testing.T) {
	res := config.Resources{
		Pools: []v1alpha1.IPPool{
			ipPool("z", 0, "10.0.0.0/24"),
			ipPool("b", 1, "10.0.0.0/24"),  // overlaps z
			ipPool("a", 2, "10.0.0.0-bad"), // invalid
		},
		Peers: []v1alpha1.BGPPeer{
			bgpPeer("q", 0, "::"),
			bgpPeer("p", 1, "192.0.2.1"),
			bgpPeer("o", 2, "192.0.2.1"), // duplicate of p
		},
		BGPAdvertisements: []v1alpha1.BGPAdvertisement{
			bgpAdv("y", 0, func(s *v1alpha1.BGPAdvertisementSpec) { s.Communities = []v1alpha1.Community{"x"} }),
			bgpAdv("x", 1, func(s *v1alpha1.BGPAdvertisementSpec) {
				s.IPPools, s.Peers, s.LocalPref = names("b"), names("q"), ptr64(100)
			}),
			bgpAdv("w", 2, func(s *v1alpha1.BGPAdvertisementSpec) { s.LocalPref = ptr64(200) }), // no conflict: x covers no pool
		},
		L2Advertisements: []v1alpha1.L2Advertisement{
			l2Adv("m", 0, func(s *v1alpha1.L2AdvertisementSpec) { s.IPPools = names("b") }),
			l2Adv("k", 1, func(s *v1alpha1.L2AdvertisementSpec) { s.NodeSelector = badSelector() }),
		},
	}
	_, problems := config.Build(res)
	want := []problemKey{
		{config.ObjectRef{Kind: config.KindBGPAdvertisement, Name: "x"}, v1alpha1.ConditionResolvedRefs, config.PoolNotFound},
		{config.ObjectRef{Kind: config.KindBGPAdvertisement, Name: "x"}, v1alpha1.ConditionResolvedRefs, config.PeerNotFound},
		{config.ObjectRef{Kind: config.KindBGPAdvertisement, Name: "y"}, v1alpha1.ConditionAccepted, config.InvalidCommunity},
		{config.ObjectRef{Kind: config.KindBGPPeer, Name: "o"}, v1alpha1.ConditionAccepted, config.DuplicatePeer},
		{config.ObjectRef{Kind: config.KindBGPPeer, Name: "q"}, v1alpha1.ConditionAccepted, config.InvalidPeer},
		{config.ObjectRef{Kind: config.KindIPPool, Name: "a"}, v1alpha1.ConditionAccepted, config.InvalidAddresses},
		{config.ObjectRef{Kind: config.KindIPPool, Name: "b"}, v1alpha1.ConditionAccepted, config.PoolOverlap},
		{config.ObjectRef{Kind: config.KindL2Advertisement, Name: "k"}, v1alpha1.ConditionAccepted, config.InvalidSelector},
		{config.ObjectRef{Kind: config.KindL2Advertisement, Name: "m"}, v1alpha1.ConditionResolvedRefs, config.PoolNotFound},
	}
	if d := cmp.Diff(want, keys(problems)); d != "" {
		t.Errorf("Build() problems (-want +got):\n%s", d)
	}
}

func ptr64(v int64) *int64 { return &v }

func TestProblemError(t *testing.T) {
	p := rejected(config.KindIPPool, "p", config.InvalidAddresses, "no addresses")
	got := []string{p.Error(), p.Object.String()}
	want := []string{"IPPool/p: no addresses", "IPPool/p"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Error(), String() (-want +got):\n%s", d)
	}
}
