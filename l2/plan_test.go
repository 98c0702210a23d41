package l2

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	addr     = netip.MustParseAddr
	mac      = func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	ipCmp    = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	upFlags  = net.FlagUp | net.FlagRunning | net.FlagBroadcast | net.FlagMulticast
	testLink = func(name string, index int) linkInfo {
		return linkInfo{Name: name, Index: index, MAC: mac("02:00:00:00:00:0" + string(rune('0'+index))), Flags: upFlags}
	}
)

func set(ips ...string) ipSet {
	s := ipSet{}
	for _, ip := range ips {
		s[addr(ip)] = struct{}{}
	}
	return s
}

func TestPlan(t *testing.T) {
	links := []linkInfo{
		{Name: "lo", Index: 1, Flags: net.FlagUp | net.FlagRunning | net.FlagLoopback},
		testLink("eth0", 2),
		testLink("eth1", 3),
		{Name: "eth2", Index: 4, MAC: mac("02:00:00:00:00:04"), Flags: net.FlagUp | net.FlagBroadcast}, // no carrier
		{Name: "veth0", Index: 5, MAC: mac("02:00:00:00:00:05"), Flags: upFlags},
		{Name: "tun0", Index: 6, Flags: net.FlagUp | net.FlagRunning | net.FlagPointToPoint},
		{Name: "ib0", Index: 7, MAC: make(net.HardwareAddr, 20), Flags: upFlags}, // not Ethernet
		{Name: "eth3", Index: 8, MAC: mac("02:00:00:00:00:08"), Flags: upFlags, Port: true},
	}
	tests := []struct {
		name string
		want []Assignment
		out  map[string]ipSet
	}{
		{"nothing", nil, map[string]ipSet{}},
		{"default interfaces", []Assignment{{IP: addr("198.18.2.200")}, {IP: addr("2001:db8:18:2::1:a")}},
			map[string]ipSet{"eth0": set("198.18.2.200", "2001:db8:18:2::1:a"), "eth1": set("198.18.2.200", "2001:db8:18:2::1:a")}},
		{"named interface", []Assignment{{IP: addr("198.18.2.200"), Interfaces: []string{"eth1"}}},
			map[string]ipSet{"eth1": set("198.18.2.200")}},
		{"named excluded-by-default interfaces are used", []Assignment{{IP: addr("198.18.2.200"), Interfaces: []string{"veth0", "eth3"}}},
			map[string]ipSet{"veth0": set("198.18.2.200"), "eth3": set("198.18.2.200")}},
		{"named unusable interfaces are not", []Assignment{{IP: addr("198.18.2.200"),
			Interfaces: []string{"lo", "eth2", "tun0", "ib0", "missing"}}}, map[string]ipSet{}},
		{"same IP twice merges", []Assignment{
			{IP: addr("198.18.2.200"), Interfaces: []string{"eth0"}},
			{IP: addr("198.18.2.200"), Interfaces: []string{"eth1"}}},
			map[string]ipSet{"eth0": set("198.18.2.200"), "eth1": set("198.18.2.200")}},
		{"mapped IPv4 and zones are normalised", []Assignment{
			{IP: addr("::ffff:198.18.2.201"), Interfaces: []string{"eth0"}},
			{IP: addr("2001:db8:18:2::1:b%eth0"), Interfaces: []string{"eth0"}}},
			map[string]ipSet{"eth0": set("198.18.2.201", "2001:db8:18:2::1:b")}},
		{"addresses that cannot be LB IPs are dropped", []Assignment{
			{}, {IP: addr("0.0.0.0")}, {IP: addr("::")}, {IP: addr("127.0.0.1")}, {IP: addr("::1")},
			{IP: addr("224.0.0.1")}, {IP: addr("ff02::1")}, {IP: addr("fe80::1")}, {IP: addr("169.254.1.1")},
			{IP: addr("255.255.255.255")}},
			map[string]ipSet{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.out, plan(tt.want, links), ipCmp); d != "" {
				t.Errorf("plan() (-want +got):\n%s", d)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	p := func(i, ip string) pair { return pair{i, addr(ip)} }
	tests := []struct {
		name           string
		cur, next      map[string]ipSet
		added, removed []pair
	}{
		{"empty", nil, nil, nil, nil},
		{"take", nil, map[string]ipSet{"eth0": set("198.18.2.200", "2001:db8::1")},
			[]pair{p("eth0", "198.18.2.200"), p("eth0", "2001:db8::1")}, nil},
		{"give up", map[string]ipSet{"eth0": set("198.18.2.200")}, map[string]ipSet{},
			nil, []pair{p("eth0", "198.18.2.200")}},
		{"unchanged", map[string]ipSet{"eth0": set("198.18.2.200")}, map[string]ipSet{"eth0": set("198.18.2.200")}, nil, nil},
		{"move between interfaces", map[string]ipSet{"eth0": set("198.18.2.200")}, map[string]ipSet{"eth1": set("198.18.2.200")},
			[]pair{p("eth1", "198.18.2.200")}, []pair{p("eth0", "198.18.2.200")}},
		{"mixed, sorted by IP then interface",
			map[string]ipSet{"eth1": set("198.18.2.202", "198.18.2.201"), "eth0": set("198.18.2.201")},
			map[string]ipSet{"eth1": set("198.18.2.200", "198.18.2.201"), "eth0": set("198.18.2.203", "198.18.2.200")},
			[]pair{p("eth0", "198.18.2.200"), p("eth1", "198.18.2.200"), p("eth0", "198.18.2.203")},
			[]pair{p("eth0", "198.18.2.201"), p("eth1", "198.18.2.202")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			added, removed := diff(tt.cur, tt.next)
			if d := cmp.Diff(tt.added, added, ipCmp); d != "" {
				t.Errorf("diff() added (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.removed, removed, ipCmp); d != "" {
				t.Errorf("diff() removed (-want +got):\n%s", d)
			}
		})
	}
}

func TestGroup(t *testing.T) {
	got := group(map[string]ipSet{
		"eth1": set("2001:db8::1", "198.18.2.200"),
		"eth0": set("198.18.2.200"),
		"eth2": {},
	})
	want := []Assignment{
		{IP: addr("198.18.2.200"), Interfaces: []string{"eth0", "eth1"}},
		{IP: addr("2001:db8::1"), Interfaces: []string{"eth1"}},
	}
	if d := cmp.Diff(want, got, ipCmp); d != "" {
		t.Errorf("group() (-want +got):\n%s", d)
	}
}

func TestNormalize(t *testing.T) {
	in := []Assignment{
		{IP: addr("::ffff:198.18.2.200"), Interfaces: []string{"eth0"}},
		{IP: addr("ff02::1")},
		{},
	}
	valid, invalid := normalize(in)
	if d := cmp.Diff([]Assignment{{IP: addr("198.18.2.200"), Interfaces: []string{"eth0"}}}, valid, ipCmp); d != "" {
		t.Errorf("normalize() valid (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]netip.Addr{addr("ff02::1"), {}}, invalid, ipCmp); d != "" {
		t.Errorf("normalize() invalid (-want +got):\n%s", d)
	}
	in[0].Interfaces[0] = "changed"
	if valid[0].Interfaces[0] != "eth0" {
		t.Error("normalize() keeps a reference to the caller's slice")
	}
}
