package bgp

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// connectRetry is the reconnect interval after failures consecutive failures: base for
// the first, then doubling, at most MaxConnectRetry.
func connectRetry(base time.Duration, failures int) time.Duration {
	d := base
	for i := 1; i < failures && d < MaxConnectRetry; i++ {
		d *= 2
	}
	return min(d, MaxConnectRetry)
}

// What backoffStep decides.
type backoffAction int

const (
	backoffWait    backoffAction = iota // nothing to do now
	backoffRestart                      // delete and add the neighbour with the new interval
	backoffUpdate                       // UpdatePeer: GoBGP uses it when its connect loop next starts
)

// backoffStep decides how to move a peer's ConnectRetry from have to want. GoBGP reads
// ConnectRetry only when its connect loop starts (entering Active). For a peer that is
// not established, a longer interval restarts the loop by deleting and adding the
// neighbour, which nothing established can notice, but at most once per current interval
// (inLoop is how long the loop has run): a restarted loop dials 1–2 s later whatever the
// interval. A shorter interval, or any change while established, is an UpdatePeer (timers
// only: no reset) that applies after the session next drops. A session that is opening
// is left alone.
func backoffStep(state string, have, want, inLoop time.Duration) backoffAction {
	switch {
	case want == have:
		return backoffWait
	case state == StateEstablished:
		return backoffUpdate
	case state == StateOpenSent || state == StateOpenConfirm:
		return backoffWait
	case want < have:
		return backoffUpdate
	case inLoop < have:
		return backoffWait
	}
	return backoffRestart
}

// statusOf maps what GoBGP says about a peer (gp; nil before GoBGP lists it) and what
// the recorder saw into the peer's status. md5Trouble says the namespace's kernel has
// recently dropped segments for bad or missing TCP-MD5 signatures.
func statusOf(p Peer, gp *api.Peer, rec peerRecord, retry time.Duration, added time.Time, md5Trouble bool) PeerStatus {
	s := PeerStatus{
		Name: p.Name, Address: p.Address, State: StateIdle, Since: added,
		LastError: rec.lastError, Flaps: rec.flaps,
		ConnectRetry: retry, ConsecutiveFailures: rec.failures(),
	}
	if rec.state != "" {
		s.State = rec.state
	}
	if !rec.since.IsZero() && rec.since.After(added) {
		s.Since = rec.since
	}
	if gp != nil && gp.State != nil {
		s.State = sessionState(gp.State.SessionState)
	}
	if s.State == StateEstablished {
		if gp != nil && gp.Timers != nil && gp.Timers.State != nil {
			if up := gp.Timers.State.Uptime; up != nil && up.AsTime().After(added) {
				s.Since = up.AsTime()
			}
			s.HoldTime = time.Duration(gp.Timers.State.NegotiatedHoldTime) * time.Second
		}
	} else {
		s.AuthMismatchLikely = p.Password != "" && (rec.dialTimeouts >= 2 || md5Trouble)
	}
	return s
}

// advertised counts the prefixes of rib that go to peer id over a session of the given
// family: what the export policy lets through to it.
func advertised(rib map[netip.Prefix]ribEntry, id uint32, v4 bool) int {
	n := 0
	for p, e := range rib {
		if p.Addr().Is4() == v4 && slices.ContainsFunc(e.markers, func(m marker) bool { return m.peer == id }) {
			n++
		}
	}
	return n
}

// md5Drops sums the kernel's TCP-MD5 drop counters (TCPMD5NotFound, TCPMD5Unexpected,
// TCPMD5Failure) in /proc/net/netstat, which is per network namespace.
func md5Drops(netstat []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(netstat))
	var names []string
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "TcpExt:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		vals := f[1:]
		if len(vals) != len(names) {
			return 0, fmt.Errorf("netstat: %d TcpExt names, %d values", len(names), len(vals))
		}
		var sum uint64
		for i, n := range names {
			switch n {
			case "TCPMD5NotFound", "TCPMD5Unexpected", "TCPMD5Failure":
				v, err := strconv.ParseUint(vals[i], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("netstat %s: %w", n, err)
				}
				sum += v
			}
		}
		return sum, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("netstat: no TcpExt counters")
}
