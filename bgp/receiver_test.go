package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"k8s.io/klog/v2"
)

// route is a path as a peer received it, decoded from GoBGP's API.
type route struct {
	Prefix       netip.Prefix
	NextHop      netip.Addr
	Communities  []uint32
	Large        [][3]uint32
	LocalPref    uint32
	HasLocalPref bool
	Withdrawn    bool
}

func (r route) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s via %s", r.Prefix, r.NextHop)
	for _, c := range r.Communities {
		fmt.Fprintf(&b, " c=%d:%d", c>>16, c&0xffff)
	}
	for _, l := range r.Large {
		fmt.Fprintf(&b, " lc=%d:%d:%d", l[0], l[1], l[2])
	}
	if r.HasLocalPref {
		fmt.Fprintf(&b, " lp=%d", r.LocalPref)
	}
	if r.Withdrawn {
		b.WriteString(" withdrawn")
	}
	return b.String()
}

func routeOf(p *api.Path) (route, error) {
	var r route
	var pfx api.IPAddressPrefix
	if err := p.Nlri.UnmarshalTo(&pfx); err != nil {
		return r, err
	}
	a, err := netip.ParseAddr(pfx.Prefix)
	if err != nil {
		return r, err
	}
	r.Prefix = netip.PrefixFrom(a, int(pfx.PrefixLen))
	r.Withdrawn = p.IsWithdraw
	for _, an := range p.Pattrs {
		m, err := anypb.UnmarshalNew(an, proto.UnmarshalOptions{})
		if err != nil {
			return r, err
		}
		switch v := m.(type) {
		case *api.NextHopAttribute:
			r.NextHop, _ = netip.ParseAddr(v.NextHop)
		case *api.MpReachNLRIAttribute:
			if len(v.NextHops) > 0 {
				r.NextHop, _ = netip.ParseAddr(v.NextHops[0])
			}
		case *api.CommunitiesAttribute:
			r.Communities = slices.Clone(v.Communities)
		case *api.LargeCommunitiesAttribute:
			for _, l := range v.Communities {
				r.Large = append(r.Large, [3]uint32{l.GlobalAdmin, l.LocalData1, l.LocalData2})
			}
		case *api.LocalPrefAttribute:
			r.LocalPref, r.HasLocalPref = v.LocalPref, true
		}
	}
	return r, nil
}

// receiver is a plain GoBGP server standing in for a router: it accepts one passive
// neighbour and keeps whatever it receives, so a test can read its RIB. (No table
// watch: GoBGP v3 races between a table watcher and a session coming up.)
type receiver struct {
	t    *testing.T
	name string
	addr netip.Addr
	port uint16
	asn  uint32
	s    *server.BgpServer
}

// startReceiver runs a receiver with AS asn listening on addr, with the neighbour peer
// (AS peerASN); password turns on TCP-MD5.
func startReceiver(t *testing.T, name string, addr netip.Addr, asn uint32, peer netip.Addr, peerASN uint32, password string) *receiver {
	t.Helper()
	return startReceiverOn(t, name, netip.AddrPortFrom(addr, freePort(t, addr)), asn, peer, peerASN, password)
}

func startReceiverOn(t *testing.T, name string, ap netip.AddrPort, asn uint32, peer netip.Addr, peerASN uint32, password string) *receiver {
	t.Helper()
	addr := ap.Addr()
	r := &receiver{t: t, name: name, addr: addr, port: ap.Port(), asn: asn}
	r.s = server.NewBgpServer(server.LoggerOption(gobgpLogger{log: klog.Background().WithName(name), rec: newRecorder(time.Now, func() {})}))
	go r.s.Serve()
	ctx := t.Context()
	if err := r.s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: asn, RouterId: addr.String(), ListenPort: int32(r.port), ListenAddresses: []string{addr.String()},
	}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.s.StopBgp(context.Background(), &api.StopBgpRequest{}) })
	fam := familyOf(peer)
	if err := r.s.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: peer.String(), PeerAsn: peerASN, AuthPassword: password},
		Transport: &api.Transport{PassiveMode: true, LocalAddress: addr.String()},
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 9, KeepaliveInterval: 3, ConnectRetry: 1}},
		AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: fam, Enabled: true}}},
	}}); err != nil {
		t.Fatal(err)
	}
	return r
}

// routes returns the receiver's RIB for one family, sorted by prefix.
func (r *receiver) routes(fam *api.Family) []route {
	r.t.Helper()
	var out []route
	err := r.s.ListPath(r.t.Context(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: fam}, func(d *api.Destination) {
		for _, p := range d.Paths {
			if !p.Best {
				continue
			}
			rt, err := routeOf(p)
			if err != nil {
				r.t.Errorf("%s: decode %v: %v", r.name, p, err)
				continue
			}
			out = append(out, rt)
		}
	})
	if err != nil {
		r.t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool { return comparePrefix(out[i].Prefix, out[j].Prefix) < 0 })
	return out
}

// routeTo returns the receiver's route to p, if any.
func (r *receiver) routeTo(p netip.Prefix) (route, bool) {
	for _, rt := range r.routes(familyOf(p.Addr())) {
		if rt.Prefix == p {
			return rt, true
		}
	}
	return route{}, false
}

// withdrawnPrefixes reads how many prefixes the neighbour has withdrawn so far.
func (r *receiver) withdrawnPrefixes() uint64 {
	r.t.Helper()
	var n uint64
	if err := r.s.ListPeer(r.t.Context(), &api.ListPeerRequest{}, func(p *api.Peer) {
		n += p.GetState().GetMessages().GetReceived().GetWithdrawPrefix()
	}); err != nil {
		r.t.Fatal(err)
	}
	return n
}

// originate adds a path the receiver sends to its neighbour.
func (r *receiver) originate(p netip.Prefix) {
	r.t.Helper()
	path, err := apiPath(p, ribEntry{})
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.s.AddPath(r.t.Context(), &api.AddPathRequest{Path: path}); err != nil {
		r.t.Fatal(err)
	}
}
