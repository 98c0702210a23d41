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
// Every Apply replaces the whole table in one netlink batch (add, delete, add the table,
// then sets with their elements, chains and rules), so the kernel never holds half of
// it. Run re-applies the last state when the table drifted (a rule deleted by hand).
package datapath
