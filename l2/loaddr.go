package l2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// How berth marks the IPv6 addresses it puts on lo, so that it removes its own leftovers
// (a speaker that was killed cannot clean up) and never touches anyone else's addresses.
// Each address carries both marks; either one identifies it:
//   - the address protocol (IFA_PROTO, Linux ≥ 6.1; `ip address` shows it as "proto 190"
//     with iproute2 ≥ 6.3). Older kernels accept and drop the attribute.
//   - the metric of the address's prefix route (IFA_RT_PRIORITY, Linux ≥ 4.18 for IPv6;
//     `ip -6 address show dev lo` shows "metric 1650815604"). Its value spells "bert" in
//     ASCII. For a /128 on lo the metric routes nothing differently: the local table's
//     route delivers the traffic whatever the main table's metric.
//
// netlink's Addr has no protocol field (vishvananda/netlink v1.3.1), hence the raw
// requests below.
const (
	addrProto  = 190
	addrMetric = 0x62657274 // "bert"

	ifaProto = 11 // IFA_PROTO in linux/if_addr.h; x/sys/unix has no name for it
)

// loAddr is an address on lo as the dump reports it.
type loAddr struct {
	Prefix netip.Prefix
	Proto  uint8
	Metric uint32
}

// marked reports whether berth added the address.
func (a loAddr) marked() bool { return a.Proto == addrProto || a.Metric == addrMetric }

// loPlan compares the addresses on lo with the IPv6 LB IPs that should be there: the
// ones to add as /128 and the marked ones to delete. An address someone else configured is
// never deleted, and its IP is not added again. IPv4 is never added, whatever want holds,
// and a marked IPv4 address (which berth never adds) is deleted.
func loPlan(present []loAddr, want ipSet) (add []netip.Addr, del []netip.Prefix) {
	have := ipSet{}
	for _, a := range present {
		ip := a.Prefix.Addr()
		if a.marked() && (ip.Is4() || !want.has(ip) || a.Prefix.Bits() != 128) {
			del = append(del, a.Prefix)
			continue
		}
		have[ip] = struct{}{}
	}
	for _, ip := range want.sorted() {
		if ip.Is6() && !have.has(ip) {
			add = append(add, ip)
		}
	}
	slices.SortFunc(del, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return add, del
}

// listAddrs dumps the addresses of the link with the given index.
func listAddrs(index int) ([]loAddr, error) {
	var (
		msgs [][]byte
		err  error
	)
	for range 3 {
		req := nl.NewNetlinkRequest(unix.RTM_GETADDR, unix.NLM_F_DUMP)
		req.AddData(nl.NewIfAddrmsg(unix.AF_UNSPEC))
		msgs, err = req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWADDR)
		if !errors.Is(err, nl.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	var out []loAddr
	for _, m := range msgs {
		if a, ok := parseAddrMsg(m, index); ok {
			out = append(out, a)
		}
	}
	return out, nil
}

// parseAddrMsg decodes one RTM_NEWADDR message if it is for the link index.
func parseAddrMsg(m []byte, index int) (loAddr, bool) {
	if len(m) < unix.SizeofIfAddrmsg {
		return loAddr{}, false
	}
	hdr := nl.DeserializeIfAddrmsg(m)
	if int(hdr.Index) != index {
		return loAddr{}, false
	}
	attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfAddrmsg:])
	if err != nil {
		return loAddr{}, false
	}
	var (
		a       loAddr
		ip, loc netip.Addr
	)
	for _, at := range attrs {
		switch at.Attr.Type {
		case unix.IFA_ADDRESS:
			ip, _ = netip.AddrFromSlice(at.Value)
		case unix.IFA_LOCAL:
			loc, _ = netip.AddrFromSlice(at.Value)
		case ifaProto:
			if len(at.Value) >= 1 {
				a.Proto = at.Value[0]
			}
		case unix.IFA_RT_PRIORITY:
			if len(at.Value) >= 4 {
				a.Metric = binary.NativeEndian.Uint32(at.Value)
			}
		}
	}
	if loc.IsValid() { // IFA_LOCAL is the address itself where the two differ (IPv4 peers)
		ip = loc
	}
	if !ip.IsValid() {
		return loAddr{}, false
	}
	a.Prefix = netip.PrefixFrom(ip, int(hdr.Prefixlen))
	return a, true
}

// addMarked puts ip on the link as a marked /128 without duplicate address detection.
// It refuses IPv4 (see the package comment).
func addMarked(index int, ip netip.Addr) error {
	if !ip.Is6() || ip.Is4In6() {
		return fmt.Errorf("address %s on link %d: berth puts only IPv6 addresses on lo", ip, index)
	}
	req := nl.NewNetlinkRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	msg := nl.NewIfAddrmsg(unix.AF_INET6)
	msg.Prefixlen = 128
	msg.Flags = unix.IFA_F_NODAD
	msg.Index = uint32(index)
	req.AddData(msg)
	b := ip.As16()
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, b[:]))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, b[:]))
	flags := make([]byte, 4)
	binary.NativeEndian.PutUint32(flags, unix.IFA_F_NODAD)
	req.AddData(nl.NewRtAttr(unix.IFA_FLAGS, flags))
	metric := make([]byte, 4)
	binary.NativeEndian.PutUint32(metric, addrMetric)
	req.AddData(nl.NewRtAttr(unix.IFA_RT_PRIORITY, metric))
	req.AddData(nl.NewRtAttr(ifaProto, []byte{addrProto}))
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("add %s/128 to link %d: %w", ip, index, err)
	}
	return nil
}

// delAddr removes an address from the link; one already gone is not an error.
func delAddr(index int, p netip.Prefix) error {
	req := nl.NewNetlinkRequest(unix.RTM_DELADDR, unix.NLM_F_ACK)
	fam := unix.AF_INET6
	if p.Addr().Is4() {
		fam = unix.AF_INET
	}
	msg := nl.NewIfAddrmsg(fam)
	msg.Prefixlen = uint8(p.Bits())
	msg.Index = uint32(index)
	req.AddData(msg)
	b := p.Addr().AsSlice()
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, b))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, b))
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete %s from link %d: %w", p, index, err)
	}
	return nil
}
