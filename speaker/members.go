package speaker

import (
	"net"
	"net/netip"
	"time"

	"github.com/berthlb/berth/l2"
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

func (m memberlistMembers) Suspects() []string { return m.l.Suspects() }

func (m memberlistMembers) Accused() map[string]time.Time { return m.l.Accused() }

func (m memberlistMembers) Probe(name string) bool { return m.l.Probe(name) }

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
	return m.l.SetMeta(membership.Meta{L2Interfaces: names, DecisionVersion: NewestVersion(), MACs: macs})
}

// UsableInterfaces lists the up interfaces matching patterns; without patterns, the l2
// package's default set (broadcast-capable, not loopback, not a bridge port, not a
// container runtime's), which the announcer also answers on.
func UsableInterfaces(patterns []string) ([]string, error) {
	if len(patterns) == 0 {
		return l2.DefaultInterfaces()
	}
	return membership.UpInterfaces(patterns)
}
