package allocator

import (
	"cmp"
	"net/netip"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

// Key names a Service.
type Key struct{ Namespace, Name string }

func (k Key) String() string { return k.Namespace + "/" + k.Name }

func (k Key) compare(o Key) int {
	return cmp.Or(strings.Compare(k.Namespace, o.Namespace), strings.Compare(k.Name, o.Name))
}

// FamilyPolicy is a Service's spec.ipFamilyPolicy, with Kubernetes' values.
type FamilyPolicy string

// Family policies. The empty policy means SingleStack.
const (
	SingleStack      FamilyPolicy = "SingleStack"
	PreferDualStack  FamilyPolicy = "PreferDualStack"
	RequireDualStack FamilyPolicy = "RequireDualStack"
)

// Port is one port of a Service, as far as sharing an IP is concerned.
type Port struct {
	// Protocol is "TCP", "UDP" or "SCTP"; empty means TCP, as in Kubernetes.
	Protocol string
	Port     int32
}

// Request is what the allocator needs to know about a Service. The provider builds it
// from the Service and its Namespace. The allocator keeps the label sets and ports of the
// last Request it acted on: do not modify them afterwards.
type Request struct {
	Key Key
	// Created is the Service's creationTimestamp: ClaimAll lets the older Service keep
	// an IP two Services claim.
	Created time.Time
	// ServiceLabels and NamespaceLabels are matched against the pools' selectors.
	ServiceLabels, NamespaceLabels labels.Set
	// Families is spec.ipFamilies, primary first.
	Families []config.Family
	Policy   FamilyPolicy
	// RequestedIPs come from spec.loadBalancerIP and the berth.dev/load-balancer-ips
	// annotation: at most one per family.
	RequestedIPs []netip.Addr
	// Pool is the pool named by the berth.dev/pool annotation, if any.
	Pool string
	// SharingKey is the berth.dev/sharing-key annotation: Services with the same key may
	// share an IP when their ports do not overlap.
	SharingKey string
	Ports      []Port
	// LocalTraffic is true for externalTrafficPolicy: Local. Services sharing an IP must
	// agree on it, and with Local they must also select the same pods (Selector), since
	// only nodes with local endpoints announce the IP.
	LocalTraffic bool
	// Selector is the Service's pod selector in a canonical form (labels.Set.String()).
	Selector string
}

// Assignment is what a Service holds.
type Assignment struct {
	Pool string
	// IPs holds at most one address per family, in the order of the Service's families.
	IPs    []netip.Addr
	IPMode v1alpha1.IPMode
}

// wanted is a Request's families and requested IPs, checked and laid out by family.
type wanted struct {
	fams [2]config.Family
	// n is the number of families to allocate; the first required must be, the others
	// are best effort (PreferDualStack).
	n, required int
	// requested holds the requested IP of fams[i], or the zero Addr.
	requested    [2]netip.Addr
	anyRequested bool
}

// families returns the families to allocate, in a copy: slicing w.fams into an error
// message would move every wanted to the heap.
func (w *wanted) families() []config.Family { return append([]config.Family(nil), w.fams[:w.n]...) }

func (w *wanted) index(f config.Family) int {
	for i := range w.n {
		if w.fams[i] == f {
			return i
		}
	}
	return -1
}

func want(req *Request) (wanted, *Error) {
	var w wanted
	if req.Key.Name == "" {
		return w, invalid("the request names no Service")
	}
	if len(req.Families) < 1 || len(req.Families) > 2 {
		return w, invalid("the Service has %d IP families; want 1 or 2", len(req.Families))
	}
	for i, f := range req.Families {
		if f != config.IPv4 && f != config.IPv6 {
			return w, invalid("unknown IP family %d", int(f))
		}
		if i == 1 && f == req.Families[0] {
			return w, invalid("IP family %s is listed twice", f)
		}
		w.fams[i] = f
	}
	switch req.Policy {
	case "", SingleStack:
		w.n, w.required = 1, 1
	case PreferDualStack:
		w.n, w.required = len(req.Families), 1
	case RequireDualStack:
		if len(req.Families) != 2 {
			return w, invalid("ipFamilyPolicy RequireDualStack needs two IP families, the Service has %v", req.Families)
		}
		w.n, w.required = 2, 2
	default:
		return w, invalid("unknown ipFamilyPolicy %q", req.Policy)
	}
	for _, r := range req.RequestedIPs {
		if !r.IsValid() || r.Zone() != "" || r.Is4In6() {
			return w, invalid("requested IP %q is not a plain IPv4 or IPv6 address", r)
		}
		i := w.index(config.FamilyOf(r))
		if i < 0 {
			return w, invalid("requested IP %s is %s, but the Service's IP families are %v",
				r, config.FamilyOf(r), w.families())
		}
		if w.requested[i].IsValid() && w.requested[i] != r {
			return w, invalid("requested IPs %s and %s are both %s; at most one per family",
				w.requested[i], r, config.FamilyOf(r))
		}
		w.requested[i] = r
		w.anyRequested = true
	}
	return w, nil
}
