package allocator

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthlb/berth/config/v1alpha1"
)

func TestSharing(t *testing.T) {
	p := ipPool("p", "198.51.100.1-198.51.100.9", "2001:db8::1-2001:db8::9")
	q := ipPool("q", "203.0.113.1-203.0.113.9")
	web := svc("web", sharingKey("k"), ports(Port{"TCP", 80}))
	const ip = "198.51.100.1"
	runAllocateCases(t, []allocateCase{
		{
			name:   "same key, other port: shares without asking",
			pools:  []v1alpha1.IPPool{p},
			before: []Request{web},
			req:    svc("s", sharingKey("k"), ports(Port{"TCP", 443})),
			want:   got("p", ip),
		},
		{
			name:   "same key, same port number, other protocol",
			pools:  []v1alpha1.IPPool{p},
			before: []Request{web},
			req:    svc("s", sharingKey("k"), ports(Port{"UDP", 80})),
			want:   got("p", ip),
		},
		{
			name:   "empty protocol is TCP",
			pools:  []v1alpha1.IPPool{p},
			before: []Request{web},
			req:    svc("s", sharingKey("k"), ports(Port{"", 80})),
			want:   got("p", "198.51.100.2"),
		},
		{
			name:   "same key, overlapping ports: a fresh address",
			pools:  []v1alpha1.IPPool{p},
			before: []Request{web},
			req:    svc("s", sharingKey("k"), ports(Port{"TCP", 80})),
			want:   got("p", "198.51.100.2"),
		},
		{
			name:   "other key: a fresh address",
			pools:  []v1alpha1.IPPool{p},
			before: []Request{web},
			req:    svc("s", sharingKey("other"), ports(Port{"TCP", 443})),
			want:   got("p", "198.51.100.2"),
		},
		{
			name:   "requested shared address",
			pools:  []v1alpha1.IPPool{p},
			before: []Request{svc("other", sharingKey("k")), web},
			req:    svc("s", sharingKey("k"), ports(Port{"TCP", 443}), requesting("198.51.100.2")),
			want:   got("p", "198.51.100.2"),
		},
		{
			name:   "requested address of a holder without a key",
			pools:  []v1alpha1.IPPool{p},
			before: []Request{svc("holder")},
			req:    svc("s", sharingKey("k"), ports(Port{"TCP", 443}), requesting(ip)),
			want:   heldBy("holder"),
		},
		{
			name:   "requested address, the Service has no key",
			pools:  []v1alpha1.IPPool{p},
			before: []Request{web},
			req:    svc("s", ports(Port{"TCP", 443}), requesting(ip)),
			want:   heldBy("web"),
		},
		{
			name:   "requested address, keys differ",
			pools:  []v1alpha1.IPPool{p},
			before: []Request{web},
			req:    svc("s", sharingKey("other"), ports(Port{"TCP", 443}), requesting(ip)),
			want:   heldBy("web"),
		},
		{
			name:   "requested address, ports overlap",
			pools:  []v1alpha1.IPPool{p},
			before: []Request{web},
			req:    svc("s", sharingKey("k"), ports(Port{"TCP", 8080}, Port{"TCP", 80}), requesting(ip)),
			want:   heldBy("web"),
		},
		{
			name:   "requested address, externalTrafficPolicy differs",
			pools:  []v1alpha1.IPPool{p},
			before: []Request{web},
			req:    svc("s", sharingKey("k"), ports(Port{"TCP", 443}), local("app=s"), requesting(ip)),
			want:   heldBy("web"),
		},
		{
			name:   "Local: other pods",
			pools:  []v1alpha1.IPPool{p},
			before: []Request{svc("web", sharingKey("k"), local("app=web"))},
			req:    svc("s", sharingKey("k"), ports(Port{"TCP", 443}), local("app=s"), requesting(ip)),
			want:   heldBy("web"),
		},
		{
			name:   "Local: same pods",
			pools:  []v1alpha1.IPPool{p},
			before: []Request{svc("web", sharingKey("k"), local("app=web"))},
			req:    svc("s", sharingKey("k"), ports(Port{"TCP", 443}), local("app=web"), requesting(ip)),
			want:   got("p", ip),
		},
		{
			name:   "every sharer must fit",
			pools:  []v1alpha1.IPPool{p},
			before: []Request{web, svc("dns", sharingKey("k"), ports(Port{"UDP", 53}))},
			req:    svc("s", sharingKey("k"), ports(Port{"UDP", 53}), requesting(ip)),
			want:   heldBy("dns"),
		},
		{
			name:   "dual stack shares both families",
			pools:  []v1alpha1.IPPool{p},
			before: []Request{svc("web", sharingKey("k"), stack(RequireDualStack, v4, v6))},
			req:    svc("s", sharingKey("k"), ports(Port{"TCP", 443}), stack(PreferDualStack, v6, v4)),
			want:   got("p", "2001:db8::1", ip),
		},
		{
			name:   "no sharing across pools",
			pools:  []v1alpha1.IPPool{p, q},
			before: []Request{web},
			req:    svc("s", sharingKey("k"), ports(Port{"TCP", 443}), inPool("q")),
			want:   got("q", "203.0.113.1"),
		},
	})
}

// TestSharedAddressReleasedLast checks that a shared address stays in use until its last
// holder leaves.
func TestSharedAddressReleasedLast(t *testing.T) {
	a := newChecked(t, ipPool("p", "198.51.100.1/32"))
	web := svc("web", sharingKey("k"))
	dns := svc("dns", sharingKey("k"), ports(Port{"UDP", 53}))
	mustAllocate(t, a, web, dns)
	if d := cmp.Diff(map[string]int{"p/4": 1}, usage(a, "p")); d != "" {
		t.Errorf("usage with two sharers (-want +got):\n%s", d)
	}
	a.Release(web.Key)
	if d := cmp.Diff(got("p", "198.51.100.1"), result(a.Allocate(dns))); d != "" {
		t.Errorf("the remaining sharer (-want +got):\n%s", d)
	}
	if d := cmp.Diff(heldBy("dns"), result(a.Allocate(svc("other", requesting("198.51.100.1"))))); d != "" {
		t.Errorf("a Service without the key (-want +got):\n%s", d)
	}
	a.Release(dns.Key)
	if d := cmp.Diff(map[string]int{}, usage(a, "p")); d != "" {
		t.Errorf("usage after the last sharer left (-want +got):\n%s", d)
	}
	if d := cmp.Diff(got("p", "198.51.100.1"), result(a.Allocate(svc("other")))); d != "" {
		t.Errorf("the freed address (-want +got):\n%s", d)
	}
}

// TestSharerChangingPorts checks that a sharer whose ports come to overlap another's
// leaves the shared address for a fresh one.
func TestSharerChangingPorts(t *testing.T) {
	a := newChecked(t, ipPool("p", "198.51.100.1-198.51.100.2"))
	mustAllocate(t, a, svc("web", sharingKey("k")), svc("api", sharingKey("k"), ports(Port{"TCP", 443})))
	if d := cmp.Diff(got("p", "198.51.100.2"), result(a.Allocate(svc("api", sharingKey("k"))))); d != "" {
		t.Errorf("api now on port 80 (-want +got):\n%s", d)
	}
	if d := cmp.Diff(got("p", "198.51.100.1"), result(a.Allocate(svc("web", sharingKey("k"))))); d != "" {
		t.Errorf("web keeps its address (-want +got):\n%s", d)
	}
}
