package l2

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

var (
	selfMAC     = mac("02:00:00:00:02:0b")
	clientMAC   = mac("02:00:00:00:02:64")
	peerMAC     = mac("02:00:00:00:02:0c") // another berth node
	strangerMAC = mac("02:00:00:00:02:66")
	isPeer      = func(m net.HardwareAddr) bool { return bytes.Equal(m, peerMAC) }
	owned       = set("198.18.2.200", "2001:db8:18:2::1:a")
)

func arpPacket(op arp.Operation, sha net.HardwareAddr, sip string, tha net.HardwareAddr, tip string) *arp.Packet {
	p, err := arp.NewPacket(op, sha, addr(sip), tha, addr(tip))
	if err != nil {
		panic(err)
	}
	return p
}

func TestDecideARP(t *testing.T) {
	zero := net.HardwareAddr{0, 0, 0, 0, 0, 0}
	bcast := ethernet.Broadcast
	req, rep := arp.OperationRequest, arp.OperationReply
	tests := []struct {
		name string
		p    *arp.Packet
		want verdict
	}{
		{"request for an owned IP", arpPacket(req, clientMAC, "198.18.2.100", zero, "198.18.2.200"), answer},
		{"unicast re-validation request", arpPacket(req, clientMAC, "198.18.2.100", selfMAC, "198.18.2.200"), answer},
		{"ARP probe (RFC 5227)", arpPacket(req, clientMAC, "0.0.0.0", zero, "198.18.2.200"), answer},
		{"request for an unowned IP", arpPacket(req, clientMAC, "198.18.2.100", zero, "198.18.2.201"), dropNotOwned},
		{"request for the node's own IP", arpPacket(req, clientMAC, "198.18.2.100", zero, "198.18.2.11"), dropNotOwned},
		{"a reply to an owned IP's request", arpPacket(rep, clientMAC, "198.18.2.100", selfMAC, "198.18.2.200"), dropNotRequest},
		{"reply to someone else", arpPacket(rep, clientMAC, "198.18.2.100", selfMAC, "198.18.2.11"), dropNotOwned},
		{"our own gratuitous ARP", arpPacket(req, selfMAC, "198.18.2.200", zero, "198.18.2.200"), dropOwnFrame},
		{"a stranger's reply for an owned IP", arpPacket(rep, strangerMAC, "198.18.2.200", clientMAC, "198.18.2.100"), conflict},
		{"a stranger's gratuitous request", arpPacket(req, strangerMAC, "198.18.2.200", zero, "198.18.2.200"), conflict},
		{"a stranger's gratuitous reply", arpPacket(rep, strangerMAC, "198.18.2.200", bcast, "198.18.2.200"), conflict},
		{"a stranger asking for an owned IP from it", arpPacket(req, strangerMAC, "198.18.2.200", zero, "198.18.2.100"), conflict},
		{"a berth node's handover reply", arpPacket(rep, peerMAC, "198.18.2.200", clientMAC, "198.18.2.100"), dropFriendly},
		{"a berth node's gratuitous ARP", arpPacket(req, peerMAC, "198.18.2.200", zero, "198.18.2.200"), dropFriendly},
		{"a stranger's claim of an unowned IP", arpPacket(rep, strangerMAC, "198.18.2.201", bcast, "198.18.2.201"), dropNotOwned},
		{"IPv6 LB IP cannot appear in ARP", &arp.Packet{HardwareAddrLength: 6, IPLength: 16, ProtocolType: 0x86dd,
			Operation: req, SenderHardwareAddr: clientMAC, SenderIP: addr("2001:db8:18:2::100"), TargetHardwareAddr: zero,
			TargetIP: addr("2001:db8:18:2::1:a")}, dropMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decideARP(tt.p, owned, selfMAC, isPeer); got != tt.want {
				t.Errorf("decideARP(%v) = %s, want %s", tt.p, got, tt.want)
			}
		})
	}
	t.Run("nil friendly", func(t *testing.T) {
		got := decideARP(arpPacket(rep, peerMAC, "198.18.2.200", clientMAC, "198.18.2.100"), owned, selfMAC, nil)
		if got != conflict {
			t.Errorf("without BerthMAC, a foreign reply for an owned IP is %s, want %s", got, conflict)
		}
	})
}

func TestDecideNS(t *testing.T) {
	lb := addr("2001:db8:18:2::1:a")
	client := addr("2001:db8:18:2::100")
	type out struct {
		V         verdict
		Dst       netip.Addr
		Solicited bool
	}
	tests := []struct {
		name   string
		target netip.Addr
		src    netip.Addr
		hop    int
		want   out
	}{
		{"address resolution", lb, client, 255, out{answer, client, true}},
		{"from a link-local source, zone kept", lb, addr("fe80::64%eth1"), 255, out{answer, addr("fe80::64%eth1"), true}},
		{"duplicate address detection", lb, addr("::%eth1"), 255, out{answer, allNodes, false}},
		{"hop limit unknown", lb, client, -1, out{answer, client, true}},
		{"routed (hop limit < 255)", lb, client, 254, out{V: dropRouted}},
		{"unowned target", addr("2001:db8:18:2::1:b"), client, 255, out{V: dropNotOwned}},
		{"target with a zone", addr("2001:db8:18:2::1:a%eth1"), client, 255, out{answer, client, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := &ndp.NeighborSolicitation{TargetAddress: tt.target}
			var got out
			got.V, got.Dst, got.Solicited = decideNS(ns, tt.src, tt.hop, owned)
			if d := cmp.Diff(tt.want, got, ipCmp); d != "" {
				t.Errorf("decideNS() (-want +got):\n%s", d)
			}
		})
	}
}

func TestDecideNA(t *testing.T) {
	lb := addr("2001:db8:18:2::1:a")
	tlla := func(m net.HardwareAddr) []ndp.Option {
		return []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: m}}
	}
	tests := []struct {
		name string
		na   ndp.NeighborAdvertisement
		hop  int
		want verdict
	}{
		{"a stranger's unsolicited NA", ndp.NeighborAdvertisement{Override: true, TargetAddress: lb, Options: tlla(strangerMAC)}, 255, conflict},
		{"a stranger's solicited NA", ndp.NeighborAdvertisement{Solicited: true, TargetAddress: lb, Options: tlla(strangerMAC)}, 255, conflict},
		{"our own NA looped back", ndp.NeighborAdvertisement{Override: true, TargetAddress: lb, Options: tlla(selfMAC)}, 255, dropOwnFrame},
		{"a berth node's NA", ndp.NeighborAdvertisement{Override: true, TargetAddress: lb, Options: tlla(peerMAC)}, 255, dropFriendly},
		{"no target link-layer address", ndp.NeighborAdvertisement{Override: true, TargetAddress: lb}, 255, dropNoLinkAddr},
		{"source link-layer address only", ndp.NeighborAdvertisement{TargetAddress: lb,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: strangerMAC}}}, 255, dropNoLinkAddr},
		{"unowned target", ndp.NeighborAdvertisement{TargetAddress: addr("2001:db8:18:2::1:b"), Options: tlla(strangerMAC)}, 255, dropNotOwned},
		{"routed", ndp.NeighborAdvertisement{TargetAddress: lb, Options: tlla(strangerMAC)}, 64, dropRouted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, m := decideNA(&tt.na, tt.hop, owned, selfMAC, isPeer)
			if got != tt.want {
				t.Fatalf("decideNA() = %s, want %s", got, tt.want)
			}
			if (got == conflict) != bytes.Equal(m, strangerMAC) {
				t.Errorf("decideNA() MAC = %v with %s", m, got)
			}
		})
	}
}

// FuzzParseARP: whatever parseARP accepts is IPv4-over-Ethernet ARP that encodes back to
// the bytes it came from.
func FuzzParseARP(f *testing.F) {
	for _, p := range []*arp.Packet{
		arpPacket(arp.OperationRequest, clientMAC, "198.18.2.100", net.HardwareAddr{0, 0, 0, 0, 0, 0}, "198.18.2.200"),
		arpPacket(arp.OperationReply, strangerMAC, "198.18.2.200", ethernet.Broadcast, "198.18.2.200"),
	} {
		pb, _ := p.MarshalBinary()
		fb, _ := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: p.SenderHardwareAddr,
			EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
		f.Add(fb)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := parseARP(b)
		if !ok {
			return
		}
		if !p.SenderIP.Is4() || !p.TargetIP.Is4() || len(p.SenderHardwareAddr) != 6 {
			t.Fatalf("parseARP accepted %+v", p)
		}
		pb, err := p.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, pb) {
			t.Fatalf("parseARP(%x) = %+v, which encodes to %x", b, p, pb)
		}
	})
}
