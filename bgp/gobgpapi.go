package bgp

import (
	"fmt"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Names of what berth installs in GoBGP's policy tables.
const (
	exportPolicy   = "berth-export"
	importPolicy   = "berth-import"
	importLocal    = "berth-import-local"
	globalTable    = "global"
	gshutCommunity = 0xffff0000 // GRACEFUL_SHUTDOWN, 65535:0 (RFC 8326)
)

// peerSetName names the neighbour set of peer id: the peer's address while it is
// configured, noPeer otherwise.
func peerSetName(id uint32) string { return fmt.Sprintf("berth-peer-%d", id) }

// markerSetName names the large community set that matches one marker.
func markerSetName(m marker) string { return fmt.Sprintf("berth-mark-%d-%d", m.peer, m.group) }

// statementName names the export statement of one marker.
func statementName(m marker) string { return fmt.Sprintf("berth-p%d-g%d", m.peer, m.group) }

// noPeer fills the neighbour set of a peer that is not configured: no session has this
// address, and an empty neighbour set would match every peer.
var noPeer = netip.MustParsePrefix("0.0.0.0/32")

// markerRegexp matches every marker large community.
const markerRegexp = `^4294967295:\d+:\d+$`

func neighborSet(id uint32, p netip.Prefix) *api.DefinedSet {
	return &api.DefinedSet{DefinedType: api.DefinedType_NEIGHBOR, Name: peerSetName(id), List: []string{p.String()}}
}

func markerSet(m marker) *api.DefinedSet {
	c := m.community()
	return &api.DefinedSet{DefinedType: api.DefinedType_LARGE_COMMUNITY, Name: markerSetName(m),
		List: []string{fmt.Sprintf("%d:%d:%d", c[0], c[1], c[2])}}
}

// exportStatement sends a path carrying marker m to the peer of m.peer with the
// attributes a: it adds a's communities, replaces the large communities (the markers)
// with a's or removes them, sets LOCAL_PREF (GoBGP drops it towards eBGP peers), sets
// this side of the session as next hop, and accepts.
func exportStatement(m marker, a attrs) *api.Statement {
	acts := &api.Actions{RouteAction: api.RouteAction_ACCEPT, Nexthop: &api.NexthopAction{Self: true}}
	if len(a.communities) > 0 {
		cs := make([]string, len(a.communities))
		for i, c := range a.communities {
			cs[i] = fmt.Sprintf("%d:%d", c>>16, c&0xffff)
		}
		acts.Community = &api.CommunityAction{Type: api.CommunityAction_ADD, Communities: cs}
	}
	if len(a.large) > 0 {
		ls := make([]string, len(a.large))
		for i, l := range a.large {
			ls[i] = fmt.Sprintf("%d:%d:%d", l[0], l[1], l[2])
		}
		acts.LargeCommunity = &api.CommunityAction{Type: api.CommunityAction_REPLACE, Communities: ls}
	} else {
		// REPLACE with nothing is no action in GoBGP; remove the markers instead.
		acts.LargeCommunity = &api.CommunityAction{Type: api.CommunityAction_REMOVE, Communities: []string{markerRegexp}}
	}
	if a.localPref > 0 {
		acts.LocalPref = &api.LocalPrefAction{Value: a.localPref}
	}
	return &api.Statement{
		Name: statementName(m),
		Conditions: &api.Conditions{
			NeighborSet:       &api.MatchSet{Type: api.MatchSet_ANY, Name: peerSetName(m.peer)},
			LargeCommunitySet: &api.MatchSet{Type: api.MatchSet_ANY, Name: markerSetName(m)},
		},
		Actions: acts,
	}
}

// importStatement accepts the paths berth adds itself; the default action rejects the
// rest, so nothing a peer sends is ever installed.
func importStatement() *api.Statement {
	return &api.Statement{
		Name:       importLocal,
		Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ACCEPT},
	}
}

var (
	familyIPv4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyIPv6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

func familyOf(a netip.Addr) *api.Family {
	if a.Is4() {
		return familyIPv4
	}
	return familyIPv6
}

// seconds rounds d up to whole seconds, the unit GoBGP's timers take.
func seconds(d time.Duration) uint64 { return uint64((d + time.Second - 1) / time.Second) }

// apiPeer is GoBGP's neighbour for p, reconnecting every connectRetry.
func apiPeer(p Peer, connectRetry time.Duration) *api.Peer {
	fam := familyOf(p.Address)
	gp := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.PeerASN,
			LocalAsn:        p.MyASN,
			AuthPassword:    p.Password,
			Description:     p.Name,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:      max(seconds(connectRetry), 1),
			HoldTime:          seconds(p.holdTime()),
			KeepaliveInterval: max(seconds(p.keepaliveTime()), 1),
		}},
		Transport: &api.Transport{RemotePort: uint32(p.port()), PassiveMode: p.Passive},
		AfiSafis: []*api.AfiSafi{{
			Config:            &api.AfiSafiConfig{Family: fam, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: p.GracefulRestart}},
		}},
	}
	if p.SourceAddress.IsValid() {
		gp.Transport.LocalAddress = p.SourceAddress.String()
	}
	if p.EBGPMultihop > 0 && !p.ibgp() {
		gp.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.EBGPMultihop)}
	}
	if p.GracefulRestart {
		gp.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(seconds(p.restartTime()))}
	}
	return gp
}

// apiPath is the RIB path for prefix: origin IGP, an unspecified next hop (GoBGP puts the
// session's local address there; the export policy says so too), the markers and, while
// shutting down, GRACEFUL_SHUTDOWN.
func apiPath(prefix netip.Prefix, e ribEntry) (*api.Path, error) {
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: prefix.Addr().String(), PrefixLen: uint32(prefix.Bits())})
	if err != nil {
		return nil, err
	}
	fam := familyOf(prefix.Addr())
	attrs := []proto.Message{&api.OriginAttribute{Origin: 0}}
	if prefix.Addr().Is4() {
		attrs = append(attrs, &api.NextHopAttribute{NextHop: "0.0.0.0"})
	} else {
		attrs = append(attrs, &api.MpReachNLRIAttribute{Family: fam, NextHops: []string{"::"}, Nlris: []*anypb.Any{nlri}})
	}
	if len(e.markers) > 0 {
		lcs := make([]*api.LargeCommunity, len(e.markers))
		for i, m := range e.markers {
			c := m.community()
			lcs[i] = &api.LargeCommunity{GlobalAdmin: c[0], LocalData1: c[1], LocalData2: c[2]}
		}
		attrs = append(attrs, &api.LargeCommunitiesAttribute{Communities: lcs})
	}
	if e.gshut {
		attrs = append(attrs, &api.CommunitiesAttribute{Communities: []uint32{gshutCommunity}})
	}
	pattrs := make([]*anypb.Any, len(attrs))
	for i, a := range attrs {
		if pattrs[i], err = anypb.New(a); err != nil {
			return nil, err
		}
	}
	return &api.Path{Family: fam, Nlri: nlri, Pattrs: pattrs}, nil
}

// sessionStates maps GoBGP's session states to PeerStatus.State.
var sessionStates = map[api.PeerState_SessionState]string{
	api.PeerState_UNKNOWN:     StateIdle,
	api.PeerState_IDLE:        StateIdle,
	api.PeerState_CONNECT:     StateConnect,
	api.PeerState_ACTIVE:      StateActive,
	api.PeerState_OPENSENT:    StateOpenSent,
	api.PeerState_OPENCONFIRM: StateOpenConfirm,
	api.PeerState_ESTABLISHED: StateEstablished,
}

func sessionState(s api.PeerState_SessionState) string {
	if st, ok := sessionStates[s]; ok {
		return st
	}
	return StateIdle
}
