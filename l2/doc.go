// Package l2 makes this node answer ARP and NDP for the load-balancer IPs it owns on a
// shared L2 segment, and announces them with gratuitous ARP and unsolicited neighbour
// advertisements when it takes them. It carries out what the speaker decided (which node
// owns which IP) and reports what it saw; it never decides ownership itself.
//
// The Announcer's loop owns all sockets and addresses. Set hands it the whole desired set;
// the loop resolves the interfaces (plan), compares with what it answers for (diff) and
// changes only the difference. One reader goroutine per socket answers requests against an
// immutable set of owned IPs that the loop swaps atomically, so dropping an IP stops the
// answers with the very next packet.
//
// Linux facts this package is built on (DESIGN.md, research/netlab.md §4):
//   - A client re-validates a STALE neighbour with a unicast NS to the LB IP itself. The
//     kernel delivers that packet only if the IP is local, so each owned IPv6 LB IP is put
//     on lo as a /128 nodad, and the NDP socket listens on "::" (ndp.Unspecified). The
//     kernel does not answer the NS itself: an address on lo is not an address of the
//     interface the NS came in on.
//   - IPv4 LB IPs never go on lo: with the default arp_ignore=0 Linux answers ARP on every
//     interface for every local address, and would keep answering after the speaker died.
//   - Addresses berth puts on lo carry a marker (see addrProto) so that a restarted
//     speaker removes what a dead one left behind, and never touches anyone else's.
package l2
