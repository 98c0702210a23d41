package datapath

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNormalize(t *testing.T) {
	a4, b4 := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("203.0.113.8")
	a6 := netip.MustParseAddr("2001:db8:113::7")
	mapped := netip.MustParseAddr("::ffff:203.0.113.7")
	got, err := normalize(Desired{
		IPs: []netip.Addr{b4, mapped, a6, a4},
		Open: []Frontend{
			{IP: a6, Protocol: UDP, Port: 53}, {IP: mapped, Protocol: TCP, Port: 80},
			{IP: a4, Protocol: TCP, Port: 80}, {IP: a4, Protocol: SCTP, Port: 9},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := normalized{
		ips4:  []netip.Addr{a4, b4},
		ips6:  []netip.Addr{a6},
		open4: []Frontend{{IP: a4, Protocol: TCP, Port: 80}, {IP: a4, Protocol: SCTP, Port: 9}},
		open6: []Frontend{{IP: a6, Protocol: UDP, Port: 53}},
	}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(normalized{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("normalize (-want +got):\n%s", d)
	}

	// An open port's IP is closed but for it, even when IPs leaves it out.
	got, err = normalize(Desired{Open: []Frontend{{IP: a6, Protocol: TCP, Port: 443}}})
	if err != nil || len(got.ips6) != 1 || got.ips6[0] != a6 {
		t.Errorf("normalize(open only) = %+v, %v; want %v among the IPs", got, err, a6)
	}

	for _, bad := range []Desired{
		{IPs: []netip.Addr{{}}},
		{IPs: []netip.Addr{netip.IPv4Unspecified()}},
		{IPs: []netip.Addr{netip.MustParseAddr("fe80::1%eth0")}},
		{Open: []Frontend{{IP: a4, Protocol: 1, Port: 80}}},
		{Open: []Frontend{{IP: a4, Protocol: TCP}}},
	} {
		if _, err := normalize(bad); err == nil {
			t.Errorf("normalize(%+v): no error", bad)
		}
	}
}

func TestFrontendKey(t *testing.T) {
	for _, tt := range []struct {
		f    Frontend
		want []byte
	}{
		{Frontend{IP: netip.MustParseAddr("10.0.96.10"), Protocol: UDP, Port: 53},
			[]byte{10, 0, 96, 10, 17, 0, 0, 0, 0, 53, 0, 0}},
		{Frontend{IP: netip.MustParseAddr("2001:db8::1"), Protocol: TCP, Port: 0x1f90},
			[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 6, 0, 0, 0, 0x1f, 0x90, 0, 0}},
	} {
		if got := frontendKey(tt.f); !cmp.Equal(got, tt.want) {
			t.Errorf("frontendKey(%+v) = %v, want %v", tt.f, got, tt.want)
		}
	}
}

func TestNormalizeProxy(t *testing.T) {
	lb4, lb6 := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8:113::7")
	pod := netip.MustParseAddrPort("198.19.1.2:8080")
	node := netip.MustParseAddrPort("[::ffff:198.18.0.12]:30080")
	node6 := netip.MustParseAddrPort("[2001:db8:18::12]:30080")
	web := Frontend{IP: lb4, Protocol: TCP, Port: 80}
	got, err := normalize(Desired{Proxy: []ProxyFrontend{
		{Frontend: Frontend{IP: lb6, Protocol: UDP, Port: 53}, Backends: []Backend{{Addr: node6, Masquerade: true}}},
		{Frontend: web, Backends: []Backend{{Addr: pod}, {Addr: node, Masquerade: true}, {Addr: node, Masquerade: true}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	node4 := netip.AddrPortFrom(node.Addr().Unmap(), node.Port())
	want := normalized{
		ips4: []netip.Addr{lb4}, ips6: []netip.Addr{lb6},
		open4: []Frontend{web}, open6: []Frontend{{IP: lb6, Protocol: UDP, Port: 53}},
		// A backend listed twice keeps both shares; the masquerade set has it once.
		proxy4: []ProxyFrontend{{Frontend: web, Backends: []Backend{{Addr: pod}, {Addr: node4, Masquerade: true}, {Addr: node4, Masquerade: true}}}},
		proxy6: []ProxyFrontend{{Frontend: Frontend{IP: lb6, Protocol: UDP, Port: 53}, Backends: []Backend{{Addr: node6, Masquerade: true}}}},
		masq4:  []Frontend{{IP: node4.Addr(), Protocol: TCP, Port: 30080}},
		masq6:  []Frontend{{IP: node6.Addr(), Protocol: UDP, Port: 30080}},
	}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(normalized{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
		t.Errorf("normalize (-want +got):\n%s", d)
	}

	for name, bad := range map[string]ProxyFrontend{
		"backend of the other family": {Frontend: web, Backends: []Backend{{Addr: node6}}},
		"backend without a port":      {Frontend: web, Backends: []Backend{{Addr: netip.AddrPortFrom(pod.Addr(), 0)}}},
		"too many backends":           {Frontend: web, Backends: make([]Backend, MaxBackends+1)},
	} {
		if _, err := normalize(Desired{Proxy: []ProxyFrontend{bad}}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := normalize(Desired{Proxy: []ProxyFrontend{{Frontend: web}, {Frontend: web}}}); err == nil {
		t.Error("the same frontend twice: no error")
	}
}

func TestFrontendChain(t *testing.T) {
	for f, want := range map[Frontend]string{
		{IP: netip.MustParseAddr("203.0.113.7"), Protocol: TCP, Port: 80}:     "fe-203.0.113.7-tcp-80",
		{IP: netip.MustParseAddr("2001:db8:113::7"), Protocol: SCTP, Port: 9}: "fe-2001_db8_113__7-sctp-9",
	} {
		if got := frontendChain(f); got != want {
			t.Errorf("frontendChain(%+v) = %q, want %q", f, got, want)
		}
	}
}

func TestNormalizeSourceRanges(t *testing.T) {
	lb := netip.MustParseAddr("203.0.113.7")
	web := Frontend{IP: lb, Protocol: TCP, Port: 80}
	// Open lists it too, as the speaker's front door opens every Service port.
	got, err := normalize(Desired{Open: []Frontend{web}, Proxy: []ProxyFrontend{{Frontend: web, RestrictSources: true,
		SourceRanges: []netip.Prefix{netip.MustParsePrefix("198.51.100.77/24"), netip.MustParsePrefix("::ffff:192.0.2.0/120")}}}})
	if err != nil {
		t.Fatal(err)
	}
	// Restricted: closed but for the ranges (masked, unmapped, sorted); the IP is closed.
	if len(got.open4) != 0 || len(got.ips4) != 1 {
		t.Errorf("open4 %v, ips4 %v; want no open port and the IP closed", got.open4, got.ips4)
	}
	want := []allowed{{web, netip.MustParsePrefix("192.0.2.0/24")}, {web, netip.MustParsePrefix("198.51.100.0/24")}}
	if !cmp.Equal(want, got.allowed4, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
		t.Errorf("allowed4 = %v, want %v", got.allowed4, want)
	}
	if _, err := normalize(Desired{Proxy: []ProxyFrontend{{Frontend: web, RestrictSources: true,
		SourceRanges: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}}}}); err == nil {
		t.Error("an IPv6 range on an IPv4 frontend: no error")
	}
	// Nested ranges: the kernel refuses overlapping intervals, so only the outer stays.
	got, err = normalize(Desired{Proxy: []ProxyFrontend{{Frontend: web, RestrictSources: true,
		SourceRanges: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("198.51.0.0/16"),
			netip.MustParsePrefix("192.0.2.0/25"), netip.MustParsePrefix("192.0.2.128/25"), netip.MustParsePrefix("198.51.100.7/32")}}}})
	if err != nil {
		t.Fatal(err)
	}
	want = []allowed{{web, netip.MustParsePrefix("192.0.2.0/25")}, {web, netip.MustParsePrefix("192.0.2.128/25")}, {web, netip.MustParsePrefix("198.51.0.0/16")}}
	if !cmp.Equal(want, got.allowed4, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
		t.Errorf("nested: allowed4 = %v, want %v", got.allowed4, want)
	}
	for p, want := range map[string]string{"198.51.100.77/24": "198.51.100.255", "2001:db8::/126": "2001:db8::3", "192.0.2.1/32": "192.0.2.1"} {
		if got := lastAddr(netip.MustParsePrefix(p)); got != netip.MustParseAddr(want) {
			t.Errorf("lastAddr(%s) = %s, want %s", p, got, want)
		}
	}
}

func TestAssignIDs(t *testing.T) {
	f := func(port uint16) ProxyFrontend {
		return ProxyFrontend{Frontend: Frontend{IP: netip.MustParseAddr("203.0.113.1"), Protocol: TCP, Port: port}}
	}
	was := map[Frontend]uint32{f(80).Frontend: 0, f(81).Frontend: 1, f(82).Frontend: 2}
	// 81 goes, 80 and 82 keep theirs; the new ones take 1 and then 3.
	got := assignIDs(was, []ProxyFrontend{f(80), f(82), f(90), f(91)})
	want := map[Frontend]uint32{f(80).Frontend: 0, f(82).Frontend: 2, f(90).Frontend: 1, f(91).Frontend: 3}
	if !cmp.Equal(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
		t.Errorf("assignIDs = %v, want %v", got, want)
	}
}
