package allocator

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/config/v1alpha1"
)

func TestSetConfig(t *testing.T) {
	p := ipPool("p", "198.51.100.0/24")
	q := ipPool("q", "203.0.113.0/24")
	s := svc("s", requesting("198.51.100.7"))
	sKey := []Key{s.Key}
	type want struct {
		Reexamine []Key
		Widened   bool
		// Usage is what pools p and q report afterwards ("p/4": in use; "p": retired).
		Usage map[string]int
		After outcome // Assigned(s) afterwards
	}
	inP := got("p", "198.51.100.7")
	tests := []struct {
		name          string
		before, after []v1alpha1.IPPool
		want          want
	}{
		{
			name:   "unchanged",
			before: []v1alpha1.IPPool{p},
			after:  []v1alpha1.IPPool{p},
			want:   want{Usage: map[string]int{"p/4": 1}, After: inP},
		},
		{
			name:   "priority changes nothing",
			before: []v1alpha1.IPPool{p, q},
			after:  []v1alpha1.IPPool{with(p, priority(9)), q},
			want:   want{Usage: map[string]int{"p/4": 1}, After: inP},
		},
		{
			name:   "pool added",
			before: []v1alpha1.IPPool{p},
			after:  []v1alpha1.IPPool{p, q},
			want:   want{Widened: true, Usage: map[string]int{"p/4": 1}, After: inP},
		},
		{
			name:   "pool removed: retired until released",
			before: []v1alpha1.IPPool{p, q},
			after:  []v1alpha1.IPPool{q},
			want:   want{Reexamine: sKey, Usage: map[string]int{"p/4": 1, "p": -1}, After: inP},
		},
		{
			name:   "pool shrunk past the address",
			before: []v1alpha1.IPPool{p},
			after:  []v1alpha1.IPPool{ipPool("p", "198.51.100.0/30")},
			want:   want{Reexamine: sKey, Widened: true, Usage: map[string]int{"p/4": 1}, After: inP},
		},
		{
			name:   "pool shrunk, the address still in it",
			before: []v1alpha1.IPPool{p},
			after:  []v1alpha1.IPPool{ipPool("p", "198.51.100.0/29")},
			want:   want{Widened: true, Usage: map[string]int{"p/4": 1}, After: inP},
		},
		{
			name:   "the address moved to another pool",
			before: []v1alpha1.IPPool{p, q},
			after:  []v1alpha1.IPPool{ipPool("p", "198.51.100.0/30"), ipPool("q", "203.0.113.0/24", "198.51.100.4/30")},
			want:   want{Reexamine: sKey, Widened: true, Usage: map[string]int{"p/4": 1}, After: inP},
		},
		{
			name:   "selector no longer selects the Service",
			before: []v1alpha1.IPPool{p},
			after:  []v1alpha1.IPPool{with(p, forServices("team", "x"))},
			want:   want{Reexamine: sKey, Widened: true, Usage: map[string]int{"p/4": 1}, After: inP},
		},
		{
			name:   "autoAssign turned off keeps the address",
			before: []v1alpha1.IPPool{p},
			after:  []v1alpha1.IPPool{with(p, manual)},
			want:   want{Widened: true, Usage: map[string]int{"p/4": 1}, After: inP},
		},
		{
			name:   "ipMode changed",
			before: []v1alpha1.IPPool{p},
			after:  []v1alpha1.IPPool{with(p, proxy)},
			want: want{Reexamine: sKey, Usage: map[string]int{"p/4": 1},
				After: outcome{Pool: "p", IPs: []string{"198.51.100.7"}, IPMode: v1alpha1.IPModeProxy}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newChecked(t, tt.before...)
			mustAllocate(t, a, s)
			var w want
			w.Reexamine, w.Widened = a.SetConfig(snapshot(t, tt.after...))
			w.Usage = usage(a, "p", "q")
			if u, _ := a.Usage("p"); u.Retired {
				w.Usage["p"] = -1
			}
			asg, _ := a.Assigned(s.Key)
			w.After = result(asg, nil)
			if err := checkInvariants(a); err != nil {
				t.Errorf("invariants: %v", err)
			}
			if d := cmp.Diff(tt.want, w); d != "" {
				t.Errorf("SetConfig (-want +got):\n%s", d)
			}
		})
	}
}

// TestSetConfigThenAllocate checks how Allocate moves the Services SetConfig reports.
func TestSetConfigThenAllocate(t *testing.T) {
	p := ipPool("p", "198.51.100.0/24")
	q := ipPool("q", "203.0.113.0/24")
	tests := []struct {
		name          string
		before, after []v1alpha1.IPPool
		req           Request
		want          outcome
		wantUsage     map[string]int
	}{
		{
			name:      "pool removed: moved to another, the retired pool forgotten",
			before:    []v1alpha1.IPPool{p, q},
			after:     []v1alpha1.IPPool{q},
			req:       svc("s"),
			want:      got("q", "203.0.113.0"),
			wantUsage: map[string]int{"q/4": 1},
		},
		{
			name:      "pool removed, nowhere to go: keeps the address",
			before:    []v1alpha1.IPPool{p},
			after:     []v1alpha1.IPPool{},
			req:       svc("s"),
			want:      refused(NoPoolForService),
			wantUsage: map[string]int{"p/4": 1},
		},
		{
			name:      "the address moved to another pool: kept there",
			before:    []v1alpha1.IPPool{p, q},
			after:     []v1alpha1.IPPool{ipPool("p", "198.51.100.128/25"), ipPool("q", "203.0.113.0/24", "198.51.100.0/25")},
			req:       svc("s"),
			want:      got("q", "198.51.100.0"),
			wantUsage: map[string]int{"q/4": 1},
		},
		{
			name:      "selector changed: moved",
			before:    []v1alpha1.IPPool{p, with(q, priority(1))},
			after:     []v1alpha1.IPPool{with(p, forServices("team", "x")), with(q, priority(1))},
			req:       svc("s"),
			want:      got("q", "203.0.113.0"),
			wantUsage: map[string]int{"q/4": 1},
		},
		{
			name:      "PreferDualStack gets IPv6 when its pool gains some",
			before:    []v1alpha1.IPPool{p},
			after:     []v1alpha1.IPPool{ipPool("p", "198.51.100.0/24", "2001:db8::/64")},
			req:       svc("s", stack(PreferDualStack, v4, v6)),
			want:      got("p", "198.51.100.0", "2001:db8::"),
			wantUsage: map[string]int{"p/4": 1, "p/6": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newChecked(t, tt.before...)
			mustAllocate(t, a, tt.req)
			a.SetConfig(snapshot(t, tt.after...))
			if d := cmp.Diff(tt.want, result(a.Allocate(tt.req))); d != "" {
				t.Errorf("Allocate after SetConfig (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.wantUsage, usage(a, "p", "q")); d != "" {
				t.Errorf("usage (-want +got):\n%s", d)
			}
		})
	}
}

// TestReleaseOrderSurvivesSetConfig checks that released addresses stay last in line
// across configuration changes, whether the pool's ranges change or not.
func TestReleaseOrderSurvivesSetConfig(t *testing.T) {
	tests := []struct {
		name  string
		after []v1alpha1.IPPool
		want  []string
	}{
		{
			name:  "unrelated change",
			after: []v1alpha1.IPPool{with(ipPool("p", "198.51.100.1-198.51.100.4"), priority(3))},
			want:  []string{"e=198.51.100.4", "f=198.51.100.2", "g=198.51.100.1"},
		},
		{
			name:  "pool grows",
			after: []v1alpha1.IPPool{ipPool("p", "198.51.100.1-198.51.100.5")},
			want:  []string{"e=198.51.100.4", "f=198.51.100.5", "g=198.51.100.2", "h=198.51.100.1"},
		},
		{
			name:  "another range added",
			after: []v1alpha1.IPPool{ipPool("p", "198.51.100.1-198.51.100.4", "203.0.113.1/32")},
			want:  []string{"e=198.51.100.4", "f=203.0.113.1", "g=198.51.100.2", "h=198.51.100.1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newChecked(t, ipPool("p", "198.51.100.1-198.51.100.4"))
			play(t, a, nil, "+a", "+b", "+c", "-b", "-a")
			a.SetConfig(snapshot(t, tt.after...))
			base := []reqEdit{inPool("p")}
			ops := []string{"+e", "+f", "+g", "+h", "+i"}[:len(tt.want)]
			if d := cmp.Diff(tt.want, play(t, a, base, ops...)); d != "" {
				t.Errorf("allocations after SetConfig (-want +got):\n%s", d)
			}
		})
	}
}

// TestReleaseOrderAcrossPools checks that addresses released in one pool keep their place
// in line when their range moves to another pool.
func TestReleaseOrderAcrossPools(t *testing.T) {
	a := newChecked(t, ipPool("p", "198.51.100.1-198.51.100.4"))
	play(t, a, nil, "+a", "+b", "+c", "-b", "-a")
	a.SetConfig(snapshot(t, ipPool("q", "198.51.100.1-198.51.100.4")))
	want := []string{"e=198.51.100.4", "f=198.51.100.2", "g=198.51.100.1", "h!PoolExhausted"}
	if d := cmp.Diff(want, play(t, a, []reqEdit{inPool("q")}, "+e", "+f", "+g", "+h")); d != "" {
		t.Errorf("allocations from q (-want +got):\n%s", d)
	}
}

// TestKeepsWhatItHolds checks that Allocate leaves an assignment alone while it fits.
func TestKeepsWhatItHolds(t *testing.T) {
	a4 := ipPool("a", "198.51.100.0/24")
	b4 := ipPool("b", "203.0.113.0/24")
	tests := []struct {
		name   string
		pools  []v1alpha1.IPPool
		first  Request
		change []v1alpha1.IPPool // new configuration between the two calls, if any
		second Request
		want   outcome
	}{
		{
			name:   "same request, same answer",
			pools:  []v1alpha1.IPPool{a4},
			first:  svc("s"),
			second: svc("s"),
			want:   got("a", "198.51.100.0"),
		},
		{
			name:   "a better pool appears",
			pools:  []v1alpha1.IPPool{a4},
			first:  svc("s"),
			change: []v1alpha1.IPPool{a4, with(b4, forServices("team", "x"))},
			second: svc("s", labelled("team", "x")),
			want:   got("a", "198.51.100.0"),
		},
		{
			name:   "named pool changes: moved",
			pools:  []v1alpha1.IPPool{a4, b4},
			first:  svc("s"),
			second: svc("s", inPool("b")),
			want:   got("b", "203.0.113.0"),
		},
		{
			name:   "requested address changes: moved",
			pools:  []v1alpha1.IPPool{a4},
			first:  svc("s"),
			second: svc("s", requesting("198.51.100.9")),
			want:   got("a", "198.51.100.9"),
		},
		{
			name:   "requests the address it holds",
			pools:  []v1alpha1.IPPool{a4},
			first:  svc("s"),
			second: svc("s", requesting("198.51.100.0"), inPool("a")),
			want:   got("a", "198.51.100.0"),
		},
		{
			name:   "labels no longer selected: moved",
			pools:  []v1alpha1.IPPool{with(a4, forServices("team", "x")), with(b4, priority(1))},
			first:  svc("s", labelled("team", "x")),
			second: svc("s", labelled("team", "y")),
			want:   got("b", "203.0.113.0"),
		},
		{
			name:   "move refused: keeps the old address",
			pools:  []v1alpha1.IPPool{a4, with(b4, forNamespaces("env", "prod"))},
			first:  svc("s"),
			second: svc("s", inPool("b")),
			want:   refused(PoolNotAllowed),
		},
		{
			name:   "becomes single stack: drops IPv6",
			pools:  []v1alpha1.IPPool{ipPool("d", "198.51.100.0/24", "2001:db8::/64")},
			first:  svc("s", stack(RequireDualStack, v4, v6)),
			second: svc("s"),
			want:   got("d", "198.51.100.0"),
		},
		{
			name:   "becomes dual stack: adds IPv6 from the same pool",
			pools:  []v1alpha1.IPPool{ipPool("d", "198.51.100.0/24"), with(ipPool("e", "203.0.113.0/24", "2001:db8::/64"), priority(1))},
			first:  svc("s"),
			second: svc("s", stack(PreferDualStack, v4, v6)),
			want:   got("d", "198.51.100.0"),
		},
		{
			name:   "becomes RequireDualStack: moves to a pool with both",
			pools:  []v1alpha1.IPPool{ipPool("d", "198.51.100.0/24"), with(ipPool("e", "203.0.113.0/24", "2001:db8::/64"), priority(1))},
			first:  svc("s"),
			second: svc("s", stack(RequireDualStack, v4, v6)),
			want:   got("e", "203.0.113.0", "2001:db8::"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newChecked(t, tt.pools...)
			first, err := a.Allocate(tt.first)
			if err != nil {
				t.Fatalf("first Allocate: %v", err)
			}
			if tt.change != nil {
				a.SetConfig(snapshot(t, tt.change...))
			}
			if d := cmp.Diff(tt.want, result(a.Allocate(tt.second))); d != "" {
				t.Errorf("second Allocate (-want +got):\n%s", d)
			}
			if len(tt.want.Reasons) > 0 {
				if asg, _ := a.Assigned(tt.first.Key); !cmp.Equal(result(first, nil), result(asg, nil)) {
					d := cmp.Diff(result(first, nil), result(asg, nil))
					t.Errorf("after a failed Allocate the Service should keep its assignment (-want +got):\n%s", d)
				}
			}
		})
	}
}

func TestUsage(t *testing.T) {
	a := newChecked(t,
		with(ipPool("p", "198.51.100.0/24", "2001:db8::/64"), avoidBuggy),
		ipPool("big", "2001:db8:113::/48"))
	mustAllocate(t, a,
		svc("web", stack(RequireDualStack, v4, v6), sharingKey("k")),
		svc("dns", stack(RequireDualStack, v4, v6), sharingKey("k"), ports(Port{"UDP", 53})),
		svc("other", inNamespace("ns", labels.Set{})),
	)
	type counts struct{ InUse4, InUse6, Cap4, Cap6 string }
	var gotUsage []counts
	for _, name := range []string{"p", "big"} {
		u, _ := a.Usage(name)
		gotUsage = append(gotUsage, counts{
			InUse4: strconv.Itoa(u.IPv4.InUse), InUse6: strconv.Itoa(u.IPv6.InUse),
			Cap4: u.IPv4.Capacity.String(), Cap6: u.IPv6.Capacity.String(),
		})
	}
	want := []counts{
		{InUse4: "2", InUse6: "1", Cap4: "254", Cap6: "18446744073709551616"},
		{InUse4: "0", InUse6: "0", Cap4: "0", Cap6: "1208925819614629174706176"},
	}
	if d := cmp.Diff(want, gotUsage); d != "" {
		t.Errorf("Usage (-want +got):\n%s", d)
	}
	if _, ok := a.Usage("nope"); ok {
		t.Errorf("Usage of an unknown pool: ok")
	}
}

// A pool being deleted keeps what its Services hold and hands out nothing new, also to a
// Service that names it or requests one of its addresses.
func TestDeletingPool(t *testing.T) {
	p := ipPool("p", "198.51.100.0/24")
	a := newChecked(t, p)
	held, err := a.Allocate(svc("held", inPool("p")))
	if err != nil {
		t.Fatal(err)
	}
	deleting := with(p)
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	a.SetConfig(snapshot(t, deleting))
	if again, err := a.Allocate(svc("held", inPool("p"))); err != nil || !slices.Equal(again.IPs, held.IPs) {
		t.Errorf("the holder again: %v, %v; want %v kept", again.IPs, err, held.IPs)
	}
	for _, req := range []Request{svc("named", inPool("p")), svc("asks", requesting("198.51.100.9"))} {
		got, err := a.Allocate(req)
		var e *Error
		if !errors.As(err, &e) || e.Reason != PoolNotFound || !strings.Contains(err.Error(), "being deleted") {
			t.Errorf("%s: %v, %v; want PoolNotFound saying the pool is being deleted", req.Key.Name, got.IPs, err)
		}
	}
	// The holder keeps what it has, but gets nothing new from the pool either.
	moved := svc("held", inPool("p"), requesting("198.51.100.200"))
	if got, err := a.Allocate(moved); err == nil {
		t.Errorf("the holder asking for another address got %v from a pool being deleted", got.IPs)
	}
	if got, err := a.Allocate(svc("auto")); err == nil {
		t.Errorf("a Service without a pool got %v from a pool being deleted", got.IPs)
	}
}
