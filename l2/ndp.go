package l2

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// ndpConn answers neighbour solicitations on one interface through a raw ICMPv6 socket.
//
// It listens on "::" (ndp.Unspecified), not on the link-local address: a client
// re-validating a STALE entry sends its NS unicast to the LB IP, which the kernel
// delivers only to sockets bound to the unspecified address (and only because the IP is
// on lo). A raw socket bound to "::" is not bound to a device, so it receives the ICMPv6
// of every interface: the reader keeps only what arrived on its own.
type ndpConn struct {
	l       *link
	c       *ndp.Conn
	closing atomic.Bool
	done    chan struct{}

	joined map[netip.Addr]bool // solicited-node groups; the loop's alone
}

// openNDP opens the socket, filtered to solicitations and advertisements, and starts its
// reader.
func openNDP(l *link, h *handler) (*ndpConn, error) {
	c, _, err := ndp.Listen(l.ifi, ndp.Unspecified)
	if err != nil {
		return nil, fmt.Errorf("interface %s: open NDP socket: %w", l.name, err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborSolicitation)
	f.Accept(ipv6.ICMPTypeNeighborAdvertisement)
	if err := c.SetICMPFilter(&f); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("interface %s: NDP socket filter: %w", l.name, err)
	}
	if err := c.SetControlMessage(ipv6.FlagInterface|ipv6.FlagHopLimit, true); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("interface %s: NDP socket control messages: %w", l.name, err)
	}
	nc := &ndpConn{l: l, c: c, done: make(chan struct{}), joined: map[netip.Addr]bool{}}
	go nc.read(h)
	return nc, nil
}

// close stops the reader and waits for it. Closing the socket leaves its groups.
func (c *ndpConn) close() {
	c.closing.Store(true)
	_ = c.c.Close()
	<-c.done
}

// syncGroups joins the solicited-node multicast group of every IP in ips and leaves the
// groups no IP needs any more (several IPs can share one group).
func (c *ndpConn) syncGroups(ips ipSet) error {
	want := map[netip.Addr]bool{}
	var errs []error
	for ip := range ips {
		g, err := ndp.SolicitedNodeMulticast(ip)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		want[g] = true
		if !c.joined[g] {
			if err := c.c.JoinGroup(g); err != nil {
				errs = append(errs, fmt.Errorf("interface %s: join %s for %s: %w", c.l.name, g, ip, err))
				continue
			}
			c.joined[g] = true
		}
	}
	for g := range c.joined {
		if !want[g] {
			if err := c.c.LeaveGroup(g); err != nil {
				errs = append(errs, fmt.Errorf("interface %s: leave %s: %w", c.l.name, g, err))
			}
			delete(c.joined, g)
		}
	}
	return errors.Join(errs...)
}

func (c *ndpConn) read(h *handler) {
	defer close(c.done)
	buf := make([]byte, max(c.l.ifi.MTU, 1280))
	for {
		n, cm, src, err := c.c.ReadRaw(buf)
		if err != nil {
			if !c.closing.Load() {
				h.broken(c.l, fmt.Errorf("interface %s: read NDP: %w", c.l.name, err))
			}
			return
		}
		hop := -1
		if cm != nil {
			if cm.IfIndex != 0 && cm.IfIndex != c.l.index {
				continue // another interface's packet
			}
			hop = cm.HopLimit
		}
		m, err := ndp.ParseMessage(buf[:n])
		if err != nil {
			continue
		}
		switch m := m.(type) {
		case *ndp.NeighborSolicitation:
			v, dst, solicited := decideNS(m, src, hop, c.l.owned())
			if v != answer {
				continue
			}
			if h.silent() {
				h.log.V(4).Info("Withheld a neighbour advertisement after a freeze", "interface", c.l.name, "ip", m.TargetAddress)
				continue
			}
			if err := c.advertise(m.TargetAddress, dst, solicited); err != nil {
				h.log.V(4).Info("Cannot send neighbour advertisement", "interface", c.l.name, "ip", m.TargetAddress, "err", err)
				continue
			}
			h.metrics.answers.WithLabelValues(familyIPv6).Inc()
			h.log.V(5).Info("Answered NS", "interface", c.l.name, "ip", m.TargetAddress, "to", src)
		case *ndp.NeighborAdvertisement:
			switch v, mac := decideNA(m, hop, c.l.owned(), c.l.mac, h.friendly); v {
			case conflict:
				h.conflict(m.TargetAddress, c.l.name, mac)
			case dropFriendly:
				h.log.V(4).Info("A berth node claims an LB IP this node answers for", "interface", c.l.name,
					"ip", m.TargetAddress, "mac", targetLinkAddr(m.Options).String())
			}
		}
	}
}

// announce sends an unsolicited advertisement with Override to all nodes, so every
// neighbour's existing entry for ip moves to this interface's MAC.
func (c *ndpConn) announce(ip netip.Addr) error {
	return c.advertise(ip, allNodes, false)
}

// advertise sends a neighbour advertisement for target with this interface's MAC. The
// source address is target itself, which is local (on lo): some tools (ndisc6) ignore an
// advertisement from another source. Should the address be missing from lo, the kernel
// refuses that source and the advertisement goes from an address of its choosing.
func (c *ndpConn) advertise(target, dst netip.Addr, solicited bool) error {
	na := &ndp.NeighborAdvertisement{
		Solicited:     solicited,
		Override:      true,
		TargetAddress: target,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: c.l.mac}},
	}
	cm := &ipv6.ControlMessage{HopLimit: ndp.HopLimit, Src: target.AsSlice(), IfIndex: c.l.index}
	err := c.c.WriteTo(na, cm, dst)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EADDRNOTAVAIL) {
		cm.Src = nil
		err = c.c.WriteTo(na, cm, dst)
	}
	return err
}
