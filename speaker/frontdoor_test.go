package speaker

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthlb/berth/datapath"
)

func TestFrontDoor(t *testing.T) {
	a, a6, b := netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("2001:db8:113::10"), netip.MustParseAddr("203.0.113.11")
	d := Decisions{Services: []*ServiceDecision{
		{Name: "web", IPs: []IPDecision{{IP: a, Pool: "p", L2: L2Decision{Announce: true}}, {IP: a6, Pool: "p"}},
			Ports: []Port{{Protocol: "TCP", Port: 80}, {Protocol: "UDP", Port: 443}}},
		// Not announced here, still closed: another node may hand it over.
		{Name: "dns", IPs: []IPDecision{{IP: b, Pool: "p"}}, Ports: []Port{{Protocol: "SCTP", Port: 9}, {Protocol: "weird", Port: 1}}},
		// In no pool of berth's: maybe a node's own address, left alone.
		{Name: "foreign", IPs: []IPDecision{{IP: netip.MustParseAddr("198.18.0.11")}}, Ports: []Port{{Protocol: "TCP", Port: 22}}},
	}}
	want := datapath.Desired{
		IPs: []netip.Addr{a, a6, b},
		Open: []datapath.Frontend{
			{IP: a, Protocol: datapath.TCP, Port: 80}, {IP: a, Protocol: datapath.UDP, Port: 443},
			{IP: a6, Protocol: datapath.TCP, Port: 80}, {IP: a6, Protocol: datapath.UDP, Port: 443},
			{IP: b, Protocol: datapath.SCTP, Port: 9},
		},
	}
	if diff := cmp.Diff(want, FrontDoor(d), cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("FrontDoor (-want +got):\n%s", diff)
	}
}

func TestSameDesired(t *testing.T) {
	fe := datapath.ProxyFrontend{Frontend: datapath.Frontend{IP: netip.MustParseAddr("203.0.113.10"), Protocol: datapath.TCP, Port: 80},
		Backends: []datapath.Backend{{Addr: netip.MustParseAddrPort("198.19.1.2:8080")}}}
	base := datapath.Desired{Proxy: []datapath.ProxyFrontend{fe}}
	for name, change := range map[string]func(*datapath.ProxyFrontend){
		"backend":     func(f *datapath.ProxyFrontend) { f.Backends = nil },
		"restriction": func(f *datapath.ProxyFrontend) { f.RestrictSources = true },
		"source range": func(f *datapath.ProxyFrontend) {
			f.SourceRanges = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
		},
	} {
		other := fe
		change(&other)
		if sameDesired(base, datapath.Desired{Proxy: []datapath.ProxyFrontend{other}}) {
			t.Errorf("a changed %s counts as the same", name)
		}
	}
	if !sameDesired(base, datapath.Desired{Proxy: []datapath.ProxyFrontend{fe}}) {
		t.Error("equal states differ")
	}
}
