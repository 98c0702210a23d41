package speaker

import (
	"net/netip"
	"slices"
	"testing"
)

// TestAnnouncementStatus: the status counts and lists what this node announces, and
// carries its memberlist view and its own L2 interfaces, which berthctl explain needs.
func TestAnnouncementStatus(t *testing.T) {
	ip := netip.MustParseAddr("198.18.2.193")
	d := Decisions{Node: "n1", DecisionVersion: 1,
		Members: []Member{{Name: "n1", L2Interfaces: []string{"eth1"}}, {Name: "n2", L2Interfaces: []string{"eth2"}}},
		Services: []*ServiceDecision{
			{Namespace: "a", Name: "l2", IPs: []IPDecision{{IP: ip, L2: L2Decision{Announce: true, Interfaces: []string{"eth1"}}}}},
			{Namespace: "a", Name: "elsewhere", IPs: []IPDecision{{IP: ip, L2: L2Decision{Reason: NotElected}}}},
		}}
	st := AnnouncementStatus(d)
	if !slices.Equal(st.Members, []string{"n1", "n2"}) || !slices.Equal(st.L2Interfaces, []string{"eth1"}) {
		t.Errorf("members %v, L2 interfaces %v; want [n1 n2] and n1's [eth1]", st.Members, st.L2Interfaces)
	}
	if st.L2 != 1 || len(st.Services) != 1 || st.Services[0].Name != "l2" || !slices.Equal(st.Services[0].L2, []string{"198.18.2.193"}) {
		t.Errorf("status %+v; want only a/l2 with its IP", st)
	}
}
