package metallb

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

// Default aggregation lengths, MetalLB's and berth's alike: one route per address.
const (
	defaultAggregation   = 32
	defaultAggregationV6 = 128
)

// interfaceName is berth's InterfaceName pattern.
var interfaceName = regexp.MustCompile(`^[a-zA-Z0-9_.:@-]{1,15}\*?$`)

// target converts what an advertisement applies to. MetalLB's lists of selectors, any of
// which may match, become one berth selector when one can say the same; pool selectors
// otherwise become the pools they select in the input, and node selectors one
// advertisement each (perNode).
func (c *converter) target(ref Ref, pools []string, poolSels, nodeSels []metav1.LabelSelector) (t v1alpha1.AdvertisementTarget, perNode []*metav1.LabelSelector, notes []string) {
	ns := ref.Namespace
	multi := len(c.namespaces(kindIPAddressPool)) > 1
	var names []string
	for i, p := range pools {
		n, ok := c.lookup(kindIPAddressPool, ns, p)
		if !ok {
			c.warn(ref, fmt.Sprintf("spec.ipAddressPools[%d]", i), "no IPAddressPool %q in the input: berth reports PoolNotFound until an IPPool of that name exists", p)
		}
		names = append(names, n)
	}
	sel, exact := anyOf(poolSels)
	switch {
	case len(poolSels) > 0 && (multi || !exact):
		matched := c.poolsMatching(ref, poolSels)
		names = append(names, matched...)
		why := "berth's one ipPoolSelector cannot say that any of them may match"
		if multi {
			why = "the input has pools in several namespaces, which a selector of berth's cluster-scoped objects would mix"
		}
		list := "none"
		if len(matched) > 0 {
			list = strings.Join(matched, ", ")
		}
		c.warn(ref, "spec.ipAddressPoolSelectors", "written as the pools they select in the input (%s), as %s: pools labelled to match later are not announced", list, why)
	case len(poolSels) > 0:
		t.IPPoolSelector = sel
	case len(pools) == 0 && multi:
		for _, p := range c.pools {
			if p.ref.Namespace == ns {
				names = append(names, p.berth)
			}
		}
		if len(names) == 0 {
			c.warn(ref, "spec", "it announces every pool of its namespace, and the input has none there; berth would announce every pool")
		} else {
			notes = append(notes, fmt.Sprintf("every pool of namespace %q, written out, as the input has pools in several namespaces", ns))
		}
	}
	t.IPPools = objectNames(sortedSet(names))

	if sel, exact := anyOf(nodeSels); exact {
		perNode = []*metav1.LabelSelector{sel}
	} else {
		for i := range nodeSels {
			perNode = append(perNode, nodeSels[i].DeepCopy())
		}
		notes = append(notes, fmt.Sprintf("one of %d advertisements, one per nodeSelector: MetalLB announces from nodes any of them matches, "+
			"which berth's one nodeSelector cannot say", len(nodeSels)))
	}
	return t, perNode, notes
}

// poolsMatching lists the berth names of the input's pools of ref's namespace that any
// of sels selects.
func (c *converter) poolsMatching(ref Ref, sels []metav1.LabelSelector) []string {
	var out []string
	for _, p := range c.pools {
		if p.ref.Namespace != ref.Namespace {
			continue
		}
		for i := range sels {
			s, err := metav1.LabelSelectorAsSelector(&sels[i])
			if err != nil {
				c.warn(ref, fmt.Sprintf("spec.ipAddressPoolSelectors[%d]", i), "%v", err)
				continue
			}
			if s.Matches(labels.Set(p.labels)) {
				out = append(out, p.berth)
				break
			}
		}
	}
	return out
}

// emitSplit writes one advertisement per node selector, named base, or base-1, base-2...
func (c *converter) emitSplit(kind, base string, perNode []*metav1.LabelSelector, from []Ref, notes []string, build func(name string, nodes *metav1.LabelSelector) runtime.Object) {
	for i, nodes := range perNode {
		name := base
		if len(perNode) > 1 {
			name = c.claim(kind, fmt.Sprintf("%s-%d", base, i+1))
		}
		c.emit(build(name, nodes), from, notes)
	}
}

func (c *converter) convertBGPAdvertisements() {
	multiPeers := len(c.namespaces(kindBGPPeer)) > 1
	for _, in := range c.in[kindBGPAdv] {
		c.res.Read++
		var a bgpAdvertisement
		if !c.decodeInput(in, &a) {
			continue
		}
		s, ref := &a.Spec, in.ref
		var spec v1alpha1.BGPAdvertisementSpec
		if l := s.AggregationLength; l != nil && *l != defaultAggregation {
			spec.AggregationLength = l
		}
		if l := s.AggregationLengthV6; l != nil && *l != defaultAggregationV6 {
			spec.AggregationLengthV6 = l
		}
		if s.LocalPref != 0 { // MetalLB's 0 is "not set"
			lp := int64(s.LocalPref)
			spec.LocalPref = &lp
		}
		from := []Ref{ref}
		var notes []string
		ok := true
		for i, cm := range s.Communities {
			v := cm
			if alias, found := c.aliases[key{ref.Namespace, cm}]; found {
				v = alias.value
				if !slices.Contains(from, alias.ref) {
					from = append(from, alias.ref)
				}
				notes = append(notes, fmt.Sprintf("community %q is an alias of %s: %s", cm, alias.ref, v))
			}
			field := fmt.Sprintf("spec.communities[%d]", i)
			if large, isLarge := strings.CutPrefix(v, "large:"); isLarge {
				if _, err := config.ParseLargeCommunity(large); err != nil {
					c.fail(ref, field, "%v", err)
					ok = false
				}
				spec.LargeCommunities = append(spec.LargeCommunities, v1alpha1.LargeCommunity(large))
			} else {
				if _, err := config.ParseCommunity(v); err != nil {
					c.fail(ref, field, "%q is neither an alias of a Community of the input in namespace %q nor a community: %v", cm, ref.Namespace, err)
					ok = false
				}
				spec.Communities = append(spec.Communities, v1alpha1.Community(v))
			}
		}
		if !ok {
			continue
		}
		slices.Sort(spec.Communities)
		spec.Communities = slices.Compact(spec.Communities)
		slices.Sort(spec.LargeCommunities)
		spec.LargeCommunities = slices.Compact(spec.LargeCommunities)
		var peers []string
		for i, p := range s.Peers {
			n, found := c.lookup(kindBGPPeer, ref.Namespace, p)
			if !found {
				c.warn(ref, fmt.Sprintf("spec.peers[%d]", i), "no BGPPeer %q in the input: berth reports PeerNotFound until a BGPPeer of that name exists", p)
			}
			peers = append(peers, n)
		}
		if len(s.Peers) == 0 && multiPeers {
			for _, p := range c.peers {
				if p.ref.Namespace == ref.Namespace {
					peers = append(peers, p.berth)
				}
			}
			notes = append(notes, fmt.Sprintf("every peer of namespace %q, written out, as the input has peers in several namespaces", ref.Namespace))
		}
		spec.Peers = objectNames(sortedSet(peers))
		t, perNode, tnotes := c.target(ref, s.IPAddressPools, s.IPAddressPoolSelectors, s.NodeSelectors)
		spec.AdvertisementTarget = t
		base, _ := c.lookup(kindBGPAdv, ref.Namespace, ref.Name)
		c.emitSplit("BGPAdvertisement", base, perNode, from, append(notes, tnotes...), func(name string, nodes *metav1.LabelSelector) runtime.Object {
			o := &v1alpha1.BGPAdvertisement{TypeMeta: typeMeta("BGPAdvertisement"), ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: *spec.DeepCopy()}
			o.Spec.NodeSelector = nodes
			return o
		})
	}
}

func (c *converter) convertL2Advertisements() {
	for _, in := range c.in[kindL2Adv] {
		c.res.Read++
		var a l2Advertisement
		if !c.decodeInput(in, &a) {
			continue
		}
		s, ref := &a.Spec, in.ref
		var spec v1alpha1.L2AdvertisementSpec
		var ifaces []string
		for i, n := range s.Interfaces {
			if !interfaceName.MatchString(n) {
				c.warn(ref, fmt.Sprintf("spec.interfaces[%d]", i), "%q is not an interface name berth takes: left out", n)
				continue
			}
			ifaces = append(ifaces, n)
		}
		if len(s.Interfaces) > 0 && len(ifaces) == 0 {
			c.fail(ref, "spec.interfaces", "none is an interface name berth takes, and none would mean every interface")
			continue
		}
		for _, n := range sortedSet(ifaces) {
			spec.Interfaces = append(spec.Interfaces, v1alpha1.InterfaceName(n))
		}
		t, perNode, notes := c.target(ref, s.IPAddressPools, s.IPAddressPoolSelectors, s.NodeSelectors)
		spec.AdvertisementTarget = t
		base, _ := c.lookup(kindL2Adv, ref.Namespace, ref.Name)
		c.emitSplit("L2Advertisement", base, perNode, []Ref{ref}, notes, func(name string, nodes *metav1.LabelSelector) runtime.Object {
			o := &v1alpha1.L2Advertisement{TypeMeta: typeMeta("L2Advertisement"), ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: *spec.DeepCopy()}
			o.Spec.NodeSelector = nodes
			return o
		})
	}
}
