package speaker

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/berthlb/berth/datapath"
)

// ProxyNode is another node as a target of Proxy-mode traffic.
type ProxyNode struct {
	Name  string
	Addrs []netip.Addr
	// Healthy says its kube-proxy answers its health check (or was not checked yet).
	Healthy bool
}

// ProxyFrontends are the Proxy-mode frontends of every node: each Service port on each
// Proxy-mode IP, with where a new connection arriving at this node goes.
//
//   - externalTrafficPolicy Local: this node's endpoints for the port, which see the
//     client's address. Only nodes with one announce such an IP; elsewhere the frontend
//     drops.
//   - Cluster: this node's endpoints, and the NodePort of every other healthy node
//     (masqueraded, so the reply comes back here), each node getting one share as a
//     cloud load balancer would: a remote node's NodePort is listed once per local
//     endpoint.
//
// Ready endpoints are used; serving terminating ones only when there is no ready one
// here and no other node to send to. A Service with loadBalancerSourceRanges lets in only clients in those of the IP's
// family (kube-proxy does not enforce them for Proxy-mode IPs). Every node programs every
// frontend, announcing or not, so that taking an IP over needs no rule change.
//
// Two Services claiming the same IP and port (a stale ingress during a move, a status
// written by someone else) would make the table refuse both: the first in namespace and
// name order keeps the frontend, the others are returned as conflicts.
func ProxyFrontends(d Decisions, others []ProxyNode) (out []datapath.ProxyFrontend, conflicts []string) {
	seen := map[datapath.Frontend]string{}
	for _, sd := range d.Services {
		for _, ip := range sd.IPs {
			if !ip.Proxy || ip.Pool == "" {
				continue
			}
			for _, p := range sd.Ports {
				proto, ok := protocols[p.Protocol]
				if !ok || p.Port == 0 {
					continue
				}
				fe := datapath.Frontend{IP: ip.IP, Protocol: proto, Port: p.Port}
				if first, ok := seen[fe]; ok {
					conflicts = append(conflicts, fmt.Sprintf("%s/%s %s %s port %d, held by %s", sd.Namespace, sd.Name, ip.IP, p.Protocol, p.Port, first))
					continue
				}
				seen[fe] = sd.Namespace + "/" + sd.Name
				out = append(out, datapath.ProxyFrontend{
					Frontend:        fe,
					Backends:        proxyBackends(ip.IP.Is4(), p, sd.TrafficPolicy, sd.Local, others),
					RestrictSources: len(sd.SourceRanges) > 0,
					SourceRanges:    rangesOf(ip.IP.Is4(), sd.SourceRanges),
				})
			}
		}
	}
	return out, conflicts
}

// rangesOf are the source ranges of one family: an IPv4 IP lets in the IPv4 ranges only,
// so a Service that lists only IPv6 ranges lets no IPv4 client in.
func rangesOf(v4 bool, ranges []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range ranges {
		if r.Addr().Unmap().Is4() == v4 {
			out = append(out, r)
		}
	}
	return out
}

func proxyBackends(v4 bool, p Port, policy TrafficPolicy, local []LocalEndpoint, others []ProxyNode) []datapath.Backend {
	var ready, serving []datapath.Backend
	for _, e := range local {
		if e.PortName != p.Name || e.Addr.Addr().Is4() != v4 {
			continue
		}
		b := datapath.Backend{Addr: e.Addr}
		if e.Ready {
			ready = append(ready, b)
		} else {
			serving = append(serving, b)
		}
	}
	var remote []datapath.Backend
	if policy != TrafficPolicyLocal && p.NodePort != 0 {
		for _, n := range others {
			if !n.Healthy {
				continue
			}
			if i := slices.IndexFunc(n.Addrs, func(a netip.Addr) bool { return a.Is4() == v4 }); i >= 0 {
				remote = append(remote, datapath.Backend{Addr: netip.AddrPortFrom(n.Addrs[i], p.NodePort), Masquerade: true})
			}
		}
	}
	// Terminating endpoints only when nothing else can take it: for Cluster, the other
	// nodes' kube-proxy reaches ready endpoints anywhere.
	out := ready
	if len(out) == 0 && len(remote) == 0 {
		out = serving
	}
	slices.SortFunc(out, func(a, b datapath.Backend) int { return a.Addr.Compare(b.Addr) })
	out = slices.Compact(out)
	if len(out) > datapath.MaxBackends {
		out = out[:datapath.MaxBackends]
	}
	share := max(1, len(out))
	if len(out)+share*len(remote) > datapath.MaxBackends {
		share = 1
	}
	for _, b := range remote {
		for range share {
			if len(out) < datapath.MaxBackends {
				out = append(out, b)
			}
		}
	}
	return out
}

// proxyNodes are the nodes other than self that may take Proxy-mode traffic: not
// excluded, with healthy saying which kube-proxies answer.
func proxyNodes(nodes []Node, self string, healthy func(string) bool) []ProxyNode {
	var out []ProxyNode
	for _, n := range nodes {
		if n.Name == self || n.Excluded || len(n.Addrs) == 0 {
			continue
		}
		out = append(out, ProxyNode{Name: n.Name, Addrs: n.Addrs, Healthy: healthy(n.Name)})
	}
	slices.SortFunc(out, func(a, b ProxyNode) int { return cmp.Compare(a.Name, b.Name) })
	return out
}
