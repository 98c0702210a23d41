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
