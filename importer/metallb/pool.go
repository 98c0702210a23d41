package metallb

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/config/v1alpha1"
)

// maxPriority is the highest IPPool priority berth accepts, the one tried last.
const maxPriority = 1000000

// poolIn is a converted IPAddressPool, for the advertisements that select pools.
type poolIn struct {
	ref    Ref
	labels map[string]string
	berth  string
}

func typeMeta(kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: kind}
}

func (c *converter) convertPools() {
	selected := c.poolSelectorKeys()
	for _, in := range c.in[kindIPAddressPool] {
		c.res.Read++
		var p ipAddressPool
		if !c.decodeInput(in, &p) {
			continue
		}
		spec, notes, ok := c.poolSpec(in.ref, &p.Spec)
		if !ok {
			continue
		}
		name, _ := c.lookup(kindIPAddressPool, in.ref.Namespace, in.ref.Name)
		// Only the labels advertisements select pools by: others, such as a GitOps tool's
		// tracking labels, would make the berth object look like one of MetalLB's.
		var labels map[string]string
		var dropped []string
		for _, k := range slices.Sorted(maps.Keys(p.Metadata.Labels)) {
			if selected[k] {
				if labels == nil {
					labels = map[string]string{}
				}
				labels[k] = p.Metadata.Labels[k]
			} else {
				dropped = append(dropped, k)
			}
		}
		if len(dropped) > 0 {
			notes = append(notes, fmt.Sprintf("labels not copied, as no advertisement of the input selects pools by them: %s", strings.Join(dropped, ", ")))
		}
		c.pools = append(c.pools, &poolIn{ref: in.ref, labels: p.Metadata.Labels, berth: name})
		c.emit(&v1alpha1.IPPool{TypeMeta: typeMeta("IPPool"), ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: spec},
			[]Ref{in.ref}, notes)
	}
}

// poolSelectorKeys lists the label keys the input's advertisements select pools by.
func (c *converter) poolSelectorKeys() map[string]bool {
	keys := map[string]bool{}
	add := func(sels []metav1.LabelSelector) {
		for _, s := range sels {
			for k := range s.MatchLabels {
				keys[k] = true
			}
			for _, e := range s.MatchExpressions {
				keys[e.Key] = true
			}
		}
	}
	for _, in := range c.in[kindL2Adv] {
		var a l2Advertisement
		if _, err := decode(in.obj, &a); err == nil {
			add(a.Spec.IPAddressPoolSelectors)
		}
	}
	for _, in := range c.in[kindBGPAdv] {
		var a bgpAdvertisement
		if _, err := decode(in.obj, &a); err == nil {
			add(a.Spec.IPAddressPoolSelectors)
		}
	}
	return keys
}

func (c *converter) poolSpec(ref Ref, s *ipAddressPoolSpec) (v1alpha1.IPPoolSpec, []string, bool) {
	spec := v1alpha1.IPPoolSpec{AutoAssign: s.AutoAssign, AvoidBuggyIPs: s.AvoidBuggyIPs}
	var notes []string
	if len(s.Addresses) == 0 {
		c.fail(ref, "spec.addresses", "no addresses")
		return spec, nil, false
	}
	for i, a := range s.Addresses {
		r, note, err := addressRange(a)
		field := fmt.Sprintf("spec.addresses[%d]", i)
		if err != nil {
			c.fail(ref, field, "%v", err)
			return spec, nil, false
		}
		if note != "" {
			c.warn(ref, field, "%s", note)
		}
		if !slices.Contains(spec.Addresses, r) {
			spec.Addresses = append(spec.Addresses, r)
		}
	}
	if sa := s.ServiceAllocation; sa != nil {
		notes = c.allocation(ref, sa, &spec)
	}
	return spec, notes, true
}

// addressRange converts one of MetalLB's addresses (a CIDR or a first-last range, spaces
// allowed around the dash) to berth's form. MetalLB takes a CIDR with host bits set as
// its network; berth wants the network address written.
func addressRange(s string) (v1alpha1.AddressRange, string, error) {
	s = strings.TrimSpace(s)
	if first, last, ok := strings.Cut(s, "-"); ok {
		a, err1 := netip.ParseAddr(strings.TrimSpace(first))
		b, err2 := netip.ParseAddr(strings.TrimSpace(last))
		switch {
		case err1 != nil || err2 != nil || a.Zone() != "" || b.Zone() != "":
			return "", "", fmt.Errorf("%q is not a range of two IP addresses", s)
		case a.Is4In6() || b.Is4In6():
			return "", "", fmt.Errorf("range %q has IPv4-mapped IPv6 addresses: write them as IPv4", s)
		case a.Is4() != b.Is4():
			return "", "", fmt.Errorf("range %q mixes IPv4 and IPv6", s)
		case b.Less(a):
			return "", "", fmt.Errorf("range %q: the first address is greater than the last", s)
		}
		return v1alpha1.AddressRange(a.String() + "-" + b.String()), "", nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Zone() != "" {
			return "", "", fmt.Errorf("%q is not a CIDR", s)
		}
		if p.Addr().Is4In6() {
			return "", "", fmt.Errorf("%q is an IPv4-mapped IPv6 CIDR: write it as IPv4", s)
		}
		if m := p.Masked(); m != p {
			return v1alpha1.AddressRange(m.String()), fmt.Sprintf("%q has host bits set; MetalLB used its network, written here as %s", s, m), nil
		}
		return v1alpha1.AddressRange(p.String()), "", nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.Is4In6() {
		return "", "", fmt.Errorf("%q is neither a CIDR nor a range", s)
	}
	p := netip.PrefixFrom(a, a.BitLen())
	return v1alpha1.AddressRange(p.String()), fmt.Sprintf("a single address, which MetalLB refuses without a prefix length: written as %s", p), nil
}

// allocation converts serviceAllocation. MetalLB tries the pools with namespaces or
// selectors first, by priority where 0 (unset) comes last, then the others in no defined
// order; berth tries the pools with selectors first too, then by priority where lower
// comes first, 0 first of all, then by name. So an unset priority of a pool with
// selectors becomes berth's last, maxPriority.
func (c *converter) allocation(ref Ref, sa *serviceAllocation, spec *v1alpha1.IPPoolSpec) []string {
	var notes []string
	pinned := len(sa.Namespaces) > 0 || len(sa.NamespaceSelectors) > 0 || len(sa.ServiceSelectors) > 0
	const field = "spec.serviceAllocation"
	switch p := sa.Priority; {
	case p < 0:
		c.warn(ref, field+".priority", "%d is negative: left out", p)
	case p > maxPriority:
		spec.Priority = maxPriority
		c.warn(ref, field+".priority", "%d is above berth's highest, %d, which it becomes", p, maxPriority)
	case p == 0 && pinned:
		spec.Priority = maxPriority
		notes = append(notes, fmt.Sprintf("priority %d: MetalLB tries a pool with selectors but no priority after those with one; berth tries lower priorities first", maxPriority))
	case p > 0 && !pinned:
		spec.Priority = int32(p)
		notes = append(notes, "MetalLB orders by priority only the pools with namespaces or selectors; berth orders every pool by it, after those with selectors")
	default:
		spec.Priority = int32(p)
	}

	var nsSels []metav1.LabelSelector
	if len(sa.Namespaces) > 0 {
		nsSels = append(nsSels, metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: nsNameKey, Operator: metav1.LabelSelectorOpIn, Values: sortedSet(sa.Namespaces)}}})
	}
	nsSels = append(nsSels, sa.NamespaceSelectors...)
	sel, exact := anyOf(nsSels)
	spec.NamespaceSelector = sel
	if !exact {
		c.warn(ref, field, "MetalLB takes Services from a namespace any of namespaces and namespaceSelectors match; berth's one namespaceSelector "+
			"cannot say that, so the pool takes Services only from namespaces all of them match: give those namespaces a common label and select it")
	}
	sel, exact = anyOf(sa.ServiceSelectors)
	spec.ServiceSelector = sel
	if !exact {
		c.warn(ref, field+".serviceSelectors", "MetalLB takes Services any of the selectors match; berth's one serviceSelector cannot say that, "+
			"so the pool takes only Services all of them match: give those Services a common label and select it")
	}
	return notes
}
