package netns

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
)

// NeighborMAC is the link-layer address ns's neighbour table holds for ip (what its
// next packet to ip is sent to), nil when it has none or the entry failed.
func (ns NS) NeighborMAC(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	out, err := ns.IP(ctx, "-j", "neigh", "show", "to", ip.String())
	if err != nil {
		return nil, err
	}
	var entries []struct {
		LLAddr string `json:"lladdr"`
	}
	if err := json.Unmarshal(out, &entries); err != nil {
		return nil, fmt.Errorf("neighbour %s in %s: %w", ip, ns, err)
	}
	for _, e := range entries {
		if e.LLAddr != "" {
			return net.ParseMAC(e.LLAddr)
		}
	}
	return nil, nil
}
