package allocator

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/config/v1alpha1"
)

func TestClaim(t *testing.T) {
	p := ipPool("p", "198.51.100.0/24", "2001:db8::/64")
	q := ipPool("q", "203.0.113.0/24")
	tests := []struct {
		name   string
		pools  []v1alpha1.IPPool
		before []Request
		req    Request
		ips    []string
		want   outcome
	}{
		{
			name:  "an address that fits",
			pools: []v1alpha1.IPPool{p},
			req:   svc("s"),
			ips:   []string{"198.51.100.7"},
			want:  got("p", "198.51.100.7"),
		},
		{
			name:  "nothing to claim",
			pools: []v1alpha1.IPPool{p},
			req:   svc("s"),
		},
		{
			name:  "dual stack, primary first whatever the status order",
			pools: []v1alpha1.IPPool{p},
			req:   svc("s", stack(RequireDualStack, v4, v6)),
			ips:   []string{"2001:db8::7", "198.51.100.7"},
			want:  got("p", "198.51.100.7", "2001:db8::7"),
		},
		{
			name:  "in an autoAssign false pool the Service does not name",
			pools: []v1alpha1.IPPool{with(p, manual)},
			req:   svc("s"),
			ips:   []string{"198.51.100.7"},
			want:  got("p", "198.51.100.7"),
		},
		{
			name:  "in no pool any more",
			pools: []v1alpha1.IPPool{p},
			req:   svc("s"),
			ips:   []string{"192.0.2.7"},
			want:  outcome{Reasons: []Reason{StaleAssignment}},
		},
		{
			name:  "the Service requests another address",
			pools: []v1alpha1.IPPool{p},
			req:   svc("s", requesting("198.51.100.8")),
			ips:   []string{"198.51.100.7"},
			want:  outcome{Reasons: []Reason{StaleAssignment}},
		},
		{
			name:  "the Service names another pool",
			pools: []v1alpha1.IPPool{p, q},
			req:   svc("s", inPool("q")),
			ips:   []string{"198.51.100.7"},
			want:  outcome{Reasons: []Reason{StaleAssignment}},
		},
		{
			name:  "the pool no longer selects the Service",
			pools: []v1alpha1.IPPool{with(p, forNamespaces("env", "prod"))},
			req:   svc("s", inNamespace("default", labels.Set{"env": "dev"})),
			ips:   []string{"198.51.100.7"},
			want:  outcome{Reasons: []Reason{PoolNotAllowed}},
		},
		{
			name:  "a family the Service no longer has",
			pools: []v1alpha1.IPPool{p},
			req:   svc("s"),
			ips:   []string{"198.51.100.7", "2001:db8::7"},
			want:  outcome{Pool: "p", IPs: []string{"198.51.100.7"}, IPMode: v1alpha1.IPModeVIP, Reasons: []Reason{StaleAssignment}},
		},
		{
			name:  "two addresses of one family: the first is claimed",
			pools: []v1alpha1.IPPool{p},
			req:   svc("s"),
			ips:   []string{"198.51.100.7", "198.51.100.8"},
			want:  outcome{Pool: "p", IPs: []string{"198.51.100.7"}, IPMode: v1alpha1.IPModeVIP, Reasons: []Reason{StaleAssignment}},
		},
		{
			name:  "addresses in two pools: the primary family's pool wins",
			pools: []v1alpha1.IPPool{ipPool("p6", "2001:db8::/64"), q},
			req:   svc("s", stack(PreferDualStack, v6, v4)),
			ips:   []string{"203.0.113.7", "2001:db8::7"},
			want:  outcome{Pool: "p6", IPs: []string{"2001:db8::7"}, IPMode: v1alpha1.IPModeVIP, Reasons: []Reason{StaleAssignment}},
		},
		{
			name:  ".0 in a pool avoiding buggy IPs",
			pools: []v1alpha1.IPPool{with(p, avoidBuggy)},
			req:   svc("s"),
			ips:   []string{"198.51.100.0"},
			want:  outcome{Reasons: []Reason{StaleAssignment}},
		},
		{
			name:   "held by another Service",
			pools:  []v1alpha1.IPPool{p},
			before: []Request{svc("holder", requesting("198.51.100.7"))},
			req:    svc("s"),
			ips:    []string{"198.51.100.7"},
			want:   heldBy("holder"),
		},
		{
			name:   "shared with a Service with the same key",
			pools:  []v1alpha1.IPPool{p},
			before: []Request{svc("holder", requesting("198.51.100.7"), sharingKey("k"))},
			req:    svc("s", sharingKey("k"), ports(Port{"UDP", 53})),
			ips:    []string{"198.51.100.7"},
			want:   got("p", "198.51.100.7"),
		},
		{
			name:   "a Service that holds an assignment keeps it",
			pools:  []v1alpha1.IPPool{p},
			before: []Request{svc("s")},
			req:    svc("s"),
			ips:    []string{"198.51.100.7"},
			want:   got("p", "198.51.100.0"),
		},
		{
			name:  "invalid request",
			pools: []v1alpha1.IPPool{p},
			req:   svc("s", stack(RequireDualStack, v4)),
			ips:   []string{"198.51.100.7"},
			want:  refused(InvalidRequest),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newChecked(t, tt.pools...)
			mustAllocate(t, a, tt.before...)
			if d := cmp.Diff(tt.want, result(a.Claim(tt.req, addrs(tt.ips...)))); d != "" {
				t.Errorf("Claim(%s, %v) (-want +got):\n%s", tt.req.Key, tt.ips, d)
			}
		})
	}
}

// TestClaimThenAllocate checks that Allocate keeps what Claim took and completes it from
// the same pool.
func TestClaimThenAllocate(t *testing.T) {
	a := newChecked(t, ipPool("a", "2001:db8:1::/64"), ipPool("p", "198.51.100.0/24", "2001:db8::/64"))
	s := svc("s", stack(RequireDualStack, v4, v6))
	_, err := a.Claim(s, addrs("198.51.100.7", "2001:db8:1::7"))
	if !errors.Is(err, StaleAssignment) {
		t.Errorf("Claim: err = %v, want StaleAssignment for the address in another pool", err)
	}
	if d := cmp.Diff(got("p", "198.51.100.7", "2001:db8::"), result(a.Allocate(s))); d != "" {
		t.Errorf("Allocate after Claim (-want +got):\n%s", d)
	}
}

// TestClaimAllOlderWins gives two Services the same address in their status: the older
// keeps it, whatever order they are found in.
func TestClaimAllOlderWins(t *testing.T) {
	pool := ipPool("p", "198.51.100.0/24")
	tests := []struct {
		name         string
		young, old   Request
		wantOld      outcome
		wantYoungErr outcome
	}{
		{
			name:         "by creation time",
			young:        svc("a-young", created(5)),
			old:          svc("z-old", created(1)),
			wantOld:      got("p", "198.51.100.7"),
			wantYoungErr: heldBy("z-old"),
		},
		{
			name:         "same time: by namespace and name",
			young:        svc("b", created(1)),
			old:          svc("a", created(1)),
			wantOld:      got("p", "198.51.100.7"),
			wantYoungErr: heldBy("a"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newChecked(t, pool)
			ip := addrs("198.51.100.7")
			errs := a.ClaimAll([]Existing{{Request: tt.young, IPs: ip}, {Request: tt.old, IPs: ip}})
			oldAsg, _ := a.Assigned(tt.old.Key)
			if d := cmp.Diff(tt.wantOld, result(oldAsg, errs[tt.old.Key])); d != "" {
				t.Errorf("older Service (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.wantYoungErr, result(Assignment{}, errs[tt.young.Key])); d != "" {
				t.Errorf("younger Service's error (-want +got):\n%s", d)
			}
			if _, ok := a.Assigned(tt.young.Key); ok {
				t.Errorf("the younger Service holds an assignment")
			}
		})
	}
}
