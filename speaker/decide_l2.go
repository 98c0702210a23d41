package speaker

import (
	"math/bits"
	"net/netip"
	"slices"
	"strings"

	"github.com/berthlb/berth/config"
)

// DecisionVersion is the newest decision version this speaker implements; it publishes it
// in its member metadata. Version 1 is rendezvous hashing as defined by weight.
const DecisionVersion uint32 = 1

// rehearsalVersion, set at link time to "2" (-ldflags "-X
// github.com/berthlb/berth/speaker.rehearsalVersion=2"), makes a build that implements and
// publishes version 2, whose weights differ from version 1's: a speaker of the next
// release, so that the lab can run two versions side by side (e2e TestFaultRollingUpgrade).
// Releases never set it.
var rehearsalVersion string

// NewestVersion is the newest decision version this build implements and publishes.
func NewestVersion() uint32 {
	if rehearsalVersion == "2" {
		return 2
	}
	return DecisionVersion
}

// decisionVersion returns the lowest version any member implements, within what this
// speaker knows, so that mixed versions elect alike during a rolling upgrade.
func decisionVersion(members []Member) uint32 {
	v := NewestVersion()
	for _, m := range members {
		v = min(v, max(m.DecisionVersion, 1))
	}
	return v
}

// l2Ad is an L2Advertisement with its node eligibility precomputed.
type l2Ad struct {
	ad *config.L2Advertisement
	// eligible are the nodes that may answer for it: known, not excluded, live, selected,
	// with an allowed interface up.
	eligible     nodeSet
	selfSelected bool
	// selfInterfaces are this node's up interfaces the advertisement allows, sorted.
	selfInterfaces []string
}

func newL2Ad(a *config.L2Advertisement, nodes []Node, members map[string]*Member, live nodeSet, self int) l2Ad {
	out := l2Ad{ad: a, eligible: newNodeSet(len(nodes))}
	for i := range nodes {
		if !live.has(i) || !selects(a.NodeSelector, nodes[i].Labels) {
			continue
		}
		up := members[nodes[i].Name].L2Interfaces
		if i == self {
			out.selfSelected = true
			out.selfInterfaces = allowedInterfaces(a.Interfaces, up)
		}
		if slices.ContainsFunc(up, func(name string) bool { return interfaceAllowed(a.Interfaces, name) }) {
			out.eligible.add(i)
		}
	}
	return out
}

// interfaceAllowed matches an interface name against an advertisement's names and
// "prefix*" patterns; no names allow every interface.
func interfaceAllowed(patterns []string, name string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if p == name {
			return true
		}
	}
	return false
}

func allowedInterfaces(patterns, up []string) []string {
	var out []string
	for _, name := range up {
		if interfaceAllowed(patterns, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// decideL2 elects the IP's owner among the eligible nodes and says whether it is this node.
func (c *Cluster) decideL2(svc *Service, ip netip.Addr, adIdx []int, eps serviceEndpoints) L2Decision {
	if len(adIdx) == 0 {
		return L2Decision{Reason: NoAdvertisement}
	}
	var (
		cand         nodeSet // shared with an l2Ad until owned
		owned        bool
		applicable   int
		selfSelected bool
		first        = -1 // the first applicable advertisement giving this node interfaces
		several      bool // more than one does
	)
	for _, i := range adIdx {
		a := &c.l2[i]
		if !selects(a.ad.ServiceSelector, svc.Labels) {
			continue
		}
		applicable++
		switch {
		case cand == nil:
			cand = a.eligible
		case !owned:
			cand, owned = cand.clone(), true
			fallthrough
		default:
			cand.or(a.eligible)
		}
		selfSelected = selfSelected || a.selfSelected
		if len(a.selfInterfaces) > 0 {
			if first < 0 {
				first = i
			} else {
				several = true
			}
		}
	}
	if applicable == 0 {
		return L2Decision{Reason: ServiceNotSelected}
	}
	if !eps.any {
		return L2Decision{Reason: NoEndpoints}
	}
	local := isLocal(svc.TrafficPolicy)
	if local {
		if !owned {
			cand = cand.clone()
		}
		cand.and(eps.nodes)
	}
	d := L2Decision{}
	if o, n := c.elect(ip, cand); o >= 0 {
		d.Owner = c.nodes[o].name
		if n >= 0 {
			d.Next = c.nodes[n].name
		}
	}
	switch {
	case c.selfWhy != "":
		d.Reason = c.selfWhy
	case c.l2Why != "":
		d.Reason = c.l2Why
	case !selfSelected:
		d.Reason = NodeNotSelected
	case first < 0:
		d.Reason = InterfaceDown
	case local && !eps.nodes.has(c.self):
		d.Reason = NoLocalEndpoints
	case d.Owner != c.nodes[c.self].name:
		d.Reason = NotElected
	default:
		d.Announce, d.Reason = true, Elected
		d.Interfaces = c.l2[first].selfInterfaces
		if several {
			d.Interfaces = c.selfInterfaces(svc, adIdx)
		}
	}
	return d
}

// selfInterfaces merges this node's interfaces over the advertisements applying to svc.
func (c *Cluster) selfInterfaces(svc *Service, adIdx []int) []string {
	var out []string
	for _, i := range adIdx {
		if a := &c.l2[i]; selects(a.ad.ServiceSelector, svc.Labels) {
			out = append(out, a.selfInterfaces...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// elect runs rendezvous hashing over the nodes in cand: the node with the highest weight for
// (node, ip) owns ip, the second highest is next; -1 when missing. Ties go to the lower name.
func (c *Cluster) elect(ip netip.Addr, cand nodeSet) (owner, next int) {
	owner, next = -1, -1
	var ow, nw uint64
	ik := ipKey(ip)
	for wi, word := range cand {
		for word != 0 {
			i := wi*64 + bits.TrailingZeros64(word)
			word &= word - 1
			// Indexes rise with names, so on equal weights the earlier node keeps its place.
			w := weight(c.version, c.nodes[i].key, ik)
			switch {
			case owner < 0 || w > ow:
				next, nw = owner, ow
				owner, ow = i, w
			case next < 0 || w > nw:
				next, nw = i, w
			}
		}
	}
	return owner, next
}

// Elect is the L2 election on its own: the owner of ip among candidates (node names, any
// order) and the runner-up, "" when missing. It gives the same answer as the decisions do
// for the same candidates and version.
func Elect(version uint32, ip netip.Addr, candidates []string) (owner, next string) {
	names := slices.Clone(candidates)
	slices.Sort(names)
	names = slices.Compact(names)
	ik := ipKey(ip.Unmap())
	var ow, nw uint64
	for _, n := range names {
		w := weight(version, nodeKey(n), ik)
		switch {
		case owner == "" || w > ow:
			next, nw = owner, ow
			owner, ow = n, w
		case next == "" || w > nw:
			next, nw = n, w
		}
	}
	return owner, next
}

// Weight version 1: FNV-1a (64 bit) of the node name, XORed with a mixed FNV-1a of the IP's
// 16-byte form (IPv4 as ::ffff:a.b.c.d), mixed with SplitMix64's finaliser. Both halves
// are precomputed, so a weight costs a few multiplications, and the result depends on
// nothing but the name and the IP: every speaker, on any architecture, gets the same.
// Changing any of this changes who answers for IPs: add a version instead.

func weight(version uint32, node, ip uint64) uint64 {
	switch version {
	case 2: // the rehearsal version (rehearsalVersion): another seed
		return mix64(node ^ ip ^ 0x9e3779b97f4a7c15)
	default: // 1, the only released version so far
		return mix64(node ^ ip)
	}
}

func nodeKey(name string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(name); i++ {
		h = (h ^ uint64(name[i])) * fnvPrime
	}
	return h
}

func ipKey(ip netip.Addr) uint64 {
	b := ip.As16()
	h := uint64(fnvOffset)
	for _, c := range b {
		h = (h ^ uint64(c)) * fnvPrime
	}
	// Mixing the IP half keeps the XOR from cancelling structure shared by names and IPs.
	return mix64(h)
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// poolInterfaces merges this node's interfaces over the L2 advertisements of pool: where a
// promoted runner-up answers until the next full pass narrows it to the Service's.
func (c *Cluster) poolInterfaces(pool string) []string {
	if c == nil {
		return nil
	}
	var out []string
	for _, i := range c.pools[pool].l2 {
		out = append(out, c.l2[i].selfInterfaces...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
