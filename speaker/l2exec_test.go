package speaker

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthlb/berth/l2"
)

func TestL2Assignments(t *testing.T) {
	ip := func(s string, announce bool, ifs ...string) IPDecision {
		return IPDecision{IP: netip.MustParseAddr(s), L2: L2Decision{Announce: announce, Interfaces: ifs}}
	}
	d := Decisions{Services: []*ServiceDecision{
		{Namespace: "a", Name: "dual", IPs: []IPDecision{ip("198.18.2.193", true, "eth1"), ip("2001:db8:18:2::1:5", true, "eth1")}},
		{Namespace: "a", Name: "elsewhere", IPs: []IPDecision{ip("198.18.2.194", false)}},
		{Namespace: "b", Name: "shares", IPs: []IPDecision{ip("198.18.2.193", true, "eth1")}},
		{Namespace: "b", Name: "two-ifs", IPs: []IPDecision{ip("198.18.2.195", true, "eth1", "eth2")}},
	}}
	want := []l2.Assignment{
		{IP: netip.MustParseAddr("198.18.2.193"), Interfaces: []string{"eth1"}},
		{IP: netip.MustParseAddr("2001:db8:18:2::1:5"), Interfaces: []string{"eth1"}},
		{IP: netip.MustParseAddr("198.18.2.195"), Interfaces: []string{"eth1", "eth2"}},
	}
	if diff := cmp.Diff(want, L2Assignments(d), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("L2Assignments (-want +got):\n%s", diff)
	}
}
