package speaker

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/bgp"
	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

var addrOpts = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func TestBGPPeers(t *testing.T) {
	a := netip.MustParseAddr
	tor := func(name, nodes string, edit func(*config.Peer)) *config.Peer {
		p := &config.Peer{Name: name, MyASN: 64512, PeerASN: 64500, Address: a("198.18.0.1"), Port: 179,
			HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, ConnectTime: 2 * time.Second, NodeSelector: sel(nodes)}
		if edit != nil {
			edit(p)
		}
		return p
	}
	base := bgp.Peer{Name: "tor", Address: a("198.18.0.1"), Port: 179, MyASN: 64512, PeerASN: 64500,
		HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, ConnectTime: 2 * time.Second}
	with := func(edit func(*bgp.Peer)) bgp.Peer {
		p := base
		edit(&p)
		return p
	}
	passwords := func(ref *v1alpha1.SecretKeyRef) (string, error) {
		if ref.Name == "bgp-md5" && ref.Key == "tor" {
			return "s3cret", nil
		}
		return "", errors.New("secret not found")
	}
	self := Node{Name: "n1", Labels: labels.Set{"zone": "a"}}
	tests := []struct {
		name  string
		peers []*config.Peer
		want  []bgp.Peer
	}{
		{"plain", []*config.Peer{tor("tor", "", nil)}, []bgp.Peer{base}},
		{"not selected", []*config.Peer{tor("tor", "zone=b", nil)}, nil},
		{"selected", []*config.Peer{tor("tor", "zone=a", nil)}, []bgp.Peer{base}},
		{"source address, graceful restart", []*config.Peer{tor("tor", "", func(p *config.Peer) {
			p.SourceAddress, p.GracefulRestart, p.RestartTime = a("198.19.1.1"), true, time.Minute
		})}, []bgp.Peer{with(func(p *bgp.Peer) {
			p.SourceAddress, p.GracefulRestart, p.RestartTime = a("198.19.1.1"), true, time.Minute
		})}},
		{"eBGP multihop: TTL 255", []*config.Peer{tor("tor", "", func(p *config.Peer) { p.EBGPMultiHop = true })},
			[]bgp.Peer{with(func(p *bgp.Peer) { p.EBGPMultihop = 255 })}},
		{"iBGP ignores multihop", []*config.Peer{tor("tor", "", func(p *config.Peer) { p.EBGPMultiHop, p.PeerASN = true, 64512 })},
			[]bgp.Peer{with(func(p *bgp.Peer) { p.PeerASN = 64512 })}},
		{"hold time 0: the default hold timer", []*config.Peer{tor("tor", "", func(p *config.Peer) { p.HoldTime, p.KeepaliveTime = 0, 0 })},
			[]bgp.Peer{with(func(p *bgp.Peer) { p.HoldTime, p.KeepaliveTime = 0, 0 })}},
		{"router ID is the node's", []*config.Peer{tor("tor", "", func(p *config.Peer) { p.RouterID = a("10.9.9.9") })},
			[]bgp.Peer{base}},
		{"password", []*config.Peer{tor("tor", "", func(p *config.Peer) {
			p.Password = &v1alpha1.SecretKeyRef{Name: "bgp-md5", Key: "tor"}
		})}, []bgp.Peer{with(func(p *bgp.Peer) { p.Password = "s3cret" })}},
		{"missing password keeps the peer out, not the others", []*config.Peer{
			tor("tor", "", nil),
			tor("tor-md5", "", func(p *config.Peer) { p.Password = &v1alpha1.SecretKeyRef{Name: "gone", Key: "tor"} }),
		}, []bgp.Peer{base}},
		{"IPv6 peer", []*config.Peer{tor("tor6", "", func(p *config.Peer) { p.Address = a("2001:db8:18::1") })},
			[]bgp.Peer{with(func(p *bgp.Peer) { p.Name, p.Address = "tor6", a("2001:db8:18::1") })}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := BGPPeers(&config.Snapshot{Peers: tt.peers}, self, passwords)
			if d := cmp.Diff(tt.want, got, addrOpts); d != "" {
				t.Errorf("BGPPeers() (-want +got):\n%s", d)
			}
		})
	}
	if got := BGPPeers(nil, self, passwords); got != nil {
		t.Errorf("BGPPeers(nil snapshot) = %v, want nil", got)
	}
}

func TestBGPPaths(t *testing.T) {
	lp := uint32(200)
	tagged := &config.BGPAdvertisement{Name: "tagged", Communities: []uint32{64512<<16 | 100},
		LargeCommunities: []config.LargeCommunity{{Global: 64512, Local1: 1, Local2: 2}}, LocalPref: &lp,
		AggregationLength: 32, AggregationLengthV6: 128}
	agg := &config.BGPAdvertisement{Name: "agg", AggregationLength: 24, AggregationLengthV6: 64}
	route := func(a *config.BGPAdvertisement, peers ...string) BGPRoute {
		return BGPRoute{Advertisement: a, Peers: peers}
	}
	ip := func(s string, routes ...BGPRoute) IPDecision {
		return IPDecision{IP: netip.MustParseAddr(s), BGP: BGPDecision{Announce: len(routes) > 0, Routes: routes}}
	}
	pfx := netip.MustParsePrefix
	tests := []struct {
		name string
		svcs []*ServiceDecision
		want []bgp.Path
	}{
		{"host routes with the advertisement's attributes",
			[]*ServiceDecision{{Name: "a", IPs: []IPDecision{ip("203.0.113.10", route(tagged, "frr", "bird")), ip("2001:db8:113::10", route(tagged, "frr6"))}}},
			[]bgp.Path{
				{Prefix: pfx("203.0.113.10/32"), Peers: []string{"frr", "bird"}, Communities: []uint32{64512<<16 | 100},
					LargeCommunities: [][3]uint32{{64512, 1, 2}}, LocalPref: 200},
				{Prefix: pfx("2001:db8:113::10/128"), Peers: []string{"frr6"}, Communities: []uint32{64512<<16 | 100},
					LargeCommunities: [][3]uint32{{64512, 1, 2}}, LocalPref: 200},
			}},
		{"not announced", []*ServiceDecision{{Name: "a", IPs: []IPDecision{ip("203.0.113.10")}}}, nil},
		{"aggregated and masked, once for many IPs",
			[]*ServiceDecision{
				{Name: "a", IPs: []IPDecision{ip("203.0.113.10", route(agg, "frr")), ip("2001:db8:113::10", route(agg, "frr"))}},
				{Name: "b", IPs: []IPDecision{ip("203.0.113.77", route(agg, "frr"))}},
			},
			[]bgp.Path{{Prefix: pfx("203.0.113.0/24"), Peers: []string{"frr"}}, {Prefix: pfx("2001:db8:113::/64"), Peers: []string{"frr"}}}},
		{"two advertisements: two paths for one prefix",
			[]*ServiceDecision{{Name: "a", IPs: []IPDecision{ip("203.0.113.10", route(tagged, "frr"), route(agg, "bird"))}}},
			[]bgp.Path{
				{Prefix: pfx("203.0.113.10/32"), Peers: []string{"frr"}, Communities: []uint32{64512<<16 | 100},
					LargeCommunities: [][3]uint32{{64512, 1, 2}}, LocalPref: 200},
				{Prefix: pfx("203.0.113.0/24"), Peers: []string{"bird"}},
			}},
		{"a shared IP once",
			[]*ServiceDecision{
				{Name: "a", IPs: []IPDecision{ip("203.0.113.10", route(agg, "frr"))}},
				{Name: "b", IPs: []IPDecision{ip("203.0.113.10", route(agg, "frr"))}},
			},
			[]bgp.Path{{Prefix: pfx("203.0.113.0/24"), Peers: []string{"frr"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := BGPPaths(Decisions{Services: tt.svcs})
			if d := cmp.Diff(tt.want, got, addrOpts); d != "" {
				t.Errorf("BGPPaths() (-want +got):\n%s", d)
			}
		})
	}
}
