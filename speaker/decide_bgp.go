package speaker

import (
	"github.com/berthlb/berth/config"
)

// bgpAd is a BGPAdvertisement with this node's part precomputed: BGP needs no election,
// each node decides only for itself.
type bgpAd struct {
	ad           *config.BGPAdvertisement
	selfSelected bool
	// peers are the advertisement's peers whose nodeSelector selects this node, sorted.
	peers []string
}

func newBGPAd(a *config.BGPAdvertisement, all []*config.Peer, byName map[string]*config.Peer, nodes []Node, self int) bgpAd {
	out := bgpAd{ad: a}
	if self < 0 {
		return out
	}
	set := nodes[self].Labels
	out.selfSelected = selects(a.NodeSelector, set)
	peers := all // sorted by name in the snapshot
	if !a.AllPeers {
		peers = nil
		for _, name := range a.Peers { // sorted too
			if p := byName[name]; p != nil {
				peers = append(peers, p)
			}
		}
	}
	for _, p := range peers {
		if selects(p.NodeSelector, set) {
			out.peers = append(out.peers, p.Name)
		}
	}
	return out
}

// decideBGP says whether this node announces the IP and along which advertisements. With
// externalTrafficPolicy Cluster every eligible node announces while the Service has
// endpoints; with Local only nodes holding one, and the routers spread traffic by ECMP.
func (c *Cluster) decideBGP(svc *Service, adIdx []int, eps serviceEndpoints) BGPDecision {
	if len(adIdx) == 0 {
		return BGPDecision{Reason: NoAdvertisement}
	}
	applicable, selected, routes := 0, false, 0
	for _, i := range adIdx {
		a := &c.bgp[i]
		if !selects(a.ad.ServiceSelector, svc.Labels) {
			continue
		}
		applicable++
		if a.selfSelected {
			selected = true
			if len(a.peers) > 0 {
				routes++
			}
		}
	}
	switch {
	case applicable == 0:
		return BGPDecision{Reason: ServiceNotSelected}
	case !eps.any:
		return BGPDecision{Reason: NoEndpoints}
	case c.selfWhy != "":
		return BGPDecision{Reason: c.selfWhy}
	case !selected:
		return BGPDecision{Reason: NodeNotSelected}
	case routes == 0:
		return BGPDecision{Reason: NoPeers}
	case isLocal(svc.TrafficPolicy) && !eps.nodes.has(c.self):
		return BGPDecision{Reason: NoLocalEndpoints}
	}
	d := BGPDecision{Announce: true, Reason: Announced, Routes: make([]BGPRoute, 0, routes)}
	for _, i := range adIdx {
		a := &c.bgp[i]
		if a.selfSelected && len(a.peers) > 0 && selects(a.ad.ServiceSelector, svc.Labels) {
			d.Routes = append(d.Routes, BGPRoute{Advertisement: a.ad, Peers: a.peers})
		}
	}
	return d
}
