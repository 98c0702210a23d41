// Package bgp carries out what the speaker decides over BGP: it embeds a GoBGP v3 server
// (github.com/osrg/gobgp/v3) that holds sessions with the configured peers and advertises
// the configured paths, each only to the peers it names, and reports what is in place.
//
// The Server is an executor: SetPeers and SetPaths take the whole desired state, compare it
// with what is installed and change only the difference; Status reports the sessions as
// GoBGP sees them. It never decides anything, and never imports the speaker.
//
// # How a path reaches only its peers
//
// GoBGP v3 applies per-neighbour policies only to route-server clients; every other peer
// gets the global export policy. So each installed path carries internal marker large
// communities (4294967295:peer:group, one per peer it goes to), and the global export
// policy holds one statement per (peer, attribute group): "to this neighbour, a path with
// this marker: add the group's communities and large communities, set its LOCAL_PREF,
// strip the markers, next hop self, accept"; anything else is rejected. Because the
// policy looks at the path's own attributes and never changes for an installed marker,
// GoBGP's "was the old path sent to this peer?" check sees the truth, and moving a prefix
// away from a peer withdraws it there without touching the peers that keep it (they get
// an identical UPDATE). LOCAL_PREF reaches iBGP peers only: GoBGP strips it for eBGP.
//
// The global import policy accepts only local paths: nothing received is ever installed,
// so nothing learned is forwarded.
//
// # Sessions
//
// Each peer is one GoBGP neighbour carrying the unicast family of its address (IPv4
// unicast on IPv4 sessions, IPv6 unicast on IPv6 sessions), so the next hop of every path
// is this node's address on that session (next-hop-self). A changed peer is deleted and
// added again: only its session resets. TCP-MD5 is set on the dialling socket and, when
// the server listens, on the listener for that peer's address, so either side may open
// the session; this needs plain TCP listeners (`godebug multipathtcp=0`, DESIGN.md).
//
// Reconnects back off exponentially: consecutive failed dials, connections GoBGP closes
// with a NOTIFICATION before they are established (a bad OPEN, a wrong AS) and sessions
// that die young (under a minute) double GoBGP's ConnectRetry, from Peer.ConnectTime up to
// MaxConnectRetry, and PeerStatus shows the interval in use. GoBGP reads ConnectRetry only
// when its connect loop starts, so a longer interval for a peer that is not established
// deletes and adds its neighbour again (at most once per current interval). Once the
// session is up (and, after drops, has stayed up a minute) the interval goes back with
// UpdatePeer, which does not reset it. What GoBGP v3 does not let us change: it waits a fixed 5 s in Idle after a
// session drops, and dials 1–2 s after entering Active, whatever the timers say; its API
// reports neither failed dials nor why a session went down, so those come from its log.
//
// BFD is not available: GoBGP v3 has none (it arrived in v4). A peer that dies without
// closing its socket is noticed by the hold timer only.
//
// # Lifetime
//
// GoBGP v3's Serve loop never returns: a stopped Server leaves that goroutine behind. GoBGP
// also keeps its route selection options in package variables; berth leaves them at their
// defaults, but a process should run one Server.
package bgp
