package bgp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/testing/protocmp"
)

func TestRouterIDFor(t *testing.T) {
	addr := netip.MustParseAddr
	tests := []struct {
		node string
		v4   netip.Addr
		want netip.Addr
	}{
		{"node1", addr("198.18.0.11"), addr("198.18.0.11")},
		{"node1", addr("::ffff:198.18.0.11"), addr("198.18.0.11")},
		// IPv6-only nodes: FNV-1a of the name, pinned so it never changes.
		{"node1", netip.Addr{}, addr("15.78.40.116")},
		{"node1", addr("0.0.0.0"), addr("15.78.40.116")},
		{"node1", addr("2001:db8::1"), addr("15.78.40.116")},
		{"node2", netip.Addr{}, addr("18.78.45.45")},
		{"", netip.Addr{}, addr("129.28.157.197")},
	}
	for _, tt := range tests {
		if got := RouterIDFor(tt.node, tt.v4); got != tt.want {
			t.Errorf("RouterIDFor(%q, %v) = %v, want %v", tt.node, tt.v4, got, tt.want)
		}
	}
	seen := map[netip.Addr]string{}
	for i := range 1000 {
		name := "node-" + string(rune('a'+i%26)) + netip.AddrFrom4([4]byte{0, 0, byte(i >> 8), byte(i)}).String()
		id := RouterIDFor(name, netip.Addr{})
		if !id.Is4() || id.IsUnspecified() {
			t.Fatalf("RouterIDFor(%q) = %v", name, id)
		}
		if other, dup := seen[id]; dup {
			t.Errorf("%q and %q share router ID %v", name, other, id)
		}
		seen[id] = name
	}
}

func TestExportStatement(t *testing.T) {
	m := marker{peer: 3, group: 7}
	tests := []struct {
		name string
		a    attrs
		want *api.Actions
	}{
		{"no attributes: strip markers, next hop self, accept", attrs{}, &api.Actions{
			RouteAction:    api.RouteAction_ACCEPT,
			Nexthop:        &api.NexthopAction{Self: true},
			LargeCommunity: &api.CommunityAction{Type: api.CommunityAction_REMOVE, Communities: []string{markerRegexp}},
		}},
		{"everything", attrs{communities: []uint32{64512<<16 | 100, 0xffff0000}, large: [][3]uint32{{64512, 1, 2}}, localPref: 200}, &api.Actions{
			RouteAction:    api.RouteAction_ACCEPT,
			Nexthop:        &api.NexthopAction{Self: true},
			Community:      &api.CommunityAction{Type: api.CommunityAction_ADD, Communities: []string{"64512:100", "65535:0"}},
			LargeCommunity: &api.CommunityAction{Type: api.CommunityAction_REPLACE, Communities: []string{"64512:1:2"}},
			LocalPref:      &api.LocalPrefAction{Value: 200},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := &api.Statement{
				Name: "berth-p3-g7",
				Conditions: &api.Conditions{
					NeighborSet:       &api.MatchSet{Type: api.MatchSet_ANY, Name: "berth-peer-3"},
					LargeCommunitySet: &api.MatchSet{Type: api.MatchSet_ANY, Name: "berth-mark-3-7"},
				},
				Actions: tt.want,
			}
			if d := cmp.Diff(want, exportStatement(m, tt.a), protocmp.Transform()); d != "" {
				t.Errorf("exportStatement() (-want +got):\n%s", d)
			}
		})
	}
	wantSet := &api.DefinedSet{DefinedType: api.DefinedType_LARGE_COMMUNITY, Name: "berth-mark-3-7", List: []string{"4294967295:3:7"}}
	if d := cmp.Diff(wantSet, markerSet(m), protocmp.Transform()); d != "" {
		t.Errorf("markerSet() (-want +got):\n%s", d)
	}
	wantPeer := &api.DefinedSet{DefinedType: api.DefinedType_NEIGHBOR, Name: "berth-peer-3", List: []string{"2001:db8:18::1/128"}}
	if d := cmp.Diff(wantPeer, neighborSet(3, pfx("2001:db8:18::1/128")), protocmp.Transform()); d != "" {
		t.Errorf("neighborSet() (-want +got):\n%s", d)
	}
}

func TestAPIPeer(t *testing.T) {
	addr := netip.MustParseAddr
	tests := []struct {
		name  string
		p     Peer
		retry time.Duration
		want  *api.Peer
	}{
		{"defaults", Peer{Name: "tor", Address: addr("198.18.0.1"), MyASN: 64512, PeerASN: 64500}, DefaultConnectTime, &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: "198.18.0.1", PeerAsn: 64500, LocalAsn: 64512, Description: "tor"},
			Timers:    &api.Timers{Config: &api.TimersConfig{ConnectRetry: 5, HoldTime: 90, KeepaliveInterval: 30}},
			Transport: &api.Transport{RemotePort: 179},
			AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: familyIPv4, Enabled: true},
				MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{}}}},
		}},
		{"everything, IPv6 eBGP", Peer{Name: "tor6", Address: addr("2001:db8:18::1"), Port: 1179, MyASN: 64512, PeerASN: 64500,
			SourceAddress: addr("2001:db8:18::11"), HoldTime: 9 * time.Second, KeepaliveTime: 2500 * time.Millisecond,
			EBGPMultihop: 3, Password: "s3cret", GracefulRestart: true, RestartTime: 60 * time.Second, Passive: true},
			4 * time.Second, &api.Peer{
				Conf:            &api.PeerConf{NeighborAddress: "2001:db8:18::1", PeerAsn: 64500, LocalAsn: 64512, AuthPassword: "s3cret", Description: "tor6"},
				Timers:          &api.Timers{Config: &api.TimersConfig{ConnectRetry: 4, HoldTime: 9, KeepaliveInterval: 3}},
				Transport:       &api.Transport{RemotePort: 1179, LocalAddress: "2001:db8:18::11", PassiveMode: true},
				EbgpMultihop:    &api.EbgpMultihop{Enabled: true, MultihopTtl: 3},
				GracefulRestart: &api.GracefulRestart{Enabled: true, RestartTime: 60},
				AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: familyIPv6, Enabled: true},
					MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}}},
			}},
		{"iBGP ignores multihop", Peer{Name: "rr", Address: addr("198.18.0.1"), MyASN: 64500, PeerASN: 64500, EBGPMultihop: 5}, time.Second, &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: "198.18.0.1", PeerAsn: 64500, LocalAsn: 64500, Description: "rr"},
			Timers:    &api.Timers{Config: &api.TimersConfig{ConnectRetry: 1, HoldTime: 90, KeepaliveInterval: 30}},
			Transport: &api.Transport{RemotePort: 179},
			AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: familyIPv4, Enabled: true},
				MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{}}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, apiPeer(tt.p, tt.retry), protocmp.Transform()); d != "" {
				t.Errorf("apiPeer() (-want +got):\n%s", d)
			}
		})
	}
}

func TestAPIPath(t *testing.T) {
	for _, tt := range []struct {
		prefix netip.Prefix
		e      ribEntry
		want   route
	}{
		{pfx("203.0.113.7/32"), ribEntry{markers: []marker{{1, 2}, {3, 4}}},
			route{Prefix: pfx("203.0.113.7/32"), NextHop: netip.MustParseAddr("0.0.0.0"),
				Large: [][3]uint32{{markerASN, 1, 2}, {markerASN, 3, 4}}}},
		{pfx("2001:db8:113::/64"), ribEntry{markers: []marker{{1, 2}}, gshut: true},
			route{Prefix: pfx("2001:db8:113::/64"), NextHop: netip.MustParseAddr("::"),
				Communities: []uint32{gshutCommunity}, Large: [][3]uint32{{markerASN, 1, 2}}}},
	} {
		p, err := apiPath(tt.prefix, tt.e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := routeOf(p)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tt.want, got, netipEqual); d != "" {
			t.Errorf("apiPath(%s) (-want +got):\n%s", tt.prefix, d)
		}
	}
}
