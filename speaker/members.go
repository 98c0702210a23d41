package speaker

import (
	"net"
	"net/netip"

	"github.com/berthlb/berth/speaker/membership"
)

// Memberlist adapts a membership.List to what the Speaker needs.
func Memberlist(l *membership.List) Membership { return memberlistMembers{l} }

type memberlistMembers struct{ l *membership.List }

func (m memberlistMembers) Members() []Member {
	ms := m.l.Members()
	out := make([]Member, len(ms))
	for i, x := range ms {
		out[i] = Member{Name: x.Name, L2Interfaces: x.Meta.L2Interfaces, DecisionVersion: x.Meta.DecisionVersion, MACs: x.Meta.MACs}
	}
	return out
}

func (m memberlistMembers) Join(addrs []netip.Addr) (int, error) { return m.l.Join(addrs) }

// SetL2Interfaces publishes the interfaces with their MACs, which tell the other nodes'
// L2 announcers that this node's answers are berth's, not a conflict.
func (m memberlistMembers) SetL2Interfaces(names []string) error {
	var macs []string
	for _, n := range names {
		if ifi, err := net.InterfaceByName(n); err == nil && len(ifi.HardwareAddr) > 0 {
			macs = append(macs, ifi.HardwareAddr.String())
		}
	}
	return m.l.SetMeta(membership.Meta{L2Interfaces: names, DecisionVersion: DecisionVersion, MACs: macs})
}

// UsableInterfaces lists the up interfaces matching patterns. Without patterns it keeps
// only interfaces with a global unicast address: L2 announcements answer on a subnet, and
// the many address-less veths of a node would not fit in the member metadata.
func UsableInterfaces(patterns []string) ([]string, error) {
	up, err := membership.UpInterfaces(patterns)
	if err != nil || len(patterns) > 0 {
		return up, err
	}
	var out []string
	for _, name := range up {
		if hasGlobalAddress(name) {
			out = append(out, name)
		}
	}
	return out, nil
}

func hasGlobalAddress(name string) bool {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return false
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().IsGlobalUnicast() {
			return true
		}
	}
	return false
}
