package capture

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// arpFrame encodes an Ethernet/IPv4 ARP frame.
func arpFrame(dst, src net.HardwareAddr, a ARP) []byte {
	b := make([]byte, 0, 42)
	b = append(b, dst...)
	b = append(b, src...)
	b = binary.BigEndian.AppendUint16(b, EtherTypeARP)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint16(b, EtherTypeIPv4)
	b = append(b, 6, 4)
	b = binary.BigEndian.AppendUint16(b, a.Op)
	b = append(b, a.SenderMAC...)
	b = append(b, a.SenderIP.AsSlice()...)
	b = append(b, a.TargetMAC...)
	b = append(b, a.TargetIP.AsSlice()...)
	return b
}

// naFrame encodes an unsolicited neighbour advertisement with a target link-layer option
// (the checksum is left zero; the decoder does not check it).
func naFrame(src net.HardwareAddr, from, target netip.Addr) []byte {
	b := append([]byte(nil), 0x33, 0x33, 0, 0, 0, 1)
	b = append(b, src...)
	b = binary.BigEndian.AppendUint16(b, EtherTypeIPv6)
	b = append(b, 0x60, 0, 0, 0, 0, 32, 58, 255)
	b = append(b, from.AsSlice()...)
	b = append(b, netip.MustParseAddr("ff02::1").AsSlice()...)
	b = append(b, NeighborAdvertisement, 0, 0, 0, 0x20, 0, 0, 0)
	b = append(b, target.AsSlice()...)
	b = append(b, 2, 1)
	b = append(b, src...)
	return b
}

func TestDecode(t *testing.T) {
	node := mac("02:18:02:00:00:0b")
	garp := ARP{Op: ARPRequest, SenderMAC: node, SenderIP: netip.MustParseAddr("198.18.2.200"),
		TargetMAC: mac("ff:ff:ff:ff:ff:ff"), TargetIP: netip.MustParseAddr("198.18.2.200")}
	f := Frame{Data: arpFrame(mac("ff:ff:ff:ff:ff:ff"), node, garp)}
	got, ok := f.ARP()
	if !ok {
		t.Fatal("ARP() = false for an ARP frame")
	}
	if d := cmp.Diff(garp, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("ARP() (-want +got):\n%s", d)
	}
	if !got.Gratuitous() {
		t.Error("Gratuitous() = false for sender IP = target IP")
	}
	if _, ok := f.ND(); ok {
		t.Error("ND() = true for an ARP frame")
	}

	vip := netip.MustParseAddr("2001:db8:18:2::1:10")
	nf := Frame{Data: naFrame(node, vip, vip)}
	nd, ok := nf.ND()
	if !ok {
		t.Fatal("ND() = false for a neighbour advertisement")
	}
	want := ND{Type: NeighborAdvertisement, Src: vip, Dst: netip.MustParseAddr("ff02::1"), HopLimit: 255,
		Target: vip, Override: true, LinkAddr: node}
	if d := cmp.Diff(want, nd, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("ND() (-want +got):\n%s", d)
	}
	if !nd.Unsolicited() {
		t.Error("Unsolicited() = false without the S flag")
	}
	if _, ok := nf.ARP(); ok {
		t.Error("ARP() = true for an IPv6 frame")
	}
}

// FuzzDecode checks that the decoders never panic and that a decoded ARP packet encodes
// back to the bytes it came from.
func FuzzDecode(f *testing.F) {
	node := mac("02:18:02:00:00:0b")
	vip := netip.MustParseAddr("2001:db8:18:2::1:10")
	f.Add(arpFrame(mac("ff:ff:ff:ff:ff:ff"), node, ARP{Op: ARPReply, SenderMAC: node, SenderIP: netip.MustParseAddr("198.18.2.200"),
		TargetMAC: node, TargetIP: netip.MustParseAddr("198.18.2.200")}))
	f.Add(naFrame(node, vip, vip))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := Frame{Data: data}
		if a, ok := fr.ARP(); ok {
			if enc := arpFrame(fr.Dst(), fr.Src(), a); !bytes.Equal(enc, data[:42]) {
				t.Errorf("ARP round trip: got % x, want % x", enc, data[:42])
			}
		}
		if n, ok := fr.ND(); ok && !bytes.Equal(n.Target.AsSlice(), data[62:78]) {
			t.Errorf("ND target %s is not bytes 62..78 of the frame", n.Target)
		}
	})
}

func TestARPReplyFrame(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0x99, 1}
	ip := netip.MustParseAddr("198.18.2.193")
	a, ok := Frame{Data: ARPReplyFrame(mac, ip)}.ARP()
	if !ok || a.Op != ARPReply || !bytes.Equal(a.SenderMAC, mac) || a.SenderIP != ip || !a.Gratuitous() {
		t.Errorf("ARPReplyFrame decodes as %v (ok %v), want a gratuitous reply from %s for %s", a, ok, mac, ip)
	}
}

func TestARPRequestFrame(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0x99, 1}
	ip, target := netip.MustParseAddr("198.18.2.2"), netip.MustParseAddr("198.18.2.193")
	f := Frame{Data: ARPRequestFrame(mac, ip, target)}
	a, ok := f.ARP()
	if !ok || a.Op != ARPRequest || !bytes.Equal(a.SenderMAC, mac) || a.SenderIP != ip || a.TargetIP != target || a.Gratuitous() ||
		!bytes.Equal(f.Dst(), net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) {
		t.Errorf("ARPRequestFrame decodes as %v (ok %v) to %s, want a broadcast request from %s at %s for %s", a, ok, f.Dst(), mac, ip, target)
	}
}
