package bgp

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// attrs are the attributes a prefix carries to one peer: communities and large
// communities sorted and without duplicates.
type attrs struct {
	communities []uint32
	large       [][3]uint32
	localPref   uint32
}

// key identifies an attribute set; equal attrs have equal keys.
func (a attrs) key() string { return string(a.appendKey(nil)) }

// appendKey appends a's key to b: the RIB is planned for every path on every change, and
// a lookup by string(b) allocates nothing.
func (a attrs) appendKey(b []byte) []byte {
	for _, c := range a.communities {
		b = strconv.AppendUint(b, uint64(c>>16), 10)
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(c&0xffff), 10)
		b = append(b, ',')
	}
	b = append(b, '|')
	for _, l := range a.large {
		b = strconv.AppendUint(b, uint64(l[0]), 10)
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(l[1]), 10)
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(l[2]), 10)
		b = append(b, ',')
	}
	b = append(b, '|')
	return strconv.AppendUint(b, uint64(a.localPref), 10)
}

// merge adds b's communities to a's and keeps the higher LOCAL_PREF.
func (a attrs) merge(b attrs) attrs {
	return attrs{
		communities: sortedUnique(slices.Concat(a.communities, b.communities), cmp.Compare[uint32]),
		large:       sortedUnique(slices.Concat(a.large, b.large), compareLarge),
		localPref:   max(a.localPref, b.localPref),
	}
}

func attrsOf(p Path) attrs {
	return attrs{
		communities: sortedUniqueOf(p.Communities, cmp.Compare[uint32]),
		large:       sortedUniqueOf(p.LargeCommunities, compareLarge),
		localPref:   p.LocalPref,
	}
}

// sortedUniqueOf is s sorted and without repeats: s itself when it already is (paths of
// one advertisement share its lists, and this runs for every path on every change), else
// a sorted copy. Nobody may modify the result.
func sortedUniqueOf[T comparable](s []T, c func(a, b T) int) []T {
	if len(s) == 0 {
		return nil
	}
	for i := 1; i < len(s); i++ {
		if c(s[i-1], s[i]) >= 0 {
			return sortedUnique(slices.Clone(s), c)
		}
	}
	return s
}

func compareLarge(a, b [3]uint32) int {
	return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]), cmp.Compare(a[2], b[2]))
}

func sortedUnique[T comparable](s []T, c func(a, b T) int) []T {
	slices.SortFunc(s, c)
	s = slices.Compact(s)
	if len(s) == 0 {
		return nil
	}
	return s
}

// wanted is what SetPaths asks for: per prefix and peer name, the attributes. One flat
// map: a map per prefix was most of the speaker's garbage at 10,000 Services.
type wanted map[prefixPeer]attrs

type prefixPeer struct {
	prefix netip.Prefix
	peer   string
}

// mergePaths validates paths and merges them by prefix and peer: two paths for the same
// prefix and peer send one route whose communities are the union and whose LOCAL_PREF is
// the higher. A path naming no peer advertises nothing. Invalid paths are left out and
// reported.
func mergePaths(paths []Path) (wanted, error) {
	w := make(wanted, len(paths))
	var errs []error
	for _, p := range paths {
		if err := p.validate(); err != nil {
			errs = append(errs, &PathError{Prefix: p.Prefix, Err: err})
			continue
		}
		a := attrsOf(p)
		for _, name := range p.Peers {
			k := prefixPeer{p.Prefix, name}
			if have, ok := w[k]; ok {
				w[k] = have.merge(a)
			} else {
				w[k] = a
			}
		}
	}
	return w, errors.Join(errs...)
}

// marker tags an installed path for one peer and one attribute group. It travels in the
// RIB as the large community markerASN:peer:group and is stripped by the export policy.
type marker struct{ peer, group uint32 }

// markerASN is the global administrator of marker large communities: 4294967295 is
// reserved (RFC 7300), so no real large community uses it.
const markerASN = 4294967295

func (m marker) community() [3]uint32 { return [3]uint32{markerASN, m.peer, m.group} }

func compareMarker(a, b marker) int {
	return cmp.Or(cmp.Compare(a.peer, b.peer), cmp.Compare(a.group, b.group))
}

// ribEntry is what the RIB holds for one prefix: its markers (sorted) and whether it
// carries GRACEFUL_SHUTDOWN.
type ribEntry struct {
	markers []marker
	gshut   bool
}

func (e ribEntry) equal(f ribEntry) bool {
	return e.gshut == f.gshut && slices.Equal(e.markers, f.markers)
}

// ribOf turns the wanted routes into RIB entries, numbering peer names and attribute
// groups with peerID and groupID.
func ribOf(w wanted, peerID func(string) uint32, groupID func(attrs) uint32) map[netip.Prefix]ribEntry {
	rib := make(map[netip.Prefix]ribEntry, len(w))
	for k, a := range w {
		e := rib[k.prefix]
		e.markers = append(e.markers, marker{peer: peerID(k.peer), group: groupID(a)})
		rib[k.prefix] = e
	}
	for _, e := range rib {
		slices.SortFunc(e.markers, compareMarker)
	}
	return rib
}

// ribDiff is what SetPaths changes: prefixes to add or re-add (new or changed), and
// prefixes to withdraw, both sorted.
type ribDiff struct {
	put, withdraw []netip.Prefix
}

func diffRIB(installed, desired map[netip.Prefix]ribEntry) ribDiff {
	var d ribDiff
	for p, e := range desired {
		if have, ok := installed[p]; !ok || !have.equal(e) {
			d.put = append(d.put, p)
		}
	}
	for p := range installed {
		if _, ok := desired[p]; !ok {
			d.withdraw = append(d.withdraw, p)
		}
	}
	slices.SortFunc(d.put, comparePrefix)
	slices.SortFunc(d.withdraw, comparePrefix)
	return d
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

// markersOf lists the distinct markers of a RIB, sorted.
func markersOf(rib map[netip.Prefix]ribEntry) []marker {
	seen := map[marker]bool{}
	var out []marker
	for _, e := range rib {
		for _, m := range e.markers {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	slices.SortFunc(out, compareMarker)
	return out
}

// peerDiff is what SetPeers changes, each list sorted by name. A changed peer is removed
// and added again.
type peerDiff struct {
	add, change []Peer
	remove      []string
}

// diffPeers validates desired and compares it with current. Invalid peers and later
// duplicates (by name or address) are reported and left out; an invalid peer that has a
// configured namesake leaves it as it is.
func diffPeers(current map[string]Peer, desired []Peer, listening bool) (peerDiff, error) {
	sorted := slices.Clone(desired)
	slices.SortStableFunc(sorted, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	var errs []error
	want := map[string]Peer{}
	keep := map[string]bool{} // invalid peers whose current config stays
	addrs := map[netip.Addr]string{}
	for _, p := range sorted {
		if _, dup := want[p.Name]; dup || keep[p.Name] {
			errs = append(errs, &PeerError{Name: p.Name, Err: errors.New("name given twice")})
			continue
		}
		if err := p.validate(listening); err != nil {
			errs = append(errs, &PeerError{Name: p.Name, Err: err})
			keep[p.Name] = true
			continue
		}
		if other, dup := addrs[p.Address]; dup {
			errs = append(errs, &PeerError{Name: p.Name, Err: fmt.Errorf("address %s already used by peer %q", p.Address, other)})
			keep[p.Name] = true
			continue
		}
		addrs[p.Address] = p.Name
		want[p.Name] = p
	}
	// A kept peer holds its address; a new peer may not take it.
	for name := range keep {
		if cur, ok := current[name]; ok {
			if other, clash := addrs[cur.Address]; clash {
				errs = append(errs, &PeerError{Name: other, Err: fmt.Errorf("address %s still used by peer %q", cur.Address, name)})
				delete(want, other)
			}
		}
	}
	var d peerDiff
	for _, name := range slices.Sorted(maps.Keys(want)) {
		p := want[name]
		cur, exists := current[name]
		switch {
		case !exists:
			d.add = append(d.add, p)
		case cur != p:
			d.change = append(d.change, p)
		}
	}
	for name := range current {
		if _, ok := want[name]; !ok && !keep[name] {
			d.remove = append(d.remove, name)
		}
	}
	slices.Sort(d.remove)
	return d, errors.Join(errs...)
}
