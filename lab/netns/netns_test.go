package netns

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidPrefix(t *testing.T) {
	for p, ok := range map[string]bool{NewPrefix(): true, "bl12ab-": true, "bl12ab": false, "": false, "-": false, "BL12-": false, "a/b-": false} {
		if err := ValidPrefix(p); (err == nil) != ok {
			t.Errorf("ValidPrefix(%q) = %v, want ok=%t", p, err, ok)
		}
	}
}

func TestParseRoutes(t *testing.T) {
	a := netip.MustParseAddr
	p := netip.MustParsePrefix
	for _, c := range []struct {
		name string
		f    Family
		in   string
		want []Route
	}{
		{"IPv4 with ECMP", IPv4, `[{"dst":"default","gateway":"198.18.0.1","dev":"eth0","flags":[]},
			{"dst":"198.18.0.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"198.18.0.1","flags":[]},
			{"dst":"203.0.113.10","protocol":"bird","metric":32,"flags":[],"nexthops":[
				{"gateway":"198.18.0.11","dev":"eth0","weight":1,"flags":[]},
				{"gateway":"198.18.0.12","dev":"eth0","weight":1,"flags":[]}]},
			{"type":"blackhole","dst":"203.0.113.0/24","protocol":"static","flags":[]}]`,
			[]Route{
				{Dst: p("0.0.0.0/0"), Type: "unicast", Gateways: []netip.Addr{a("198.18.0.1")}, Dev: "eth0", Protocol: "boot"},
				{Dst: p("198.18.0.0/24"), Type: "unicast", Dev: "eth0", Protocol: "kernel"},
				{Dst: p("203.0.113.10/32"), Type: "unicast", Gateways: []netip.Addr{a("198.18.0.11"), a("198.18.0.12")}, Dev: "eth0", Protocol: "bird", Metric: 32},
				{Dst: p("203.0.113.0/24"), Type: "blackhole", Protocol: "static"},
			}},
		{"IPv6", IPv6, `[{"dst":"2001:db8:113::/64","gateway":"fe80::1","dev":"eth0","protocol":"bgp","metric":20,"flags":[]},
			{"dst":"default","gateway":"2001:db8:18::1","dev":"eth0","metric":1024,"flags":[],"pref":"medium"}]`,
			[]Route{
				{Dst: p("2001:db8:113::/64"), Type: "unicast", Gateways: []netip.Addr{a("fe80::1")}, Dev: "eth0", Protocol: "bgp", Metric: 20},
				{Dst: p("::/0"), Type: "unicast", Gateways: []netip.Addr{a("2001:db8:18::1")}, Dev: "eth0", Protocol: "boot", Metric: 1024},
			}},
		{"empty", IPv4, "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseRoutes([]byte(c.in), c.f)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(c.want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y }),
				cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })); d != "" {
				t.Errorf("ParseRoutes() (-want +got):\n%s", d)
			}
		})
	}
}
