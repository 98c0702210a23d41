package speaker

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Version 1 must never change: speakers of different builds have to elect alike. These
// rows pin it; a new hash is a new version.
func TestElectV1Pinned(t *testing.T) {
	nodes := []string{"n1", "n2", "n3"}
	tests := []struct {
		ip          string
		owner, next string
	}{
		{"198.18.2.200", "n3", "n2"},
		{"2001:db8:18:2::1:1", "n1", "n2"},
		{"2001:db8:18:2::1:2", "n2", "n3"},
		{"2001:db8:18:2::1:4", "n2", "n1"},
		{"2001:db8:18:2::1:5", "n3", "n1"},
	}
	for _, tc := range tests {
		t.Run(tc.ip, func(t *testing.T) {
			owner, next := Elect(1, netip.MustParseAddr(tc.ip), nodes)
			if d := cmp.Diff([2]string{tc.owner, tc.next}, [2]string{owner, next}); d != "" {
				t.Errorf("Elect() owner, next (-want +got):\n%s", d)
			}
		})
	}
}

func TestElect(t *testing.T) {
	ip := netip.MustParseAddr("198.18.2.200")
	tests := []struct {
		name        string
		ip          netip.Addr
		candidates  []string
		owner, next string
	}{
		{name: "none", ip: ip},
		{name: "one", ip: ip, candidates: []string{"n1"}, owner: "n1"},
		{name: "order does not matter", ip: ip, candidates: []string{"n2", "n3", "n1"}, owner: "n3", next: "n2"},
		{name: "duplicates do not matter", ip: ip, candidates: []string{"n3", "n1", "n3", "n2"}, owner: "n3", next: "n2"},
		{name: "IPv4-mapped IPv6 is IPv4", ip: netip.MustParseAddr("::ffff:198.18.2.200"), candidates: []string{"n1", "n2", "n3"}, owner: "n3", next: "n2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			owner, next := Elect(1, tc.ip, tc.candidates)
			if d := cmp.Diff([2]string{tc.owner, tc.next}, [2]string{owner, next}); d != "" {
				t.Errorf("Elect() owner, next (-want +got):\n%s", d)
			}
		})
	}
}

// IPs spread evenly over nodes, and a node joining takes IPs only for itself.
func TestElectSpreadAndJoin(t *testing.T) {
	const nodes, ips = 10, 20000
	var names []string
	for i := range nodes {
		names = append(names, fmt.Sprintf("node-%d", i))
	}
	joined := append([]string{"node-new"}, names...)
	count := map[string]int{}
	moved := 0
	for i := range ips {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if i%2 == 1 { // half IPv6
			ip = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		}
		owner, _ := Elect(1, ip, names)
		count[owner]++
		after, _ := Elect(1, ip, joined)
		if after != owner {
			moved++
			if after != "node-new" {
				t.Errorf("%s: moved from %s to %s when node-new joined", ip, owner, after)
			}
		}
	}
	mean := ips / nodes
	for _, n := range names {
		if c := count[n]; c < mean*9/10 || c > mean*11/10 {
			t.Errorf("%s owns %d of %d IPs, want %d ±10%%", n, c, ips, mean)
		}
	}
	// The newcomer should take about 1/11 of the IPs.
	if want := ips / (nodes + 1); moved < want*8/10 || moved > want*12/10 {
		t.Errorf("node-new took %d IPs, want about %d", moved, want)
	}
}
