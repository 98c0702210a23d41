package l2

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// arpConn answers ARP on one interface through an AF_PACKET socket. It sees every ARP
// frame on the link (requests, replies, gratuitous ARP), so it also spots conflicts. It
// uses mdlayher/arp's packet codec over its own packet.Conn rather than arp.Client, which
// refuses interfaces without an IPv4 address and ends its reads on a malformed frame.
type arpConn struct {
	l       *link
	pc      *packet.Conn
	closing atomic.Bool
	done    chan struct{}
}

// openARP opens the socket and starts its reader.
func openARP(l *link, h *handler) (*arpConn, error) {
	pc, err := packet.Listen(l.ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
	if err != nil {
		return nil, fmt.Errorf("interface %s: open ARP socket: %w", l.name, err)
	}
	c := &arpConn{l: l, pc: pc, done: make(chan struct{})}
	go c.read(h)
	return c, nil
}

// close stops the reader and waits for it.
func (c *arpConn) close() {
	c.closing.Store(true)
	_ = c.pc.Close()
	<-c.done
}

func (c *arpConn) read(h *handler) {
	defer close(c.done)
	buf := make([]byte, 256) // ARP over Ethernet is 42 bytes; longer frames are cut, which is harmless
	for {
		n, _, err := c.pc.ReadFrom(buf)
		if errors.Is(err, unix.ENETDOWN) && !c.closing.Load() {
			// Once, when the link goes down; the socket works again when it comes back
			// up, and the loop closes it first if the link is no longer wanted.
			continue
		}
		if err != nil {
			if !c.closing.Load() {
				h.broken(c.l, fmt.Errorf("interface %s: read ARP: %w", c.l.name, err))
			}
			return
		}
		p, ok := parseARP(buf[:n])
		if !ok {
			continue
		}
		switch v := decideARP(p, c.l.owned(), c.l.mac, h.friendly); v {
		case answer:
			if h.silent() {
				h.log.V(4).Info("Withheld an ARP answer after a freeze", "interface", c.l.name, "ip", p.TargetIP)
				continue
			}
			if err := c.reply(p); err != nil {
				h.log.V(4).Info("Cannot send ARP reply", "interface", c.l.name, "ip", p.TargetIP, "err", err)
				continue
			}
			h.metrics.answers.WithLabelValues(familyIPv4).Inc()
			h.log.V(5).Info("Answered ARP", "interface", c.l.name, "ip", p.TargetIP, "to", p.SenderHardwareAddr)
		case conflict:
			h.conflict(p.SenderIP, c.l.name, p.SenderHardwareAddr)
		case dropFriendly:
			h.log.V(4).Info("A berth node claims an LB IP this node answers for", "interface", c.l.name,
				"ip", p.SenderIP, "mac", p.SenderHardwareAddr.String())
		}
	}
}

// parseARP decodes an Ethernet frame carrying ARP for IPv4 over Ethernet.
func parseARP(b []byte) (*arp.Packet, bool) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(b); err != nil || f.EtherType != ethernet.EtherTypeARP {
		return nil, false
	}
	p := new(arp.Packet)
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		return nil, false
	}
	if p.HardwareAddrLength != 6 || p.IPLength != 4 || p.ProtocolType != uint16(ethernet.EtherTypeIPv4) {
		return nil, false
	}
	return p, true
}

// reply tells the sender of request p that p.TargetIP is at this interface's MAC.
func (c *arpConn) reply(req *arp.Packet) error {
	p, err := arp.NewPacket(arp.OperationReply, c.l.mac, req.TargetIP, req.SenderHardwareAddr, req.SenderIP)
	if err != nil {
		return err
	}
	return c.send(p, req.SenderHardwareAddr)
}

// zeroMAC is the target hardware address of an ARP announcement (RFC 5227 2.3).
var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// announce sends gratuitous ARP for ip in both forms, as MetalLB does, since neighbours
// differ in which one they honour:
//   - a request with sender and target IP both ip (the RFC 5227 announcement; target
//     hardware address zero);
//   - a reply with sender and target both ip and our MAC. Linux treats a reply as
//     gratuitous only when the target hardware address equals the sender's (arp_is_garp),
//     so unlike MetalLB's broadcast target this one also overrides within locktime.
//
// Both go to the Ethernet broadcast address.
func (c *arpConn) announce(ip netip.Addr) error {
	req, err := arp.NewPacket(arp.OperationRequest, c.l.mac, ip, zeroMAC, ip)
	if err != nil {
		return err
	}
	if err := c.send(req, ethernet.Broadcast); err != nil {
		return err
	}
	rep, err := arp.NewPacket(arp.OperationReply, c.l.mac, ip, c.l.mac, ip)
	if err != nil {
		return err
	}
	return c.send(rep, ethernet.Broadcast)
}

func (c *arpConn) send(p *arp.Packet, dst net.HardwareAddr) error {
	pb, err := p.MarshalBinary()
	if err != nil {
		return err
	}
	f := ethernet.Frame{Destination: dst, Source: c.l.mac, EtherType: ethernet.EtherTypeARP, Payload: pb}
	fb, err := f.MarshalBinary()
	if err != nil {
		return err
	}
	_, err = c.pc.WriteTo(fb, &packet.Addr{HardwareAddr: dst})
	return err
}
