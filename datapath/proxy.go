package datapath

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Proxy mode (ipMode: Proxy): kube-proxy leaves the LB IP alone, so the table delivers it.
// netfilter binds one DNAT per connection per hook, so a DNAT to this node's own NodePort
// never reaches kube-proxy's NodePort rule. Each new connection to a Proxy frontend is
// therefore DNATed once, in a nat chain just before kube-proxy's, to a backend chosen at
// random: one of this node's ready endpoints (the pod sees the client's address) or
// another node's IP:NodePort, masqueraded so that the reply comes back through this node
// and conntrack undoes both translations.

// proxyPriority runs the DNAT before kube-proxy's nat prerouting chain (-100), whose
// Service rules must not see the LB IP.
const proxyPriority = -110

// masqPriority runs the masquerade after kube-proxy's (100): a packet kube-proxy
// masqueraded already is left as it is.
const masqPriority = 110

// ctStatusDNAT is IPS_DST_NAT: the connection's destination was translated.
const ctStatusDNAT = 1 << 5

// MaxBackends bounds a frontend's backends, drawn from with numgen on every new
// connection.
const MaxBackends = 1024

// Names inside the table for Proxy mode.
const (
	chainProxy      = "proxy"
	chainMasquerade = "masquerade"
	mapProxy4       = "proxy4"
	mapProxy6       = "proxy6"
	setMasquerade4  = "masquerade4"
	setMasquerade6  = "masquerade6"
	mapBackends4    = "backends4"
	mapBackends6    = "backends6"
)

// Backend is where a Proxy frontend sends a new connection.
type Backend struct {
	Addr netip.AddrPort
	// Masquerade makes the connection leave with this node's address, so that the reply
	// comes back through this node: for another node's NodePort.
	Masquerade bool
}

// ProxyFrontend is a Service port on a Proxy-mode LB IP with its backends. A backend that
// appears n times gets n shares of the new connections. Without backends, new
// connections are dropped.
type ProxyFrontend struct {
	Frontend
	Backends []Backend
	// RestrictSources lets in only clients in SourceRanges (of the frontend's family; none
	// means no client): the Service's loadBalancerSourceRanges, which kube-proxy does not
	// enforce for Proxy-mode IPs.
	RestrictSources bool
	SourceRanges    []netip.Prefix
}

// allowed is one source range of a restricted frontend: an element of the allowed sets.
type allowed struct {
	Frontend
	Source netip.Prefix
}

// frontendChain names a frontend's chain so that nft(8) can name it too: no spaces, no
// colons (an IPv6 address's become underscores), e.g. fe-203.0.113.7-tcp-80.
func frontendChain(f Frontend) string {
	return fmt.Sprintf("fe-%s-%s-%d", strings.ReplaceAll(f.IP.String(), ":", "_"), strings.ToLower(f.Protocol.String()), f.Port)
}

// normalizeProxy validates d.Proxy into n: each frontend also opens its door; the
// masqueraded backends, with the frontend's protocol, form the masquerade sets.
func normalizeProxy(d Desired, n *normalized) error {
	for _, pf := range d.Proxy {
		f := pf.unmapped()
		if len(pf.Backends) > MaxBackends {
			return fmt.Errorf("datapath: %v %v port %d: %d backends, at most %d", f.IP, f.Protocol, f.Port, len(pf.Backends), MaxBackends)
		}
		out := ProxyFrontend{Frontend: f, Backends: make([]Backend, 0, len(pf.Backends)), RestrictSources: pf.RestrictSources}
		if pf.RestrictSources {
			ranges, err := sourceRanges(f, pf.SourceRanges)
			if err != nil {
				return err
			}
			out.SourceRanges = ranges
			for _, r := range ranges {
				if f.IP.Is4() {
					n.allowed4 = append(n.allowed4, allowed{f, r})
				} else {
					n.allowed6 = append(n.allowed6, allowed{f, r})
				}
			}
		}
		for _, b := range pf.Backends {
			b.Addr = netip.AddrPortFrom(b.Addr.Addr().Unmap(), b.Addr.Port())
			a := b.Addr.Addr()
			if !a.IsValid() || a.IsUnspecified() || a.Is4() != f.IP.Is4() || b.Addr.Port() == 0 {
				return fmt.Errorf("datapath: %v %v port %d: backend %v: want an address of the frontend's family and a port", f.IP, f.Protocol, f.Port, b.Addr)
			}
			out.Backends = append(out.Backends, b)
			if b.Masquerade {
				m := Frontend{IP: a, Protocol: f.Protocol, Port: b.Addr.Port()}
				if a.Is4() {
					n.masq4 = append(n.masq4, m)
				} else {
					n.masq6 = append(n.masq6, m)
				}
			}
		}
		if f.IP.Is4() {
			n.proxy4 = append(n.proxy4, out)
		} else {
			n.proxy6 = append(n.proxy6, out)
		}
	}
	for _, s := range []*[]ProxyFrontend{&n.proxy4, &n.proxy6} {
		slices.SortStableFunc(*s, func(a, b ProxyFrontend) int { return compareFrontend(a.Frontend, b.Frontend) })
		for i := 1; i < len(*s); i++ {
			if (*s)[i].Frontend == (*s)[i-1].Frontend {
				f := (*s)[i].Frontend
				return fmt.Errorf("datapath: %v %v port %d: two Proxy frontends", f.IP, f.Protocol, f.Port)
			}
		}
	}
	for _, s := range []*[]Frontend{&n.masq4, &n.masq6} {
		slices.SortFunc(*s, compareFrontend)
		*s = slices.Compact(*s)
	}
	for _, s := range []*[]allowed{&n.allowed4, &n.allowed6} {
		slices.SortFunc(*s, func(a, b allowed) int {
			if c := compareFrontend(a.Frontend, b.Frontend); c != 0 {
				return c
			}
			return cmp.Or(a.Source.Addr().Compare(b.Source.Addr()), cmp.Compare(a.Source.Bits(), b.Source.Bits()))
		})
		*s = slices.Compact(*s)
	}
	return nil
}

// sourceRanges validates and canonicalizes a restricted frontend's ranges: unmapped,
// masked, sorted, and without those inside another. The kernel keeps an interval set's
// elements disjoint and refuses one that overlaps another (ENOTEMPTY), and CIDR ranges
// overlap only by nesting.
func sourceRanges(f Frontend, rs []netip.Prefix) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(rs))
	for _, r := range rs {
		if r.Addr().Is4In6() {
			r = netip.PrefixFrom(r.Addr().Unmap(), r.Bits()-96)
		}
		r = r.Masked()
		if !r.IsValid() || r.Addr().Is4() != f.IP.Is4() {
			return nil, fmt.Errorf("datapath: %v %v port %d: source range %v: want a prefix of the frontend's family", f.IP, f.Protocol, f.Port, r)
		}
		out = append(out, r)
	}
	// Shorter prefixes first among equal addresses: a range inside another comes after it.
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	kept := out[:0]
	for _, r := range out {
		if len(kept) == 0 || !kept[len(kept)-1].Contains(r.Addr()) {
			kept = append(kept, r)
		}
	}
	return kept, nil
}

// lastAddr is the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// proxyRules counts the rules of Proxy mode: dispatch and masquerade per family, and one
// per frontend.
func proxyRules(n normalized) int { return 4 + len(n.proxy4) + len(n.proxy6) }

// addProxyChains queues Proxy mode's fixed chains and rules on c: the dispatch from a
// frontend to its chain, and the masquerade. sets holds the batch's fixed sets.
func addProxyChains(c *nftables.Conn, sets map[string]*nftables.Set) {
	policy := nftables.ChainPolicyAccept
	pre := c.AddChain(&nftables.Chain{Name: chainProxy, Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(proxyPriority), Policy: &policy})
	post := c.AddChain(&nftables.Chain{Name: chainMasquerade, Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityRef(masqPriority), Policy: &policy})
	for _, fam := range []struct {
		family
		dispatch, masq *nftables.Set
	}{
		{ipv4, sets[mapProxy4], sets[setMasquerade4]},
		{ipv6, sets[mapProxy6], sets[setMasquerade6]},
	} {
		// proxy: daddr . l4proto . dport → goto the frontend's chain.
		c.AddRule(&nftables.Rule{Table: table, Chain: pre, Exprs: concat(nfproto(fam.proto), fam.frontendExprs(),
			[]expr.Any{&expr.Lookup{SourceRegister: 1, SetName: fam.dispatch.Name, SetID: fam.dispatch.ID, IsDestRegSet: true, DestRegister: 0}})})
		// masquerade: what this table DNATed to a masqueraded backend.
		c.AddRule(&nftables.Rule{Table: table, Chain: post, Exprs: concat(
			[]expr.Any{
				&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
					Mask: binaryutil.NativeEndian.PutUint32(ctStatusDNAT),
					Xor:  binaryutil.NativeEndian.PutUint32(0)},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
			},
			nfproto(fam.proto), fam.frontendExprs(), lookup(fam.masq, 1),
			[]expr.Any{&expr.Masq{}})})
	}
}

// dnatExprs is `dnat to <shard> [ idx . numgen random mod modulus ]`: the key is two
// 32-bit registers, 8 and 9 (NFT_REG32_00, _01); the address lands in register 1 and the
// port after it (register 9 for IPv4, 2 for IPv6).
func dnatExprs(shard *nftables.Set, idx, modulus uint32, v6 bool) []expr.Any {
	family, protoReg := uint32(unix.NFPROTO_IPV4), uint32(9)
	if v6 {
		family, protoReg = unix.NFPROTO_IPV6, 2
	}
	return []expr.Any{
		&expr.Immediate{Register: 8, Data: binaryutil.NativeEndian.PutUint32(idx)},
		&expr.Numgen{Register: 9, Modulus: modulus, Type: unix.NFT_NG_RANDOM},
		&expr.Lookup{SourceRegister: 8, SetName: shard.Name, SetID: shard.ID, IsDestRegSet: true, DestRegister: 1},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: family, RegAddrMin: 1, RegProtoMin: protoReg, Specified: true},
	}
}

// frontendsPerShard is how many frontends share a backend map. Every element added to a
// map is checked against every rule bound to it, and binding walks the elements, so one
// map for all frontends is quadratic (1 s for 4,000 frontends), while one per frontend
// pays the fixed cost of a set 4,000 times (2.8 s). Shards of 64 cost a few per cent of
// either.
const frontendsPerShard = 64

// markPair is a backend map key: two 32-bit values in host order.
func markPair(a, b uint32) []byte {
	return slices.Concat(binaryutil.NativeEndian.PutUint32(a), binaryutil.NativeEndian.PutUint32(b))
}
