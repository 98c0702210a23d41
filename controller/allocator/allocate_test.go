package allocator

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/config/v1alpha1"
)

// allocateCase allocates before, in order, then req, and compares the outcome of req.
type allocateCase struct {
	name   string
	pools  []v1alpha1.IPPool
	before []Request
	req    Request
	want   outcome
}

func runAllocateCases(t *testing.T, tests []allocateCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newChecked(t, tt.pools...)
			mustAllocate(t, a, tt.before...)
			var names []string
			for _, p := range tt.pools {
				names = append(names, p.Name)
			}
			usageBefore := usage(a, names...)

			got := result(a.Allocate(tt.req))
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("Allocate(%s) (-want +got):\n%s", tt.req.Key, d)
			}
			if len(tt.want.Reasons) > 0 {
				// A failed allocation takes nothing.
				if asg, ok := a.Assigned(tt.req.Key); ok {
					t.Errorf("Assigned(%s) = %v after a failed Allocate", tt.req.Key, asg)
				}
				if d := cmp.Diff(usageBefore, usage(a, names...)); d != "" {
					t.Errorf("usage changed by a failed Allocate (-before +after):\n%s", d)
				}
			}
		})
	}
}

func TestAllocatePoolChoice(t *testing.T) {
	a := ipPool("a", "198.51.100.10-198.51.100.19")
	b := ipPool("b", "203.0.113.10-203.0.113.19")
	one := ipPool("one", "198.51.100.1/32")
	runAllocateCases(t, []allocateCase{
		{
			name:  "first pool by name",
			pools: []v1alpha1.IPPool{b, a},
			req:   svc("s"),
			want:  got("a", "198.51.100.10"),
		},
		{
			name:  "lower priority value first",
			pools: []v1alpha1.IPPool{with(a, priority(10)), b},
			req:   svc("s"),
			want:  got("b", "203.0.113.10"),
		},
		{
			name:  "a pool whose selector matches comes before pools for everyone",
			pools: []v1alpha1.IPPool{a, with(b, priority(100), forServices("team", "x"))},
			req:   svc("s", labelled("team", "x")),
			want:  got("b", "203.0.113.10"),
		},
		{
			name:  "namespace selector",
			pools: []v1alpha1.IPPool{a, with(b, forNamespaces("env", "prod"))},
			req:   svc("s", inNamespace("shop", labels.Set{"env": "prod"})),
			want:  outcome{Pool: "b", IPs: []string{"203.0.113.10"}, IPMode: v1alpha1.IPModeVIP},
		},
		{
			name:  "selector does not match: the pool for everyone",
			pools: []v1alpha1.IPPool{with(a, priority(5)), with(b, forServices("team", "x"))},
			req:   svc("s", labelled("team", "y")),
			want:  got("a", "198.51.100.10"),
		},
		{
			name:  "autoAssign false is skipped",
			pools: []v1alpha1.IPPool{with(a, manual), b},
			req:   svc("s"),
			want:  got("b", "203.0.113.10"),
		},
		{
			name:  "only autoAssign false pools",
			pools: []v1alpha1.IPPool{with(a, manual)},
			req:   svc("s"),
			want:  refused(NoPoolForService),
		},
		{
			name:  "no pool selects the Service",
			pools: []v1alpha1.IPPool{with(a, forNamespaces("env", "prod"))},
			req:   svc("s"),
			want:  refused(NoPoolForService),
		},
		{
			name:  "named pool",
			pools: []v1alpha1.IPPool{a, b},
			req:   svc("s", inPool("b")),
			want:  got("b", "203.0.113.10"),
		},
		{
			name:  "named pool with autoAssign false",
			pools: []v1alpha1.IPPool{a, with(b, manual)},
			req:   svc("s", inPool("b")),
			want:  got("b", "203.0.113.10"),
		},
		{
			name:  "named pool does not exist",
			pools: []v1alpha1.IPPool{a},
			req:   svc("s", inPool("nope")),
			want:  refused(PoolNotFound),
		},
		{
			name:  "named pool does not select the Service",
			pools: []v1alpha1.IPPool{a, with(b, forServices("team", "x"))},
			req:   svc("s", inPool("b")),
			want:  refused(PoolNotAllowed),
		},
		{
			name:   "named pool exhausted: no other pool is tried",
			pools:  []v1alpha1.IPPool{a, one},
			before: []Request{svc("first", inPool("one"))},
			req:    svc("s", inPool("one")),
			want:   refused(PoolExhausted),
		},
		{
			name:   "exhausted pool spills over to the next",
			pools:  []v1alpha1.IPPool{one, with(b, priority(1))},
			before: []Request{svc("first")},
			req:    svc("s"),
			want:   got("b", "203.0.113.10"),
		},
		{
			name:   "every pool exhausted",
			pools:  []v1alpha1.IPPool{one, ipPool("two", "198.51.100.2/32")},
			before: []Request{svc("first"), svc("second")},
			req:    svc("s"),
			want:   refused(PoolExhausted),
		},
		{
			name:  "ipMode comes from the pool",
			pools: []v1alpha1.IPPool{with(a, proxy)},
			req:   svc("s"),
			want:  outcome{Pool: "a", IPs: []string{"198.51.100.10"}, IPMode: v1alpha1.IPModeProxy},
		},
	})
}

func TestAllocateRequestedIPs(t *testing.T) {
	a := ipPool("a", "198.51.100.0/24")
	b := ipPool("b", "203.0.113.0/24", "2001:db8:113::/64")
	runAllocateCases(t, []allocateCase{
		{
			name:  "requested IP",
			pools: []v1alpha1.IPPool{a, b},
			req:   svc("s", requesting("203.0.113.7")),
			want:  got("b", "203.0.113.7"),
		},
		{
			name:  "requested IP in an autoAssign false pool",
			pools: []v1alpha1.IPPool{a, with(b, manual)},
			req:   svc("s", requesting("203.0.113.7")),
			want:  got("b", "203.0.113.7"),
		},
		{
			name:  "requested IP in the named pool",
			pools: []v1alpha1.IPPool{a, b},
			req:   svc("s", requesting("203.0.113.7"), inPool("b")),
			want:  got("b", "203.0.113.7"),
		},
		{
			name:  "requested IP in no pool",
			pools: []v1alpha1.IPPool{a, b},
			req:   svc("s", requesting("192.0.2.1")),
			want:  refused(RequestedIPNotInPool),
		},
		{
			name:  "requested IP outside the named pool",
			pools: []v1alpha1.IPPool{a, b},
			req:   svc("s", requesting("203.0.113.7"), inPool("a")),
			want:  refused(RequestedIPNotInPool),
		},
		{
			name:  "requested IP in a pool that does not select the Service",
			pools: []v1alpha1.IPPool{a, with(b, forServices("team", "x"))},
			req:   svc("s", requesting("203.0.113.7")),
			want:  refused(PoolNotAllowed),
		},
		{
			name:   "requested IP held by a Service without a sharing key",
			pools:  []v1alpha1.IPPool{a},
			before: []Request{svc("holder", requesting("198.51.100.7"))},
			req:    svc("s", requesting("198.51.100.7"), sharingKey("k")),
			want:   heldBy("holder"),
		},
		{
			name:  "requested .0 in a pool avoiding buggy IPs",
			pools: []v1alpha1.IPPool{with(a, avoidBuggy)},
			req:   svc("s", requesting("198.51.100.0")),
			want:  refused(RequestedIPNotInPool),
		},
		{
			name:  "requested .255 in a pool that does not avoid them",
			pools: []v1alpha1.IPPool{a},
			req:   svc("s", requesting("198.51.100.255")),
			want:  got("a", "198.51.100.255"),
		},
		{
			name:  "two requested IPv4 addresses",
			pools: []v1alpha1.IPPool{a},
			req:   svc("s", requesting("198.51.100.7", "198.51.100.8")),
			want:  refused(InvalidRequest),
		},
		{
			name:  "zoned requested IP",
			pools: []v1alpha1.IPPool{b},
			req:   svc("s", only(v6), requesting("fe80::1%eth0")),
			want:  refused(InvalidRequest),
		},
		{
			name:  "IPv4-mapped requested IP",
			pools: []v1alpha1.IPPool{b},
			req:   svc("s", only(v6), requesting("::ffff:203.0.113.7")),
			want:  refused(InvalidRequest),
		},
		{
			name:   "requested IP of the best-effort family is still required",
			pools:  []v1alpha1.IPPool{b},
			before: []Request{svc("holder", only(v6), requesting("2001:db8:113::7"))},
			req:    svc("s", stack(PreferDualStack, v4, v6), requesting("2001:db8:113::7")),
			want:   heldBy("holder"),
		},
		{
			name:  "requested IPv6 for an IPv4 Service",
			pools: []v1alpha1.IPPool{b},
			req:   svc("s", requesting("2001:db8:113::7")),
			want:  refused(InvalidRequest),
		},
		{
			name:  "requested IPv4 and IPv6 in different pools",
			pools: []v1alpha1.IPPool{a, b},
			req:   svc("s", stack(RequireDualStack, v4, v6), requesting("198.51.100.7", "2001:db8:113::7")),
			want:  refused(RequestedIPNotInPool),
		},
		{
			name:  "requested IPv4 and IPv6, IPv6 listed first",
			pools: []v1alpha1.IPPool{a, b},
			req:   svc("s", stack(RequireDualStack, v4, v6), requesting("2001:db8:113::7", "203.0.113.7")),
			want:  got("b", "203.0.113.7", "2001:db8:113::7"),
		},
		{
			name: "the other family comes from the requested IP's pool",
			pools: []v1alpha1.IPPool{
				ipPool("a6", "2001:db8:1::/64"),
				with(b, priority(5)),
			},
			req:  svc("s", stack(PreferDualStack, v4, v6), requesting("203.0.113.7")),
			want: got("b", "203.0.113.7", "2001:db8:113::"),
		},
	})
}

func TestAllocateFamilies(t *testing.T) {
	a4 := ipPool("a4", "198.51.100.10-198.51.100.19")
	b6 := ipPool("b6", "2001:db8:113::/64")
	dual := ipPool("dual", "203.0.113.10-203.0.113.19", "2001:db8:18:2::1:0/112")
	one6 := ipPool("one6", "203.0.113.1/32", "2001:db8:18:2::1/128")
	runAllocateCases(t, []allocateCase{
		{
			name:  "IPv6 single stack",
			pools: []v1alpha1.IPPool{a4, b6},
			req:   svc("s", only(v6)),
			want:  got("b6", "2001:db8:113::"),
		},
		{
			name:  "SingleStack takes the primary family only",
			pools: []v1alpha1.IPPool{dual},
			req:   svc("s", stack(SingleStack, v6, v4)),
			want:  got("dual", "2001:db8:18:2::1:0"),
		},
		{
			name:  "PreferDualStack gets both, primary first",
			pools: []v1alpha1.IPPool{dual},
			req:   svc("s", stack(PreferDualStack, v6, v4)),
			want:  got("dual", "2001:db8:18:2::1:0", "203.0.113.10"),
		},
		{
			name:  "PreferDualStack prefers a pool with both families to a better single-family one",
			pools: []v1alpha1.IPPool{a4, with(dual, priority(10))},
			req:   svc("s", stack(PreferDualStack, v4, v6)),
			want:  got("dual", "203.0.113.10", "2001:db8:18:2::1:0"),
		},
		{
			name:  "PreferDualStack settles for the primary family",
			pools: []v1alpha1.IPPool{a4},
			req:   svc("s", stack(PreferDualStack, v4, v6)),
			want:  got("a4", "198.51.100.10"),
		},
		{
			name:   "PreferDualStack with the second family exhausted",
			pools:  []v1alpha1.IPPool{ipPool("x", "198.51.100.0/24", "2001:db8:1::/128")},
			before: []Request{svc("first", only(v6))},
			req:    svc("s", stack(PreferDualStack, v4, v6)),
			want:   got("x", "198.51.100.0"),
		},
		{
			name:  "PreferDualStack primary unavailable",
			pools: []v1alpha1.IPPool{a4},
			req:   svc("s", stack(PreferDualStack, v6, v4)),
			want:  refused(FamilyUnavailable),
		},
		{
			name:  "RequireDualStack from the one pool with both",
			pools: []v1alpha1.IPPool{a4, b6, with(dual, priority(10))},
			req:   svc("s", stack(RequireDualStack, v4, v6)),
			want:  got("dual", "203.0.113.10", "2001:db8:18:2::1:0"),
		},
		{
			name:  "RequireDualStack without a pool with both families",
			pools: []v1alpha1.IPPool{a4, b6},
			req:   svc("s", stack(RequireDualStack, v4, v6)),
			want:  refused(FamilyUnavailable),
		},
		{
			name:   "RequireDualStack with IPv6 exhausted takes nothing",
			pools:  []v1alpha1.IPPool{one6, ipPool("x", "198.51.100.0/24"), ipPool("y", "2001:db8:1::/64")},
			before: []Request{svc("first", only(v6), inPool("one6"))},
			req:    svc("s", stack(RequireDualStack, v4, v6), inPool("one6")),
			want:   refused(PoolExhausted),
		},
		{
			name:  "no families",
			pools: []v1alpha1.IPPool{a4},
			req:   svc("s", stack(SingleStack)),
			want:  refused(InvalidRequest),
		},
		{
			name:  "a family twice",
			pools: []v1alpha1.IPPool{a4},
			req:   svc("s", stack(PreferDualStack, v4, v4)),
			want:  refused(InvalidRequest),
		},
		{
			name:  "RequireDualStack with one family",
			pools: []v1alpha1.IPPool{a4},
			req:   svc("s", stack(RequireDualStack, v4)),
			want:  refused(InvalidRequest),
		},
		{
			name:  "unknown family",
			pools: []v1alpha1.IPPool{a4},
			req:   svc("s", stack(SingleStack, 5)),
			want:  refused(InvalidRequest),
		},
		{
			name:  "no Service name",
			pools: []v1alpha1.IPPool{a4},
			req:   svc(""),
			want:  refused(InvalidRequest),
		},
		{
			name:  "unknown policy",
			pools: []v1alpha1.IPPool{a4},
			req:   svc("s", stack("Sometimes", v4)),
			want:  refused(InvalidRequest),
		},
	})
}
