package config_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

func TestBuildPool(t *testing.T) {
	tests := []struct {
		name string
		pool v1alpha1.IPPool
		// want is the accepted pool; nil when the pool is left out with wantReason and a
		// message containing wantMsg.
		want       *config.Pool
		wantReason config.Reason
		wantMsg    string
	}{
		{
			name: "defaults",
			pool: ipPool("p", 0, "198.18.2.192/26"),
			want: wantPool(t, "p", 0, "198.18.2.192/26"),
		},
		{
			name: "every field",
			pool: with(ipPool("p", 0, "198.18.2.0/24"), func(p *v1alpha1.IPPool) {
				p.Labels = map[string]string{"env": "prod"}
				p.Spec.AutoAssign = ptr.To(false)
				p.Spec.Priority = 10
				p.Spec.IPMode = v1alpha1.IPModeProxy
				p.Spec.ServiceSelector = matchLabels("tier", "edge")
				p.Spec.NamespaceSelector = matchIn("team", "a", "b")
			}),
			want: edit(wantPool(t, "p", 0, "198.18.2.0/24"), func(p *config.Pool) {
				p.Labels = labels.Set{"env": "prod"}
				p.AutoAssign = false
				p.Priority = 10
				p.IPMode = v1alpha1.IPModeProxy
				p.ServiceSelector = mustSelector(t, matchLabels("tier", "edge"))
				p.NamespaceSelector = mustSelector(t, matchIn("team", "a", "b"))
			}),
		},
		{
			name: "autoAssign true",
			pool: with(ipPool("p", 0, "10.0.0.0/24"), func(p *v1alpha1.IPPool) { p.Spec.AutoAssign = ptr.To(true) }),
			want: wantPool(t, "p", 0, "10.0.0.0/24"),
		},
		{
			name: "explicit VIP",
			pool: with(ipPool("p", 0, "10.0.0.0/24"), func(p *v1alpha1.IPPool) { p.Spec.IPMode = v1alpha1.IPModeVIP }),
			want: wantPool(t, "p", 0, "10.0.0.0/24"),
		},
		{
			name: "ranges sorted IPv4 first",
			pool: ipPool("p", 0, "2001:db8::/64", "10.0.1.0/24", "10.0.0.10-10.0.0.20"),
			want: wantPool(t, "p", 0, "10.0.0.10-10.0.0.20", "10.0.1.0/24", "2001:db8::/64"),
		},
		{
			name: "adjacent ranges",
			pool: ipPool("p", 0, "10.0.0.128/25", "10.0.0.0/25", "10.0.1.0-10.0.1.0"),
			want: wantPool(t, "p", 0, "10.0.0.0/25", "10.0.0.128/25", "10.0.1.0/32"),
		},
		{
			name: "same numbers in both families",
			pool: ipPool("p", 0, "10.0.0.0/24", "::a00:0/120"),
			want: wantPool(t, "p", 0, "10.0.0.0/24", "::a00:0/120"),
		},
		{
			name:       "no addresses",
			pool:       ipPool("p", 0),
			wantReason: config.InvalidAddresses,
			wantMsg:    "no addresses",
		},
		{
			name:       "CIDR with host bits",
			pool:       ipPool("p", 0, "10.0.0.0/24", "198.18.2.193/26"),
			wantReason: config.InvalidAddresses,
			wantMsg:    "addresses[1]: \"198.18.2.193/26\" has host bits set: use 198.18.2.192/26",
		},
		{
			name:       "IPv4 first greater than last",
			pool:       ipPool("p", 0, "10.0.0.20-10.0.0.10"),
			wantReason: config.InvalidAddresses,
			wantMsg:    "first address is greater than last",
		},
		{
			name:       "IPv6 first greater than last",
			pool:       ipPool("p", 0, "2001:db8::10-2001:db8::9"),
			wantReason: config.InvalidAddresses,
			wantMsg:    "first address is greater than last",
		},
		{
			name:       "mixed families",
			pool:       ipPool("p", 0, "10.0.0.1-2001:db8::1"),
			wantReason: config.InvalidAddresses,
			wantMsg:    "mixes IPv4 and IPv6",
		},
		{
			name:       "not an address",
			pool:       ipPool("p", 0, "10.0.0.0/24", "pool-a"),
			wantReason: config.InvalidAddresses,
			wantMsg:    "addresses[1]",
		},
		{
			name:       "overlapping ranges in one pool",
			pool:       ipPool("p", 0, "10.0.0.0/24", "10.0.0.200-10.0.1.10"),
			wantReason: config.InvalidAddresses,
			wantMsg:    "10.0.0.200-10.0.1.10 overlaps 10.0.0.0/24 in the same pool",
		},
		{
			name:       "overlapping IPv6 ranges in one pool",
			pool:       ipPool("p", 0, "2001:db8::/120", "2001:db8::ff-2001:db8::1ff"),
			wantReason: config.InvalidAddresses,
			wantMsg:    "overlaps 2001:db8::/120 in the same pool",
		},
		{
			name:       "same CIDR twice",
			pool:       ipPool("p", 0, "10.0.0.0/24", "10.0.0.0/24"),
			wantReason: config.InvalidAddresses,
			wantMsg:    "in the same pool",
		},
		{
			// The first range contains the third; the second sits between them.
			name:       "range contained in a non-adjacent one",
			pool:       ipPool("p", 0, "10.0.0.0/24", "10.0.0.10/32", "10.0.0.200/32"),
			wantReason: config.InvalidAddresses,
			wantMsg:    "in the same pool",
		},
		{
			name:       "bad ipMode",
			pool:       with(ipPool("p", 0, "10.0.0.0/24"), func(p *v1alpha1.IPPool) { p.Spec.IPMode = "NAT" }),
			wantReason: config.InvalidAddresses,
			wantMsg:    `ipMode "NAT" is neither VIP nor Proxy`,
		},
		{
			name:       "bad serviceSelector",
			pool:       with(ipPool("p", 0, "10.0.0.0/24"), func(p *v1alpha1.IPPool) { p.Spec.ServiceSelector = badSelector() }),
			wantReason: config.InvalidSelector,
			wantMsg:    "serviceSelector: ",
		},
		{
			name:       "bad namespaceSelector",
			pool:       with(ipPool("p", 0, "10.0.0.0/24"), func(p *v1alpha1.IPPool) { p.Spec.NamespaceSelector = badSelector() }),
			wantReason: config.InvalidSelector,
			wantMsg:    "namespaceSelector: ",
		},
		{
			name: "bad label value in selector",
			pool: with(ipPool("p", 0, "10.0.0.0/24"), func(p *v1alpha1.IPPool) {
				p.Spec.ServiceSelector = matchLabels("tier", "not a value!")
			}),
			wantReason: config.InvalidSelector,
			wantMsg:    "serviceSelector: ",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap, problems := config.Build(config.Resources{Pools: []v1alpha1.IPPool{tc.pool}})
			if tc.want == nil {
				checkRejected(t, problems, config.ObjectRef{Kind: config.KindIPPool, Name: tc.pool.Name}, tc.wantReason, tc.wantMsg)
				if d := cmp.Diff([]*config.Pool(nil), snap.Pools, snapOpts); d != "" {
					t.Errorf("Build() pools (-want +got):\n%s", d)
				}
				checkLookups(t, snap, tc.pool.Name)
				return
			}
			if len(problems) > 0 {
				t.Errorf("Build() problems = %v, want none", problems)
			}
			if d := cmp.Diff([]*config.Pool{tc.want}, snap.Pools, snapOpts); d != "" {
				t.Errorf("Build() pools (-want +got):\n%s", d)
			}
			checkLookups(t, snap)
		})
	}
}

func TestBuildPoolCapacity(t *testing.T) {
	tests := []struct {
		name      string
		addrs     []string
		avoid     bool
		want4     string
		want6     string
		contains  []string // addresses Pool.Contains must report, buggy or not
		notInPool []string
	}{
		{name: "/24", addrs: []string{"10.0.0.0/24"}, want4: "256", want6: "0"},
		{name: "/24 avoiding buggy IPs", addrs: []string{"10.0.0.0/24"}, avoid: true, want4: "254", want6: "0",
			contains: []string{"10.0.0.0", "10.0.0.255"}, notInPool: []string{"10.0.1.0"}},
		{name: "range across a /24 boundary", addrs: []string{"10.0.0.250-10.0.1.5"}, avoid: true, want4: "10", want6: "0"},
		{name: "range across a /24 boundary, buggy IPs kept", addrs: []string{"10.0.0.250-10.0.1.5"}, want4: "12", want6: "0"},
		{name: "/16 avoiding buggy IPs", addrs: []string{"10.1.0.0/16"}, avoid: true, want4: "65024", want6: "0"}, // 65536-512
		{name: "only buggy IPs", addrs: []string{"10.0.0.255-10.0.1.0"}, avoid: true, want4: "0", want6: "0"},
		{name: "no buggy IPs in range", addrs: []string{"10.0.0.1-10.0.0.254"}, avoid: true, want4: "254", want6: "0"},
		{name: "single .0", addrs: []string{"10.0.0.0/32"}, avoid: true, want4: "0", want6: "0"},
		{name: "everything avoiding buggy IPs", addrs: []string{"0.0.0.0/0"}, avoid: true, want4: "4261412864", want6: "0"}, // 2^32 - 2*2^24
		{name: "IPv6 /64", addrs: []string{"2001:db8::/64"}, want4: "0", want6: "18446744073709551616"},
		{name: "IPv6 unaffected by avoidBuggyIPs", addrs: []string{"2001:db8::/120"}, avoid: true, want4: "0", want6: "256",
			contains: []string{"2001:db8::", "2001:db8::ff"}},
		{name: "dual stack sums per family",
			addrs: []string{"10.0.0.0/24", "10.0.2.0/25", "2001:db8::/64", "2001:db8:1::1-2001:db8:1::10"},
			avoid: true, want4: "381", want6: "18446744073709551632",
			contains: []string{"10.0.0.7", "10.0.2.127", "2001:db8:1::10"}, notInPool: []string{"10.0.2.128", "10.0.1.1", "2001:db8:1::11"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pool := ipPool("p", 0, tc.addrs...)
			pool.Spec.AvoidBuggyIPs = tc.avoid
			snap, problems := config.Build(config.Resources{Pools: []v1alpha1.IPPool{pool}})
			if len(problems) > 0 {
				t.Fatalf("Build() problems = %v", problems)
			}
			p := snap.Pool("p")
			want := []string{tc.want4, tc.want6}
			got := []string{p.Capacity(config.IPv4).String(), p.Capacity(config.IPv6).String()}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("Capacity(IPv4), Capacity(IPv6) (-want +got):\n%s", d)
			}
			if p.AvoidBuggyIPs != tc.avoid {
				t.Errorf("AvoidBuggyIPs = %v, want %v", p.AvoidBuggyIPs, tc.avoid)
			}
			for _, a := range tc.contains {
				if !p.Contains(netip.MustParseAddr(a)) {
					t.Errorf("Contains(%s) = false, want true", a)
				}
			}
			for _, a := range tc.notInPool {
				if p.Contains(netip.MustParseAddr(a)) {
					t.Errorf("Contains(%s) = true, want false", a)
				}
			}
		})
	}
}

func TestBuildPoolOverlap(t *testing.T) {
	overlapMsg := func(mine, theirs, older string) string {
		return "addresses " + mine + " overlap " + theirs + " of older pool \"" + older +
			"\"; this pool is not used until the overlap is removed"
	}
	tests := []struct {
		name         string
		pools        []v1alpha1.IPPool
		wantAccepted []string
		wantProblems []config.Problem
	}{
		{
			// The older pool wins although its name sorts last.
			name:         "older pool wins",
			pools:        []v1alpha1.IPPool{ipPool("a-new", 5, "10.0.0.0/24"), ipPool("z-old", 1, "10.0.0.128/25")},
			wantAccepted: []string{"z-old"},
			wantProblems: []config.Problem{
				rejected(config.KindIPPool, "a-new", config.PoolOverlap, overlapMsg("10.0.0.0/24", "10.0.0.128/25", "z-old")),
			},
		},
		{
			name:         "same timestamp: name decides",
			pools:        []v1alpha1.IPPool{ipPool("b", 3, "10.0.0.0/24"), ipPool("a", 3, "10.0.0.10-10.0.0.20")},
			wantAccepted: []string{"a"},
			wantProblems: []config.Problem{
				rejected(config.KindIPPool, "b", config.PoolOverlap, overlapMsg("10.0.0.0/24", "10.0.0.10-10.0.0.20", "a")),
			},
		},
		{
			name:         "IPv6 overlap",
			pools:        []v1alpha1.IPPool{ipPool("old", 0, "2001:db8::/64"), ipPool("new", 1, "2001:db8::ff00-2001:db8:0:1::ff")},
			wantAccepted: []string{"old"},
			wantProblems: []config.Problem{
				rejected(config.KindIPPool, "new", config.PoolOverlap,
					overlapMsg("2001:db8::ff00-2001:db8:0:1::ff", "2001:db8::/64", "old")),
			},
		},
		{
			// The newer pool's first range is fine; its second spans a gap and reaches
			// into the second range taken.
			name: "overlap with a later taken range",
			pools: []v1alpha1.IPPool{
				ipPool("a", 0, "10.0.0.0/28"),
				ipPool("b", 1, "10.0.0.64/28", "2001:db8::/64"),
				ipPool("c", 2, "10.1.0.0/24", "10.0.0.20-10.0.0.70"),
			},
			wantAccepted: []string{"a", "b"},
			wantProblems: []config.Problem{
				rejected(config.KindIPPool, "c", config.PoolOverlap, overlapMsg("10.0.0.20-10.0.0.70", "10.0.0.64/28", "b")),
			},
		},
		{
			// b loses to a; c overlaps only b, which is not in use, so c is accepted.
			name: "left-out pool does not block",
			pools: []v1alpha1.IPPool{
				ipPool("c", 2, "10.0.1.0/24"),
				ipPool("b", 1, "10.0.0.128-10.0.1.127"),
				ipPool("a", 0, "10.0.0.0/24"),
			},
			wantAccepted: []string{"a", "c"},
			wantProblems: []config.Problem{
				rejected(config.KindIPPool, "b", config.PoolOverlap, overlapMsg("10.0.0.128-10.0.1.127", "10.0.0.0/24", "a")),
			},
		},
		{
			name:         "touching pools",
			pools:        []v1alpha1.IPPool{ipPool("a", 0, "10.0.0.0/25"), ipPool("b", 1, "10.0.0.128-10.0.0.255")},
			wantAccepted: []string{"a", "b"},
		},
		{
			name:         "same numbers in both families",
			pools:        []v1alpha1.IPPool{ipPool("a", 0, "10.0.0.0/8"), ipPool("b", 1, "::a00:0/104")},
			wantAccepted: []string{"a", "b"},
		},
		{
			// An invalid older pool takes no addresses.
			name:         "invalid older pool",
			pools:        []v1alpha1.IPPool{ipPool("old", 0, "10.0.0.0/24", "bogus"), ipPool("new", 1, "10.0.0.0/24")},
			wantAccepted: []string{"new"},
			wantProblems: []config.Problem{
				rejected(config.KindIPPool, "old", config.InvalidAddresses,
					`addresses[1]: "bogus" is neither a CIDR nor a range first-last`),
			},
		},
		{
			name: "several losers",
			pools: []v1alpha1.IPPool{
				ipPool("d", 3, "10.0.0.7/32"),
				ipPool("a", 0, "10.0.0.0/29"),
				ipPool("c", 2, "10.0.0.6-10.0.0.9"),
				ipPool("b", 1, "10.0.0.8/29"),
			},
			wantAccepted: []string{"a", "b"},
			wantProblems: []config.Problem{
				rejected(config.KindIPPool, "c", config.PoolOverlap, overlapMsg("10.0.0.6-10.0.0.9", "10.0.0.0/29", "a")),
				rejected(config.KindIPPool, "d", config.PoolOverlap, overlapMsg("10.0.0.7/32", "10.0.0.0/29", "a")),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap, problems := config.Build(config.Resources{Pools: tc.pools})
			var got []string
			for _, p := range snap.Pools {
				got = append(got, p.Name)
			}
			if d := cmp.Diff(tc.wantAccepted, got); d != "" {
				t.Errorf("Build() accepted pools (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.wantProblems, problems, cmpOpts); d != "" {
				t.Errorf("Build() problems (-want +got):\n%s", d)
			}
			checkLookups(t, snap)
		})
	}
}

// TestBuildPoolOverlapResolved checks that a pool left out for an overlap comes back as
// soon as the overlap is gone, either way it goes.
func TestBuildPoolOverlapResolved(t *testing.T) {
	older := ipPool("older", 0, "10.0.0.0/24")
	newer := ipPool("newer", 1, "10.0.0.128/25", "10.0.5.0/24")
	tests := []struct {
		name  string
		pools []v1alpha1.IPPool
		want  []*config.Pool
	}{
		{
			name:  "overlapping range removed",
			pools: []v1alpha1.IPPool{older, ipPool("newer", 1, "10.0.5.0/24")},
			want:  []*config.Pool{wantPool(t, "newer", 1, "10.0.5.0/24"), wantPool(t, "older", 0, "10.0.0.0/24")},
		},
		{
			name:  "older pool deleted",
			pools: []v1alpha1.IPPool{newer},
			want:  []*config.Pool{wantPool(t, "newer", 1, "10.0.0.128/25", "10.0.5.0/24")},
		},
		{
			name:  "older pool shrunk",
			pools: []v1alpha1.IPPool{ipPool("older", 0, "10.0.0.0/25"), newer},
			want: []*config.Pool{
				wantPool(t, "newer", 1, "10.0.0.128/25", "10.0.5.0/24"),
				wantPool(t, "older", 0, "10.0.0.0/25"),
			},
		},
	}

	_, problems := config.Build(config.Resources{Pools: []v1alpha1.IPPool{older, newer}})
	if len(problems) != 1 || problems[0].Reason != config.PoolOverlap {
		t.Fatalf("Build() with the overlap: problems = %v, want one PoolOverlap", problems)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap, problems := config.Build(config.Resources{Pools: tc.pools})
			if d := cmp.Diff([]config.Problem(nil), problems, cmpOpts); d != "" {
				t.Errorf("Build() problems (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.want, snap.Pools, snapOpts); d != "" {
				t.Errorf("Build() pools (-want +got):\n%s", d)
			}
			checkLookups(t, snap)
		})
	}
}
