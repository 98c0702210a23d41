package allocator

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthlb/berth/config/v1alpha1"
)

// play runs ops against a: "+s" allocates Service s, "+s=IP" allocates it requesting IP,
// "-s" releases it. It returns "s=IP[,IP]" or "s!Reason" for each allocation.
func play(t *testing.T, a *Allocator, base []reqEdit, ops ...string) []string {
	t.Helper()
	var out []string
	for _, op := range ops {
		name, ip, _ := strings.Cut(op[1:], "=")
		switch op[0] {
		case '-':
			a.Release(Key{Namespace: "default", Name: name})
		case '+':
			edits := base
			if ip != "" {
				edits = append(edits[:len(edits):len(edits)], requesting(ip))
			}
			asg, err := a.Allocate(svc(name, edits...))
			var e *Error
			switch {
			case errors.As(err, &e):
				out = append(out, name+"!"+string(e.Reason))
			case err != nil:
				t.Fatalf("%s: %v", op, err)
			default:
				var ss []string
				for _, x := range asg.IPs {
					ss = append(ss, x.String())
				}
				out = append(out, name+"="+strings.Join(ss, ","))
			}
		default:
			t.Fatalf("bad op %q", op)
		}
	}
	return out
}

func TestAllocationOrder(t *testing.T) {
	tests := []struct {
		name  string
		pools []v1alpha1.IPPool
		base  []reqEdit
		ops   []string
		want  []string
	}{
		{
			name:  "never-used addresses first, in address order",
			pools: []v1alpha1.IPPool{ipPool("p", "198.51.100.1-198.51.100.4")},
			ops:   []string{"+a", "+b", "-a", "+c"},
			want:  []string{"a=198.51.100.1", "b=198.51.100.2", "c=198.51.100.3"},
		},
		{
			name:  "released addresses last, oldest release first",
			pools: []v1alpha1.IPPool{ipPool("p", "198.51.100.1-198.51.100.3")},
			ops:   []string{"+a", "+b", "+c", "-b", "-a", "+d", "+e", "+f"},
			want:  []string{"a=198.51.100.1", "b=198.51.100.2", "c=198.51.100.3", "d=198.51.100.2", "e=198.51.100.1", "f!PoolExhausted"},
		},
		{
			name:  "a requested address leaves the release queue",
			pools: []v1alpha1.IPPool{ipPool("p", "198.51.100.1-198.51.100.3")},
			ops:   []string{"+a", "+b", "+c", "-a", "-b", "+d=198.51.100.1", "+e", "+f"},
			want:  []string{"a=198.51.100.1", "b=198.51.100.2", "c=198.51.100.3", "d=198.51.100.1", "e=198.51.100.2", "f!PoolExhausted"},
		},
		{
			name:  "a requested address ahead of the cursor is skipped",
			pools: []v1alpha1.IPPool{ipPool("p", "198.51.100.1-198.51.100.4")},
			ops:   []string{"+a=198.51.100.2", "+b", "+c", "-a", "+d", "+e"},
			want:  []string{"a=198.51.100.2", "b=198.51.100.1", "c=198.51.100.3", "d=198.51.100.4", "e=198.51.100.2"},
		},
		{
			name:  "ranges in order, then releases",
			pools: []v1alpha1.IPPool{ipPool("p", "203.0.113.5/32", "198.51.100.9-198.51.100.10")},
			ops:   []string{"+a", "-a", "+b", "+c", "+d"},
			want:  []string{"a=198.51.100.9", "b=198.51.100.10", "c=203.0.113.5", "d=198.51.100.9"},
		},
		{
			name:  "avoidBuggyIPs skips .255 and .0",
			pools: []v1alpha1.IPPool{with(ipPool("p", "198.51.100.254-198.51.101.1"), avoidBuggy)},
			ops:   []string{"+a", "+b", "+c", "-a", "+d"},
			want:  []string{"a=198.51.100.254", "b=198.51.101.1", "c!PoolExhausted", "d=198.51.100.254"},
		},
		{
			name:  "without avoidBuggyIPs .255 and .0 are ordinary",
			pools: []v1alpha1.IPPool{ipPool("p", "198.51.100.254-198.51.101.1")},
			ops:   []string{"+a", "+b", "+c"},
			want:  []string{"a=198.51.100.254", "b=198.51.100.255", "c=198.51.101.0"},
		},
		{
			name:  "a pool of only .0 and .255 avoiding them has no IPv4 addresses",
			pools: []v1alpha1.IPPool{with(ipPool("p", "198.51.100.255-198.51.101.0"), avoidBuggy)},
			ops:   []string{"+a"},
			want:  []string{"a!FamilyUnavailable"},
		},
		{
			name:  "IPv6 /64: releases are not reused while never-used addresses remain",
			pools: []v1alpha1.IPPool{ipPool("p", "2001:db8:113::/64")},
			base:  []reqEdit{only(v6)},
			ops:   []string{"+a", "+b", "-a", "+c", "+d=2001:db8:113::ffff:ffff:ffff:ffff", "+e"},
			want:  []string{"a=2001:db8:113::", "b=2001:db8:113::1", "c=2001:db8:113::2", "d=2001:db8:113:0:ffff:ffff:ffff:ffff", "e=2001:db8:113::3"},
		},
		{
			name:  "the last IPv4 address ends a range",
			pools: []v1alpha1.IPPool{ipPool("p", "255.255.255.254/31")},
			ops:   []string{"+a", "+b", "+c"},
			want:  []string{"a=255.255.255.254", "b=255.255.255.255", "c!PoolExhausted"},
		},
		{
			name:  "dual stack takes one of each family",
			pools: []v1alpha1.IPPool{ipPool("p", "198.51.100.1/32", "2001:db8::1-2001:db8::3")},
			base:  []reqEdit{stack(PreferDualStack, v6, v4)},
			ops:   []string{"+a", "+b", "-a", "+c"},
			want:  []string{"a=2001:db8::1,198.51.100.1", "b=2001:db8::2", "c=2001:db8::3,198.51.100.1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newChecked(t, tt.pools...)
			if d := cmp.Diff(tt.want, play(t, a, tt.base, tt.ops...)); d != "" {
				t.Errorf("allocations (-want +got):\n%s", d)
			}
		})
	}
}

// TestForgottenReleases bounds the release queue: the addresses it drops are found again
// once the never-used ones run out, oldest (lowest) first, and none is ever lost.
func TestForgottenReleases(t *testing.T) {
	tests := []struct {
		name        string
		maxReleased int
		ops         []string
		want        []string
	}{
		{
			name:        "dropped addresses come back before the queue",
			maxReleased: 2,
			ops:         []string{"+a", "+b", "+c", "+d", "+e", "-b", "-d", "-a", "-e", "+f", "+g", "+h", "+i", "+j", "+k"},
			want: []string{
				"a=198.51.100.1", "b=198.51.100.2", "c=198.51.100.3", "d=198.51.100.4", "e=198.51.100.5",
				// Never used: .6. Then .2 and .4, which the queue dropped (it kept .1
				// and .5), in address order; then the queue.
				"f=198.51.100.6", "g=198.51.100.2", "h=198.51.100.4", "i=198.51.100.1", "j=198.51.100.5",
				"k!PoolExhausted",
			},
		},
		{
			name:        "a dropped address requested",
			maxReleased: 1,
			ops:         []string{"+a", "+b", "+c", "-a", "-b", "+d=198.51.100.1", "+e", "+f", "+g", "+h", "+i"},
			want: []string{
				"a=198.51.100.1", "b=198.51.100.2", "c=198.51.100.3", "d=198.51.100.1",
				"e=198.51.100.4", "f=198.51.100.5", "g=198.51.100.6", "h=198.51.100.2", "i!PoolExhausted",
			},
		},
		{
			name:        "dropped ahead of the cursor",
			maxReleased: 1,
			ops:         []string{"+a=198.51.100.5", "+b=198.51.100.6", "-a", "-b", "+c", "+d", "+e", "+f", "+g", "+h", "+i"},
			want: []string{
				"a=198.51.100.5", "b=198.51.100.6",
				"c=198.51.100.1", "d=198.51.100.2", "e=198.51.100.3", "f=198.51.100.4", "g=198.51.100.5", "h=198.51.100.6",
				"i!PoolExhausted",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAllocator(snapshot(t, ipPool("p", "198.51.100.1-198.51.100.6")), tt.maxReleased)
			var got []string
			for _, op := range tt.ops {
				got = append(got, play(t, a, nil, op)...)
				if err := checkInvariants(a); err != nil {
					t.Fatalf("after %s: invariants: %v", op, err)
				}
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("allocations (-want +got):\n%s", d)
			}
		})
	}
}
