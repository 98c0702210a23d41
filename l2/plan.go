package l2

import (
	"cmp"
	"maps"
	"net"
	"net/netip"
	"slices"
)

// Assignment is one IP this node answers for, and where.
type Assignment struct {
	IP         netip.Addr
	Interfaces []string // names to answer on; empty = DefaultInterfaces()
}

// ipSet is a set of IPs. A set published to a reader goroutine is never changed again.
type ipSet map[netip.Addr]struct{}

func (s ipSet) has(ip netip.Addr) bool { _, ok := s[ip]; return ok }

// only returns the IPs of s of one family (is4 true: IPv4).
func (s ipSet) only(is4 bool) ipSet {
	out := ipSet{}
	for ip := range s {
		if ip.Is4() == is4 {
			out[ip] = struct{}{}
		}
	}
	return out
}

// sorted returns the IPs in ascending order.
func (s ipSet) sorted() []netip.Addr {
	return slices.SortedFunc(maps.Keys(s), netip.Addr.Compare)
}

// pair is one IP answered on one interface.
type pair struct {
	Interface string
	IP        netip.Addr
}

func comparePairs(a, b pair) int {
	if c := a.IP.Compare(b.IP); c != 0 {
		return c
	}
	return cmp.Compare(a.Interface, b.Interface)
}

// lbIP returns ip in the form berth answers for, and false for an address no LB IP can
// be: invalid, unspecified, multicast, broadcast, loopback or link-local. An IPv4-mapped
// IPv6 address is its IPv4 address; a zone is dropped.
func lbIP(ip netip.Addr) (netip.Addr, bool) {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLoopback() ||
		ip.IsLinkLocalUnicast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, false
	}
	return ip, true
}

// plan resolves the wanted assignments against the host's links: which IPs to answer for
// on which interface. An assignment without interfaces goes to every link MatchDefault
// accepts; named interfaces are used when they exist and are usable (up, with carrier,
// broadcast-capable, with an Ethernet address), whatever their name. IPs that cannot be
// LB IPs are left out. Interfaces with nothing to answer for are absent.
func plan(want []Assignment, links []linkInfo) map[string]ipSet {
	byName := make(map[string]linkInfo, len(links))
	for _, l := range links {
		byName[l.Name] = l
	}
	defaults := defaultNames(links)
	out := map[string]ipSet{}
	for _, as := range want {
		ip, ok := lbIP(as.IP)
		if !ok {
			continue
		}
		names := as.Interfaces
		if len(names) == 0 {
			names = defaults
		}
		for _, n := range names {
			l, ok := byName[n]
			if !ok || !usable(l.Flags) || l.Flags&net.FlagBroadcast == 0 || len(l.MAC) != 6 {
				continue
			}
			if out[n] == nil {
				out[n] = ipSet{}
			}
			out[n][ip] = struct{}{}
		}
	}
	return out
}

// diff compares what is answered (cur) with what should be (next), both by interface
// name, and returns the pairs to start and to stop answering, sorted by IP then
// interface.
func diff(cur, next map[string]ipSet) (added, removed []pair) {
	for name, ips := range next {
		for ip := range ips {
			if !cur[name].has(ip) {
				added = append(added, pair{name, ip})
			}
		}
	}
	for name, ips := range cur {
		for ip := range ips {
			if !next[name].has(ip) {
				removed = append(removed, pair{name, ip})
			}
		}
	}
	slices.SortFunc(added, comparePairs)
	slices.SortFunc(removed, comparePairs)
	return added, removed
}

// union returns every IP answered anywhere.
func union(by map[string]ipSet) ipSet {
	out := ipSet{}
	for _, ips := range by {
		maps.Copy(out, ips)
	}
	return out
}

// group turns IPs by interface into assignments, one per IP, sorted by IP, with sorted
// interface names.
func group(by map[string]ipSet) []Assignment {
	ifs := map[netip.Addr][]string{}
	for name, ips := range by {
		for ip := range ips {
			ifs[ip] = append(ifs[ip], name)
		}
	}
	out := make([]Assignment, 0, len(ifs))
	for _, ip := range slices.SortedFunc(maps.Keys(ifs), netip.Addr.Compare) {
		names := ifs[ip]
		slices.Sort(names)
		out = append(out, Assignment{IP: ip, Interfaces: names})
	}
	return out
}

// normalize copies want with each IP in lbIP form and the invalid ones split off, so that
// callers keep no reference into what the loop reads.
func normalize(want []Assignment) (valid []Assignment, invalid []netip.Addr) {
	valid = make([]Assignment, 0, len(want))
	for _, as := range want {
		ip, ok := lbIP(as.IP)
		if !ok {
			invalid = append(invalid, as.IP)
			continue
		}
		valid = append(valid, Assignment{IP: ip, Interfaces: slices.Clone(as.Interfaces)})
	}
	return valid, invalid
}
