// Package datapath programs berth's own nftables table, `inet berth`, on a node. It
// carries out what the speaker decided and touches no other table.
//
// The front door: every LB IP in Desired.IPs accepts only its Service ports
// (Desired.Open), the replies of connections the node opened (conntrack established or
// related) and the ICMP that keeps the network working (errors; IPv6 neighbour discovery,
// which re-validates an owned /128 by unicast). Anything else to those IPs is dropped in
// prerouting after conntrack and before kube-proxy: the dropped packet's conntrack entry
// is never confirmed, so a port scan costs none, and a packet to a BGP-announced IPv4
// address that is not local is not routed back to the router until its TTL runs out.
//
// Proxy mode: each Service port of a Proxy-mode IP is a frontend whose new connections
// are DNATed to a random backend (this node's endpoints, other nodes' NodePorts with
// masquerade), optionally only from its source ranges.
//
// The first Apply builds the whole table in one netlink batch; later ones send only what
// changed, also in one batch, so the kernel never holds half of either. Run builds the
// table again when it drifted (a rule deleted by hand).
package datapath
