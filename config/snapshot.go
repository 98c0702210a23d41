// Package config turns berth's custom resources into one immutable, validated Snapshot.
//
// Build is a pure, deterministic function: every component that sees the same objects gets
// the same Snapshot and the same Problems, whatever order the objects came in. When objects
// conflict, the older one (creationTimestamp, then name) wins and the other is left out and
// reported, so a restart never changes the winner.
package config

import (
	"math/big"
	"net/netip"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/config/v1alpha1"
)

// Snapshot is the configuration in use. It is shared between goroutines and must not be
// modified: Build makes a new one for every change.
type Snapshot struct {
	// Pools, Peers and the advertisements hold only accepted objects, sorted by name.
	Pools             []*Pool
	Peers             []*Peer
	BGPAdvertisements []*BGPAdvertisement
	L2Advertisements  []*L2Advertisement

	poolsByName map[string]*Pool
	peersByName map[string]*Peer
}

// Pool returns the accepted pool with the given name, or nil.
func (s *Snapshot) Pool(name string) *Pool { return s.poolsByName[name] }

// Peer returns the accepted peer with the given name, or nil.
func (s *Snapshot) Peer(name string) *Peer { return s.peersByName[name] }

// Pool is a validated IPPool.
type Pool struct {
	Name    string
	Created time.Time
	Labels  labels.Set
	// Ranges are sorted by first address and do not overlap.
	Ranges            []Range
	AutoAssign        bool
	AvoidBuggyIPs     bool
	Priority          int32
	ServiceSelector   labels.Selector
	NamespaceSelector labels.Selector
	IPMode            v1alpha1.IPMode
	// Deleting is true once the pool is being deleted: it keeps the addresses Services
	// hold but hands out no new ones, also when asked for by name or address.
	Deleting bool
	// Capacity4 and Capacity6 count the addresses the pool can hand out, per family.
	Capacity4, Capacity6 *big.Int
}

// Capacity returns the number of addresses of family f the pool can hand out.
func (p *Pool) Capacity(f Family) *big.Int {
	if f == IPv6 {
		return p.Capacity6
	}
	return p.Capacity4
}

// Contains reports whether a is one of the pool's addresses (ignoring AvoidBuggyIPs).
func (p *Pool) Contains(a netip.Addr) bool {
	for _, r := range p.Ranges {
		if r.Contains(a) {
			return true
		}
	}
	return false
}

// Peer is a validated BGPPeer with defaults applied.
type Peer struct {
	Name          string
	Created       time.Time
	MyASN         uint32
	PeerASN       uint32
	Address       netip.Addr
	Port          uint16
	SourceAddress netip.Addr // zero: chosen by the kernel
	RouterID      netip.Addr // zero: derived from the node
	HoldTime      time.Duration
	KeepaliveTime time.Duration
	ConnectTime   time.Duration
	EBGPMultiHop  bool
	// Password names the Secret key holding the TCP-MD5 password; nil means none.
	Password        *v1alpha1.SecretKeyRef
	GracefulRestart bool
	RestartTime     time.Duration
	NodeSelector    labels.Selector
}

// IBGP reports whether the session is internal BGP.
func (p *Peer) IBGP() bool { return p.MyASN == p.PeerASN }

// Target is what an advertisement applies to, resolved against the accepted pools.
type Target struct {
	// Pools are the names of the accepted pools the advertisement covers, sorted.
	Pools           []string
	ServiceSelector labels.Selector
	NodeSelector    labels.Selector
}

// BGPAdvertisement is a validated BGPAdvertisement with references resolved.
type BGPAdvertisement struct {
	Name    string
	Created time.Time
	Target
	// AllPeers is true when the advertisement names no peers: it goes to every peer.
	AllPeers bool
	// Peers are the names of the accepted peers it goes to when AllPeers is false, sorted.
	Peers            []string
	Communities      []uint32
	LargeCommunities []LargeCommunity
	// LocalPref is sent to iBGP peers; nil means the router's default.
	LocalPref           *uint32
	AggregationLength   int
	AggregationLengthV6 int
}

// AggregationFor returns the announced prefix length for family f.
func (a *BGPAdvertisement) AggregationFor(f Family) int {
	if f == IPv6 {
		return a.AggregationLengthV6
	}
	return a.AggregationLength
}

// L2Advertisement is a validated L2Advertisement with references resolved.
type L2Advertisement struct {
	Name    string
	Created time.Time
	Target
	// Interfaces limits the answering interfaces (names, or patterns ending in "*");
	// empty means the default set.
	Interfaces []string
}
