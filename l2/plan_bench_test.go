package l2

import (
	"maps"
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

// benchAssignments are n LB IPs, one in five IPv6, on the default interfaces.
func benchAssignments(n int) []Assignment {
	out := make([]Assignment, n)
	for i := range out {
		ip := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		if i%5 == 0 {
			ip = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x18, 0, 2, 14: byte(i >> 8), 15: byte(i)})
		}
		out[i] = Assignment{IP: ip}
	}
	return out
}

// BenchmarkReconcilePlan is the pure part of what one Set costs at 10,000 IPs answered on
// two interfaces (one node answering for every Service, as after the others failed), one
// IP new: Set's normalize, then the loop's plan, the IPv6 addresses for lo, each link's
// split by family and difference from what it answers, and the published owned set.
func BenchmarkReconcilePlan(b *testing.B) {
	links := []linkInfo{{Name: "lo", Index: 1, Flags: net.FlagUp | net.FlagRunning | net.FlagLoopback},
		testLink("eth0", 2), testLink("eth1", 3)}
	const n = 10_000
	want := benchAssignments(n + 1)
	cur := plan(want[:n], links)
	b.ReportAllocs()
	added := 0
	for b.Loop() {
		valid, _ := normalize(want)
		next := plan(valid, links)
		union(next).only(false)
		added = 0
		for name, ips := range next {
			got := ipSet{}
			maps.Copy(got, ips.only(true))
			maps.Copy(got, ips.only(false))
			a, _ := diff(map[string]ipSet{name: cur[name]}, map[string]ipSet{name: got})
			added += len(a)
		}
		group(next)
		union(next)
	}
	if added != 2 {
		b.Fatalf("%d pairs added, want the new IP on both links", added)
	}
}

// BenchmarkHandleARP is what an ARP socket does with each frame it receives: parse it
// and decide, here for a request for one of 10,000 IPs this interface answers for. Every
// ARP broadcast on the segment reaches every node's socket.
func BenchmarkHandleARP(b *testing.B) {
	owned := ipSet{}
	for _, a := range benchAssignments(10_000) {
		owned[a.IP] = struct{}{}
	}
	self, asker := mac("02:00:00:00:00:01"), mac("02:00:00:00:00:99")
	req, err := arp.NewPacket(arp.OperationRequest, asker, netip.MustParseAddr("198.18.255.1"), ethernet.Broadcast, netip.MustParseAddr("198.18.0.1"))
	if err != nil {
		b.Fatal(err)
	}
	pb, err := req.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	frame, err := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: asker, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	friendly := func(net.HardwareAddr) bool { return false }
	b.ReportAllocs()
	for b.Loop() {
		p, ok := parseARP(frame)
		if !ok {
			b.Fatal("parseARP refused the frame")
		}
		if v := decideARP(p, owned, self, friendly); v != answer {
			b.Fatalf("verdict %s, want %s", v, answer)
		}
	}
}
