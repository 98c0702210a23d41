package lab

import (
	"net/netip"
	"testing"
)

// TestNodeAddressing: every node index Up accepts gets pod CIDRs inside the site's cluster
// CIDRs (what kube-proxy is told), gateways inside its own pod CIDRs, and nothing shared
// with another node.
func TestNodeAddressing(t *testing.T) {
	cluster := (&Network{}).ClusterCIDRs()
	seen := map[netip.Prefix]int{}
	for i := 1; i <= MaxNodes; i++ {
		n := newNode(i, "")
		for _, c := range []struct {
			cidr    netip.Prefix
			gateway netip.Addr
			cluster netip.Prefix
		}{
			{n.PodCIDR4, n.PodGateway4, cluster[0]},
			{n.PodCIDR6, n.PodGateway6, cluster[1]},
		} {
			if !c.cluster.Contains(c.cidr.Addr()) || c.cidr.Bits() < c.cluster.Bits() {
				t.Errorf("node %d: pod CIDR %s outside cluster CIDR %s", i, c.cidr, c.cluster)
			}
			if !c.cidr.Contains(c.gateway) {
				t.Errorf("node %d: gateway %s outside pod CIDR %s", i, c.gateway, c.cidr)
			}
			if other, ok := seen[c.cidr]; ok {
				t.Errorf("nodes %d and %d share pod CIDR %s", other, i, c.cidr)
			}
			seen[c.cidr] = i
		}
	}
}
