package speaker

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/config"
)

// decisionOpts let cmp compare whole decisions: advertisements by identity, addresses by value.
func decisionOpts() cmp.Options {
	return cmp.Options{
		cmp.Comparer(func(a, b *config.BGPAdvertisement) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	}
}

func pool(name string, ranges ...string) *config.Pool {
	p := &config.Pool{Name: name}
	for _, s := range ranges {
		r, err := config.ParseRange(s)
		if err != nil {
			panic(fmt.Sprintf("pool %q: %v", name, err))
		}
		p.Ranges = append(p.Ranges, r)
	}
	return p
}

// sel parses a label selector; "" selects everything.
func sel(s string) labels.Selector {
	out, err := labels.Parse(s)
	if err != nil {
		panic(fmt.Sprintf("selector %q: %v", s, err))
	}
	return out
}

func target(pools []string, services, nodes string) config.Target {
	return config.Target{Pools: pools, ServiceSelector: sel(services), NodeSelector: sel(nodes)}
}

func peer(name, nodes string) *config.Peer {
	return &config.Peer{Name: name, NodeSelector: sel(nodes)}
}

func ep(node string) Endpoint { return Endpoint{Node: node, Ready: true, Serving: true} }

func terminating(node string) Endpoint {
	return Endpoint{Node: node, Serving: true, Terminating: true}
}

func ingress(ips ...string) []Ingress {
	var out []Ingress
	for _, s := range ips {
		out = append(out, Ingress{IP: netip.MustParseAddr(s)})
	}
	return out
}

// summary is a decision reduced to what the table rows name.
type summary struct {
	IP, Pool  string
	BGP       Reason
	Routes    []string // "advertisement:peer,peer"
	L2        Reason
	Owner     string
	Next      string
	Interface []string
}

func summarise(t *testing.T, ds []IPDecision) []summary {
	t.Helper()
	var out []summary
	for _, d := range ds {
		if d.BGP.Announce != (d.BGP.Reason == Announced) || d.L2.Announce != (d.L2.Reason == Elected) {
			t.Errorf("%s: Announce disagrees with Reason: BGP %v %s, L2 %v %s",
				d.IP, d.BGP.Announce, d.BGP.Reason, d.L2.Announce, d.L2.Reason)
		}
		s := summary{IP: d.IP.String(), Pool: d.Pool, BGP: d.BGP.Reason, L2: d.L2.Reason,
			Owner: d.L2.Owner, Next: d.L2.Next, Interface: d.L2.Interfaces}
		for _, r := range d.BGP.Routes {
			s.Routes = append(s.Routes, r.Advertisement.Name+":"+strings.Join(r.Peers, ","))
		}
		out = append(out, s)
	}
	return out
}
