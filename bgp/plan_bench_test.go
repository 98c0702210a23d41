package bgp

import (
	"net/netip"
	"testing"
)

// benchPaths are the paths of a node announcing services Services over BGP, one in five
// dual-stack: each address's /32 or /128 to the two peers of its family, half of them
// with a community, a tenth with a large community and a LOCAL_PREF. changed gives
// service 0 another community.
func benchPaths(services int, changed bool) []Path {
	var out []Path
	for i := range services {
		ips := []netip.Addr{netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})}
		if i%5 == 0 {
			ips = append(ips, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x01, 0x13, 14: byte(i >> 8), 15: byte(i)}))
		}
		for _, ip := range ips {
			p := Path{Prefix: netip.PrefixFrom(ip, ip.BitLen()), Peers: []string{"tor-a", "tor-b"}}
			if ip.Is6() {
				p.Peers = []string{"tor-a6", "tor-b6"}
			}
			if i%2 == 0 {
				p.Communities = []uint32{65000<<16 | 100}
			}
			if i%10 == 0 {
				p.LargeCommunities = [][3]uint32{{4200000000, 1, 1}}
				p.LocalPref = 200
			}
			if i == 0 && changed {
				p.Communities = append(p.Communities, 65000<<16|200)
			}
			out = append(out, p)
		}
	}
	return out
}

// benchServer is a Server with only what planning paths uses: the peer and group
// numbering.
func benchServer() *Server {
	return &Server{peerIDs: map[string]uint32{}, groupIDs: map[string]uint32{}, groups: map[uint32]attrs{}}
}

// BenchmarkSetPathsPlan is what Server.SetPaths computes before it talks to GoBGP, on every
// change of the decisions: merge the paths by prefix and peer, number the attribute
// groups, list the markers and compare with the RIB, at 10,000 Services of which one
// changed its communities.
func BenchmarkSetPathsPlan(b *testing.B) {
	s := benchServer()
	w, err := mergePaths(benchPaths(10_000, false))
	if err != nil {
		b.Fatal(err)
	}
	installed := ribOf(w, s.peerIDLocked, s.groupIDLocked)
	paths := benchPaths(10_000, true)
	b.ReportAllocs()
	var d ribDiff
	for b.Loop() {
		w, err := mergePaths(paths)
		if err != nil {
			b.Fatal(err)
		}
		desired := ribOf(w, s.peerIDLocked, s.groupIDLocked)
		markersOf(desired)
		d = diffRIB(installed, desired)
	}
	if len(d.put) != 2 || len(d.withdraw) != 0 { // service 0's IPv4 and IPv6 prefixes
		b.Fatalf("diff puts %v, withdraws %v; want service 0's two prefixes put", d.put, d.withdraw)
	}
	b.ReportMetric(float64(len(paths)), "paths")
}
