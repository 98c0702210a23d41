package capture

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Ether types the decoders know.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeIPv6 = 0x86dd
)

// ARP operations.
const (
	ARPRequest = 1
	ARPReply   = 2
)

// ICMPv6 neighbour discovery types.
const (
	NeighborSolicitation  = 135
	NeighborAdvertisement = 136
)

// Frame is one Ethernet frame seen on the captured device.
type Frame struct {
	Time time.Time
	// Outgoing is true for frames the namespace sent, false for frames it received.
	Outgoing bool
	Data     []byte
}

// Dst is the destination MAC address.
func (f Frame) Dst() net.HardwareAddr {
	if len(f.Data) < 14 {
		return nil
	}
	return net.HardwareAddr(f.Data[0:6])
}

// Src is the source MAC address.
func (f Frame) Src() net.HardwareAddr {
	if len(f.Data) < 14 {
		return nil
	}
	return net.HardwareAddr(f.Data[6:12])
}

// EtherType is the frame's ether type, 0 for a runt.
func (f Frame) EtherType() uint16 {
	if len(f.Data) < 14 {
		return 0
	}
	return binary.BigEndian.Uint16(f.Data[12:14])
}

// ARP is a decoded Ethernet/IPv4 ARP packet.
type ARP struct {
	Op        uint16
	SenderMAC net.HardwareAddr
	SenderIP  netip.Addr
	TargetMAC net.HardwareAddr
	TargetIP  netip.Addr
}

// Gratuitous reports whether the packet announces the sender's own address (request or
// reply with sender IP = target IP), as a node taking over an address sends it.
func (a ARP) Gratuitous() bool { return a.SenderIP == a.TargetIP }

func (a ARP) String() string {
	op := "request"
	if a.Op == ARPReply {
		op = "reply"
	}
	return fmt.Sprintf("arp %s %s is-at %s -> %s (%s)", op, a.SenderIP, a.SenderMAC, a.TargetIP, a.TargetMAC)
}

// ARP decodes the frame as an Ethernet/IPv4 ARP packet.
func (f Frame) ARP() (ARP, bool) {
	if f.EtherType() != EtherTypeARP || len(f.Data) < 14+28 {
		return ARP{}, false
	}
	p := f.Data[14:]
	if binary.BigEndian.Uint16(p[0:2]) != 1 || binary.BigEndian.Uint16(p[2:4]) != EtherTypeIPv4 || p[4] != 6 || p[5] != 4 {
		return ARP{}, false
	}
	return ARP{
		Op:        binary.BigEndian.Uint16(p[6:8]),
		SenderMAC: net.HardwareAddr(p[8:14]),
		SenderIP:  netip.AddrFrom4([4]byte(p[14:18])),
		TargetMAC: net.HardwareAddr(p[18:24]),
		TargetIP:  netip.AddrFrom4([4]byte(p[24:28])),
	}, true
}

// ND is a decoded IPv6 neighbour solicitation or advertisement.
type ND struct {
	Type     uint8 // NeighborSolicitation or NeighborAdvertisement
	Src, Dst netip.Addr
	HopLimit uint8
	Target   netip.Addr
	// Flags of an advertisement.
	Router, Solicited, Override bool
	// LinkAddr is the source (solicitation) or target (advertisement) link-layer option.
	LinkAddr net.HardwareAddr
}

// Unsolicited reports whether this is an advertisement nobody asked for, as a node taking
// over an address sends it.
func (n ND) Unsolicited() bool { return n.Type == NeighborAdvertisement && !n.Solicited }

func (n ND) String() string {
	kind := "ns"
	if n.Type == NeighborAdvertisement {
		kind = "na"
	}
	return fmt.Sprintf("%s %s -> %s target %s lladdr %s R=%t S=%t O=%t", kind, n.Src, n.Dst, n.Target,
		n.LinkAddr, n.Router, n.Solicited, n.Override)
}

// ND decodes the frame as an IPv6 neighbour solicitation or advertisement (without
// extension headers, which neighbour discovery never carries).
func (f Frame) ND() (ND, bool) {
	const ip6, icmp = 14, 14 + 40
	if f.EtherType() != EtherTypeIPv6 || len(f.Data) < icmp+24 {
		return ND{}, false
	}
	h := f.Data[ip6:]
	if h[0]>>4 != 6 || h[6] != 58 {
		return ND{}, false
	}
	m := f.Data[icmp:]
	if (m[0] != NeighborSolicitation && m[0] != NeighborAdvertisement) || m[1] != 0 {
		return ND{}, false
	}
	n := ND{
		Type:     m[0],
		Src:      netip.AddrFrom16([16]byte(h[8:24])),
		Dst:      netip.AddrFrom16([16]byte(h[24:40])),
		HopLimit: h[7],
		Target:   netip.AddrFrom16([16]byte(m[8:24])),
	}
	if n.Type == NeighborAdvertisement {
		n.Router, n.Solicited, n.Override = m[4]&0x80 != 0, m[4]&0x40 != 0, m[4]&0x20 != 0
	}
	// Options: type, length in units of 8 bytes, value.
	for opts := m[24:]; len(opts) >= 8; {
		l := int(opts[1]) * 8
		if l == 0 || l > len(opts) {
			break
		}
		if (opts[0] == 1 || opts[0] == 2) && l >= 8 {
			n.LinkAddr = net.HardwareAddr(opts[2:8])
		}
		opts = opts[l:]
	}
	return n, true
}

// ARPReplyFrame builds a broadcast ARP reply in which mac claims ip: what a machine that
// also holds ip sends.
func ARPReplyFrame(mac net.HardwareAddr, ip netip.Addr) []byte {
	b := make([]byte, 0, 42)
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	b = append(b, mac...)
	b = append(b, 0x08, 0x06)          // ARP
	b = append(b, 0, 1, 0x08, 0, 6, 4) // Ethernet, IPv4, sizes
	b = append(b, 0, 2)                // reply
	ip4 := ip.As4()
	b = append(b, mac...)
	b = append(b, ip4[:]...)
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	b = append(b, ip4[:]...)
	return b
}

// ARPRequestFrame builds a broadcast ARP request from mac at ip asking who has target:
// what a client sends when it looks an address up.
func ARPRequestFrame(mac net.HardwareAddr, ip, target netip.Addr) []byte {
	b := make([]byte, 0, 42)
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	b = append(b, mac...)
	b = append(b, 0x08, 0x06)          // ARP
	b = append(b, 0, 1, 0x08, 0, 6, 4) // Ethernet, IPv4, sizes
	b = append(b, 0, 1)                // request
	ip4, target4 := ip.As4(), target.As4()
	b = append(b, mac...)
	b = append(b, ip4[:]...)
	b = append(b, 0, 0, 0, 0, 0, 0)
	b = append(b, target4[:]...)
	return b
}
