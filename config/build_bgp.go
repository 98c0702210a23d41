package config

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/config/v1alpha1"
)

func (b *builder) peers(objs []v1alpha1.BGPPeer) {
	var accepted []*v1alpha1.BGPPeer
	for _, i := range byAge(objs, func(p *v1alpha1.BGPPeer) *metav1.ObjectMeta { return &p.ObjectMeta }) {
		obj := &objs[i]
		p, err := peer(obj)
		if err != nil {
			b.reject(KindBGPPeer, obj.Name, InvalidPeer, "%v", err)
			continue
		}
		if older := duplicatePeer(accepted, obj); older != nil {
			b.reject(KindBGPPeer, obj.Name, DuplicatePeer,
				"older peer %q already peers with %s port %d from the same nodes; give the peers disjoint nodeSelectors",
				older.Name, p.Address, p.Port)
			continue
		}
		accepted = append(accepted, obj)
		b.snap.peersByName[p.Name] = p
	}
	b.snap.Peers = sortedValues(b.snap.peersByName)
}

// peer validates one BGPPeer on its own and applies defaults.
func peer(obj *v1alpha1.BGPPeer) (*Peer, error) {
	s := &obj.Spec
	p := &Peer{
		Name:         obj.Name,
		Created:      obj.CreationTimestamp.Time,
		Port:         DefaultPeerPort,
		HoldTime:     DefaultHoldTime,
		ConnectTime:  DefaultConnectTime,
		EBGPMultiHop: s.EBGPMultiHop,
		RestartTime:  DefaultRestartTime,
	}
	var err error
	if p.MyASN, err = asn("myASN", s.MyASN); err != nil {
		return nil, err
	}
	if p.PeerASN, err = asn("peerASN", s.PeerASN); err != nil {
		return nil, err
	}
	if p.Address, err = parseAddr(s.PeerAddress); err != nil {
		return nil, fmt.Errorf("peerAddress %q is not an IP address", s.PeerAddress)
	}
	if p.Address.IsUnspecified() || p.Address.IsLoopback() {
		return nil, fmt.Errorf("peerAddress %s is unspecified or loopback", p.Address)
	}
	if s.PeerPort != 0 {
		if s.PeerPort < 1 || s.PeerPort > 65535 {
			return nil, fmt.Errorf("peerPort %d is out of range 1-65535", s.PeerPort)
		}
		p.Port = uint16(s.PeerPort)
	}
	if s.SourceAddress != "" {
		if p.SourceAddress, err = parseAddr(s.SourceAddress); err != nil {
			return nil, fmt.Errorf("sourceAddress %q is not an IP address", s.SourceAddress)
		}
		if p.SourceAddress.BitLen() != p.Address.BitLen() {
			return nil, fmt.Errorf("sourceAddress %s is not of the family of peerAddress %s", p.SourceAddress, p.Address)
		}
	}
	if s.RouterID != "" {
		if p.RouterID, err = netip.ParseAddr(s.RouterID); err != nil || !p.RouterID.Is4() || p.RouterID.IsUnspecified() {
			return nil, fmt.Errorf("routerID %q is not a non-zero IPv4 address", s.RouterID)
		}
	}
	if s.HoldTime != nil {
		p.HoldTime = s.HoldTime.Duration
	}
	if p.HoldTime != 0 && (p.HoldTime < 3e9 || p.HoldTime > 65535e9) {
		return nil, fmt.Errorf("holdTime %s must be 0 or between 3s and 65535s", p.HoldTime)
	}
	p.KeepaliveTime = p.HoldTime / 3
	if s.KeepaliveTime != nil {
		p.KeepaliveTime = s.KeepaliveTime.Duration
	}
	// With a hold time, keepalives must flow or the session drops when the timer expires.
	if (p.HoldTime > 0 && (p.KeepaliveTime <= 0 || p.KeepaliveTime >= p.HoldTime)) || (p.HoldTime == 0 && p.KeepaliveTime != 0) {
		return nil, fmt.Errorf("keepaliveTime %s must be above 0 and less than holdTime %s (both 0 to turn keepalives off)", p.KeepaliveTime, p.HoldTime)
	}
	if s.ConnectTime != nil {
		p.ConnectTime = s.ConnectTime.Duration
	}
	if p.ConnectTime < 1e9 {
		return nil, fmt.Errorf("connectTime %s must be at least 1s", p.ConnectTime)
	}
	if p.EBGPMultiHop && p.IBGP() {
		return nil, fmt.Errorf("ebgpMultiHop applies to eBGP only, but myASN equals peerASN (%d)", p.MyASN)
	}
	if s.Password != nil {
		ref := *s.Password
		p.Password = &ref
	}
	if gr := s.GracefulRestart; gr != nil && gr.Enabled {
		p.GracefulRestart = true
		if gr.RestartTime != nil {
			p.RestartTime = gr.RestartTime.Duration
		}
	}
	if p.NodeSelector, err = selector(s.NodeSelector); err != nil {
		return nil, fmt.Errorf("nodeSelector: %w", err)
	}
	return p, nil
}

func asn(field string, v int64) (uint32, error) {
	if v < 1 || v > 1<<32-1 {
		return 0, fmt.Errorf("%s %d is out of range 1-4294967295", field, v)
	}
	return uint32(v), nil
}

// duplicatePeer returns an accepted peer that reaches the same router endpoint from nodes
// obj may also select, or nil. Selectors are disjoint only when provably so: a label both
// require with different values.
func duplicatePeer(accepted []*v1alpha1.BGPPeer, obj *v1alpha1.BGPPeer) *v1alpha1.BGPPeer {
	for _, o := range accepted {
		if !sameEndpoint(&o.Spec, &obj.Spec) {
			continue
		}
		if !disjointSelectors(o.Spec.NodeSelector, obj.Spec.NodeSelector) {
			return o
		}
	}
	return nil
}

func sameEndpoint(a, b *v1alpha1.BGPPeerSpec) bool {
	aa, _ := netip.ParseAddr(a.PeerAddress)
	ba, _ := netip.ParseAddr(b.PeerAddress)
	return aa == ba && cmp.Or(a.PeerPort, DefaultPeerPort) == cmp.Or(b.PeerPort, DefaultPeerPort)
}

// disjointSelectors reports whether no label set can match both a and b, as far as
// matchLabels and In expressions show.
func disjointSelectors(a, b *metav1.LabelSelector) bool {
	if a == nil || b == nil {
		return false
	}
	allowed := func(s *metav1.LabelSelector, key string) ([]string, bool) {
		if v, ok := s.MatchLabels[key]; ok {
			return []string{v}, true
		}
		for _, e := range s.MatchExpressions {
			if e.Key == key && e.Operator == metav1.LabelSelectorOpIn {
				return e.Values, true
			}
		}
		return nil, false
	}
	keys := map[string]bool{}
	for k := range a.MatchLabels {
		keys[k] = true
	}
	for _, e := range a.MatchExpressions {
		keys[e.Key] = true
	}
	for k := range keys {
		av, ok1 := allowed(a, k)
		bv, ok2 := allowed(b, k)
		if ok1 && ok2 && !slices.ContainsFunc(av, func(v string) bool { return slices.Contains(bv, v) }) {
			return true
		}
	}
	return false
}

// target resolves what an advertisement applies to. Missing pools are reported against
// ResolvedRefs; the advertisement still covers the pools that exist.
func (b *builder) target(kind Kind, name string, t *v1alpha1.AdvertisementTarget) (Target, error) {
	var out Target
	var err error
	if out.ServiceSelector, err = selector(t.ServiceSelector); err != nil {
		return out, fmt.Errorf("serviceSelector: %w", err)
	}
	if out.NodeSelector, err = selector(t.NodeSelector); err != nil {
		return out, fmt.Errorf("nodeSelector: %w", err)
	}
	var poolSel labels.Selector
	if t.IPPoolSelector != nil {
		if poolSel, err = metav1.LabelSelectorAsSelector(t.IPPoolSelector); err != nil {
			return out, fmt.Errorf("ipPoolSelector: %w", err)
		}
	}
	all := len(t.IPPools) == 0 && poolSel == nil
	set := map[string]bool{}
	var missing []string
	for _, n := range t.IPPools {
		if b.snap.Pool(string(n)) == nil {
			missing = append(missing, string(n))
			continue
		}
		set[string(n)] = true
	}
	for _, p := range b.snap.Pools {
		if all || (poolSel != nil && poolSel.Matches(p.Labels)) {
			set[p.Name] = true
		}
	}
	if len(missing) > 0 {
		b.report(kind, name, v1alpha1.ConditionResolvedRefs, PoolNotFound,
			"no accepted IPPool named %s", quoteAll(missing))
	}
	for n := range set {
		out.Pools = append(out.Pools, n)
	}
	slices.Sort(out.Pools)
	return out, nil
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

func (b *builder) bgpAdvertisements(objs []v1alpha1.BGPAdvertisement) {
	byName := map[string]*BGPAdvertisement{}
	var accepted []*BGPAdvertisement
	for _, i := range byAge(objs, func(a *v1alpha1.BGPAdvertisement) *metav1.ObjectMeta { return &a.ObjectMeta }) {
		obj := &objs[i]
		a, ok := b.bgpAdvertisement(obj)
		if !ok {
			continue
		}
		if older, pool, peer := b.disagreement(accepted, a); older != nil {
			b.reject(KindBGPAdvertisement, a.Name, AdvertisementConflict,
				"older advertisement %q sends pool %q to peer %q with a different localPref at the same prefix length",
				older.Name, pool, peer)
			continue
		}
		accepted = append(accepted, a)
		byName[a.Name] = a
	}
	b.snap.BGPAdvertisements = sortedValues(byName)
}

func (b *builder) bgpAdvertisement(obj *v1alpha1.BGPAdvertisement) (*BGPAdvertisement, bool) {
	s := &obj.Spec
	a := &BGPAdvertisement{
		Name:                obj.Name,
		Created:             obj.CreationTimestamp.Time,
		AllPeers:            len(s.Peers) == 0,
		AggregationLength:   32,
		AggregationLengthV6: 128,
	}
	for _, c := range s.Communities {
		v, err := ParseCommunity(string(c))
		if err != nil {
			b.reject(KindBGPAdvertisement, obj.Name, InvalidCommunity, "%v", err)
			return nil, false
		}
		a.Communities = append(a.Communities, v)
	}
	for _, c := range s.LargeCommunities {
		v, err := ParseLargeCommunity(string(c))
		if err != nil {
			b.reject(KindBGPAdvertisement, obj.Name, InvalidCommunity, "%v", err)
			return nil, false
		}
		a.LargeCommunities = append(a.LargeCommunities, v)
	}
	if s.LocalPref != nil {
		if *s.LocalPref < 0 || *s.LocalPref > 1<<32-1 {
			b.reject(KindBGPAdvertisement, obj.Name, InvalidAdvertisement, "localPref %d is out of range 0-4294967295", *s.LocalPref)
			return nil, false
		}
		lp := uint32(*s.LocalPref)
		a.LocalPref = &lp
	}
	if s.AggregationLength != nil {
		a.AggregationLength = int(*s.AggregationLength)
	}
	if s.AggregationLengthV6 != nil {
		a.AggregationLengthV6 = int(*s.AggregationLengthV6)
	}
	if a.AggregationLength < 0 || a.AggregationLength > 32 || a.AggregationLengthV6 < 0 || a.AggregationLengthV6 > 128 {
		b.reject(KindBGPAdvertisement, obj.Name, InvalidAdvertisement, "aggregation lengths %d/%d exceed 32/128",
			a.AggregationLength, a.AggregationLengthV6)
		return nil, false
	}
	var err error
	if a.Target, err = b.target(KindBGPAdvertisement, obj.Name, &s.AdvertisementTarget); err != nil {
		b.reject(KindBGPAdvertisement, obj.Name, InvalidSelector, "%v", err)
		return nil, false
	}
	var missing []string
	for _, n := range s.Peers {
		if b.snap.Peer(string(n)) == nil {
			missing = append(missing, string(n))
			continue
		}
		a.Peers = append(a.Peers, string(n))
	}
	slices.Sort(a.Peers)
	if len(missing) > 0 {
		b.report(KindBGPAdvertisement, obj.Name, v1alpha1.ConditionResolvedRefs, PeerNotFound,
			"no accepted BGPPeer named %s", quoteAll(missing))
	}
	return a, true
}

// disagreement finds an accepted advertisement that sends one of a's pools to one of a's
// peers at the same prefix length, for a family the pool has, with a different localPref:
// the route can carry only one.
func (b *builder) disagreement(accepted []*BGPAdvertisement, a *BGPAdvertisement) (older *BGPAdvertisement, pool, peer string) {
	if a.LocalPref == nil {
		return nil, "", ""
	}
	for _, o := range accepted {
		if o.LocalPref == nil || *o.LocalPref == *a.LocalPref {
			continue
		}
		pool, ok := b.sameRoute(o, a)
		if !ok {
			continue
		}
		switch {
		case o.AllPeers && a.AllPeers:
			return o, pool, "*"
		case o.AllPeers && len(a.Peers) > 0:
			return o, pool, a.Peers[0]
		case a.AllPeers && len(o.Peers) > 0:
			return o, pool, o.Peers[0]
		}
		if peer, ok := firstCommon(o.Peers, a.Peers); ok {
			return o, pool, peer
		}
	}
	return nil, "", ""
}

// sameRoute returns a pool both advertisements cover and announce at the same prefix length
// for a family the pool has addresses of.
func (b *builder) sameRoute(o, a *BGPAdvertisement) (string, bool) {
	for _, name := range a.Pools {
		if _, ok := slices.BinarySearch(o.Pools, name); !ok {
			continue
		}
		p := b.snap.Pool(name)
		for _, f := range []Family{IPv4, IPv6} {
			if p.Capacity(f).Sign() > 0 && o.AggregationFor(f) == a.AggregationFor(f) {
				return name, true
			}
		}
	}
	return "", false
}

// firstCommon returns the first element of sorted a that is also in sorted b.
func firstCommon(a, b []string) (string, bool) {
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); ok {
			return x, true
		}
	}
	return "", false
}

func (b *builder) l2Advertisements(objs []v1alpha1.L2Advertisement) {
	byName := map[string]*L2Advertisement{}
	for _, i := range byAge(objs, func(a *v1alpha1.L2Advertisement) *metav1.ObjectMeta { return &a.ObjectMeta }) {
		obj := &objs[i]
		a := &L2Advertisement{Name: obj.Name, Created: obj.CreationTimestamp.Time}
		var err error
		if a.Target, err = b.target(KindL2Advertisement, obj.Name, &obj.Spec.AdvertisementTarget); err != nil {
			b.reject(KindL2Advertisement, obj.Name, InvalidSelector, "%v", err)
			continue
		}
		for _, n := range obj.Spec.Interfaces {
			a.Interfaces = append(a.Interfaces, string(n))
		}
		slices.Sort(a.Interfaces)
		byName[a.Name] = a
	}
	b.snap.L2Advertisements = sortedValues(byName)
}
