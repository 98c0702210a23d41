package l2

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
)

// These functions decide what to do with one received packet. They are pure: the owned
// set, this interface's MAC and the test for friendly MACs come in as arguments.

// friendlyFunc reports whether a MAC belongs to this host or to another berth node: such
// a sender claiming an owned IP is a planned handover or ourselves, not a conflict.
type friendlyFunc func(net.HardwareAddr) bool

// verdict is what one received packet calls for, or why it is dropped. The values are
// CamelCase so they read well in logs.
type verdict string

const (
	// answer: reply that the target IP is at this interface's MAC.
	answer verdict = "Answer"
	// conflict: a machine that is neither this host nor a berth node claims an owned IP.
	conflict verdict = "Conflict"

	dropMalformed  verdict = "Malformed"     // not IPv4-over-Ethernet ARP
	dropOwnFrame   verdict = "OwnFrame"      // sent from this interface's MAC
	dropNotOwned   verdict = "NotOwned"      // about an IP this interface does not answer for
	dropNotRequest verdict = "NotRequest"    // an ARP reply or advertisement that claims nothing of ours
	dropFriendly   verdict = "FriendlyClaim" // a berth node or this host claims an owned IP: a handover
	dropRouted     verdict = "HopLimit"      // NDP with a hop limit below 255 was routed: invalid (RFC 4861)
	dropNoLinkAddr verdict = "NoLinkAddress" // an advertisement without a target link-layer address names no machine
)

// decideARP answers requests for owned IPs and flags any other machine that claims one.
//
// A packet whose sender IP is owned claims that IP: a gratuitous ARP in either form, or an
// answer to someone's request. It is never answered; it is a conflict unless it comes from
// a friendly MAC. ARP probes (sender IP 0.0.0.0, RFC 5227) for an owned IP are answered, so
// a host checking whether the address is free learns it is not.
func decideARP(p *arp.Packet, owned ipSet, self net.HardwareAddr, friendly friendlyFunc) verdict {
	switch {
	case p.HardwareAddrLength != 6 || p.IPLength != 4 || p.ProtocolType != 0x0800:
		return dropMalformed
	case bytes.Equal(p.SenderHardwareAddr, self):
		return dropOwnFrame // our own frames, or the kernel's on this interface
	case owned.has(p.SenderIP):
		if friendly != nil && friendly(p.SenderHardwareAddr) {
			return dropFriendly
		}
		return conflict
	case !owned.has(p.TargetIP):
		return dropNotOwned
	case p.Operation != arp.OperationRequest:
		return dropNotRequest
	}
	return answer
}

var allNodes = netip.MustParseAddr("ff02::1")

// decideNS answers a solicitation for an owned IPv6 address, multicast (address
// resolution, DAD) or unicast to the address itself (a STALE entry being re-validated).
// hopLimit is the received IPv6 hop limit, or -1 when unknown; RFC 4861 requires 255, which
// proves the packet was not routed. When answering, dst is where the advertisement goes:
// the solicitor, or all nodes (ff02::1) when the solicitor has no address yet (duplicate
// address detection); solicited is its S flag, false when sent to all nodes (RFC 4861
// 7.2.4: Linux drops a multicast advertisement with S set).
func decideNS(ns *ndp.NeighborSolicitation, src netip.Addr, hopLimit int, owned ipSet) (v verdict, dst netip.Addr, solicited bool) {
	switch {
	case hopLimit >= 0 && hopLimit != ndp.HopLimit:
		return dropRouted, netip.Addr{}, false
	case !owned.has(ns.TargetAddress.WithZone("")):
		return dropNotOwned, netip.Addr{}, false
	case src.WithZone("").IsUnspecified():
		return answer, allNodes, false
	}
	return answer, src, true
}

// decideNA reports whether an advertisement claims an owned address for another machine,
// and that machine's MAC. An advertisement without a target link-layer address names no
// machine, so it cannot be told from ours and is not counted.
func decideNA(na *ndp.NeighborAdvertisement, hopLimit int, owned ipSet, self net.HardwareAddr, friendly friendlyFunc) (verdict, net.HardwareAddr) {
	if hopLimit >= 0 && hopLimit != ndp.HopLimit {
		return dropRouted, nil
	}
	if !owned.has(na.TargetAddress.WithZone("")) {
		return dropNotOwned, nil
	}
	mac := targetLinkAddr(na.Options)
	switch {
	case mac == nil:
		return dropNoLinkAddr, nil
	case bytes.Equal(mac, self):
		return dropOwnFrame, nil
	case friendly != nil && friendly(mac):
		return dropFriendly, nil
	}
	return conflict, mac
}

func targetLinkAddr(opts []ndp.Option) net.HardwareAddr {
	for _, o := range opts {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
			return lla.Addr
		}
	}
	return nil
}
