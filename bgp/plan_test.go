package bgp

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var attrsCmp = cmp.AllowUnexported(attrs{}, ribEntry{}, marker{}, peerDiff{}, ribDiff{}, prefixPeer{})

func TestMergePaths(t *testing.T) {
	p1, p6 := pfx("203.0.113.1/32"), pfx("2001:db8:113::1/128")
	tests := []struct {
		name    string
		paths   []Path
		want    wanted
		wantErr []netip.Prefix // prefixes reported invalid
	}{
		{name: "empty", paths: nil, want: wanted{}},
		{name: "one path, two peers",
			paths: []Path{{Prefix: p1, Peers: []string{"a", "b"}, Communities: []uint32{2, 1, 2}, LocalPref: 50}},
			want: wanted{
				{p1, "a"}: {communities: []uint32{1, 2}, localPref: 50},
				{p1, "b"}: {communities: []uint32{1, 2}, localPref: 50}}},
		{name: "same prefix, different peers keep their own attributes",
			paths: []Path{
				{Prefix: p1, Peers: []string{"a"}, Communities: []uint32{1}},
				{Prefix: p1, Peers: []string{"b"}, LargeCommunities: [][3]uint32{{1, 2, 3}}},
			},
			want: wanted{{p1, "a"}: {communities: []uint32{1}}, {p1, "b"}: {large: [][3]uint32{{1, 2, 3}}}}},
		{name: "same prefix and peer merge: union of communities, highest LOCAL_PREF",
			paths: []Path{
				{Prefix: p6, Peers: []string{"a"}, Communities: []uint32{3}, LargeCommunities: [][3]uint32{{9, 9, 9}}, LocalPref: 100},
				{Prefix: p6, Peers: []string{"a"}, Communities: []uint32{1, 3}, LargeCommunities: [][3]uint32{{1, 1, 1}, {9, 9, 9}}, LocalPref: 300},
				{Prefix: p6, Peers: []string{"a"}, LocalPref: 200},
			},
			want: wanted{{p6, "a"}: {communities: []uint32{1, 3}, large: [][3]uint32{{1, 1, 1}, {9, 9, 9}}, localPref: 300}}},
		{name: "no peers: nothing to advertise",
			paths: []Path{{Prefix: p1}},
			want:  wanted{}},
		{name: "invalid paths are left out",
			paths: []Path{
				{Prefix: pfx("203.0.113.1/24"), Peers: []string{"a"}},
				{Prefix: netip.Prefix{}, Peers: []string{"a"}},
				{Prefix: p1, Peers: []string{""}},
				{Prefix: p6, Peers: []string{"a"}},
			},
			want:    wanted{{p6, "a"}: {}},
			wantErr: []netip.Prefix{pfx("203.0.113.1/24"), {}, p1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mergePaths(tt.paths)
			if d := cmp.Diff(tt.want, got, attrsCmp, netipEqual); d != "" {
				t.Errorf("mergePaths() (-want +got):\n%s", d)
			}
			var bad []netip.Prefix
			for _, e := range unjoin(err) {
				var pe *PathError
				if !errors.As(e, &pe) {
					t.Errorf("error %v is not a *PathError", e)
					continue
				}
				bad = append(bad, pe.Prefix)
			}
			if d := cmp.Diff(tt.wantErr, bad, netipEqual); d != "" {
				t.Errorf("mergePaths() invalid prefixes (-want +got):\n%s\nerror: %v", d, err)
			}
		})
	}
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// counter numbers names and attribute sets in order of first use, as the Server does.
type counter struct {
	next   uint32
	peers  map[string]uint32
	groups map[string]uint32
}

func newCounter() *counter { return &counter{peers: map[string]uint32{}, groups: map[string]uint32{}} }

func (c *counter) peer(n string) uint32 {
	if id, ok := c.peers[n]; ok {
		return id
	}
	c.next++
	c.peers[n] = c.next
	return c.next
}

func (c *counter) group(a attrs) uint32 {
	if id, ok := c.groups[a.key()]; ok {
		return id
	}
	c.next++
	c.groups[a.key()] = c.next
	return c.next
}

func TestRIBOfAndDiff(t *testing.T) {
	c := newCounter()
	p1, p2, p3 := pfx("203.0.113.1/32"), pfx("203.0.113.2/32"), pfx("203.0.113.3/32")
	ida, idb := c.peer("a"), c.peer("b")
	g1 := c.group(attrs{communities: []uint32{1}})
	g0 := c.group(attrs{})
	installed := ribOf(wanted{
		{p1, "a"}: {communities: []uint32{1}}, {p1, "b"}: {},
		{p2, "a"}: {},
		{p3, "b"}: {},
	}, c.peer, c.group)
	want := map[netip.Prefix]ribEntry{
		p1: {markers: []marker{{ida, g1}, {idb, g0}}},
		p2: {markers: []marker{{ida, g0}}},
		p3: {markers: []marker{{idb, g0}}},
	}
	if d := cmp.Diff(want, installed, attrsCmp, netipEqual); d != "" {
		t.Fatalf("ribOf() (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]marker{{ida, g1}, {ida, g0}, {idb, g0}}, markersOf(installed), attrsCmp); d != "" {
		t.Errorf("markersOf() (-want +got):\n%s", d)
	}
	desired := ribOf(wanted{
		{p1, "a"}: {communities: []uint32{1}}, {p1, "b"}: {}, // unchanged
		{p2, "b"}: {}, // moved to b
	}, c.peer, c.group)
	got := diffRIB(installed, desired)
	if d := cmp.Diff(ribDiff{put: []netip.Prefix{p2}, withdraw: []netip.Prefix{p3}}, got, attrsCmp, netipEqual); d != "" {
		t.Errorf("diffRIB() (-want +got):\n%s", d)
	}
	if d := diffRIB(desired, desired); len(d.put)+len(d.withdraw) != 0 {
		t.Errorf("diffRIB(x, x) = %+v, want nothing", d)
	}
	gshut := map[netip.Prefix]ribEntry{p1: {markers: desired[p1].markers, gshut: true}}
	if d := diffRIB(map[netip.Prefix]ribEntry{p1: desired[p1]}, gshut); !slices.Equal(d.put, []netip.Prefix{p1}) {
		t.Errorf("diffRIB() of a GRACEFUL_SHUTDOWN change = %+v, want %s re-advertised", d, p1)
	}
}

func TestAttrsKey(t *testing.T) {
	a := attrsOf(Path{Communities: []uint32{2, 1}, LargeCommunities: [][3]uint32{{3, 2, 1}, {1, 2, 3}}, LocalPref: 7})
	b := attrsOf(Path{Communities: []uint32{1, 2, 2}, LargeCommunities: [][3]uint32{{1, 2, 3}, {3, 2, 1}}, LocalPref: 7})
	if a.key() != b.key() {
		t.Errorf("keys differ for equal sets: %q, %q", a.key(), b.key())
	}
	for _, other := range []attrs{{}, {localPref: 7}, {communities: []uint32{1, 2}}, attrsOf(Path{Communities: []uint32{1, 2}, LocalPref: 7})} {
		if other.key() == a.key() {
			t.Errorf("attrs %+v and %+v share key %q", other, a, a.key())
		}
	}
	if want := "0:1,0:2,|1:2:3,3:2:1,|7"; a.key() != want {
		t.Errorf("key = %q, want %q", a.key(), want)
	}
}

func TestDiffPeers(t *testing.T) {
	addr := netip.MustParseAddr
	peer := func(name, a string) Peer {
		return Peer{Name: name, Address: addr(a), MyASN: 64512, PeerASN: 64500}
	}
	a, b, c := peer("a", "198.18.0.1"), peer("b", "198.18.0.2"), peer("c", "2001:db8:18::1")
	slower := b
	slower.HoldTime = 30 * time.Second
	bad := Peer{Name: "b", Address: addr("198.18.0.2")} // no ASNs
	tests := []struct {
		name      string
		current   map[string]Peer
		desired   []Peer
		listening bool
		want      peerDiff
		wantErr   []string // peer names reported
	}{
		{name: "add all", desired: []Peer{c, a, b},
			want: peerDiff{add: []Peer{a, b, c}}},
		{name: "nothing changed", current: map[string]Peer{"a": a, "b": b}, desired: []Peer{b, a},
			want: peerDiff{}},
		{name: "add, change, remove",
			current: map[string]Peer{"a": a, "b": b},
			desired: []Peer{slower, c},
			want:    peerDiff{add: []Peer{c}, change: []Peer{slower}, remove: []string{"a"}}},
		{name: "an invalid peer keeps its running namesake",
			current: map[string]Peer{"a": a, "b": b},
			desired: []Peer{a, bad},
			want:    peerDiff{},
			wantErr: []string{"b"}},
		{name: "duplicate names and addresses",
			desired: []Peer{a, a, peer("d", "198.18.0.1")},
			want:    peerDiff{add: []Peer{a}},
			wantErr: []string{"a", "d"}},
		{name: "a new peer may not take a kept peer's address",
			current: map[string]Peer{"b": b},
			desired: []Peer{bad, peer("e", "198.18.0.2")},
			want:    peerDiff{},
			wantErr: []string{"b", "e"}},
		{name: "passive needs a listener",
			desired: []Peer{{Name: "p", Address: addr("198.18.0.9"), MyASN: 1, PeerASN: 2, Passive: true}},
			want:    peerDiff{},
			wantErr: []string{"p"}},
		{name: "passive with a listener",
			desired:   []Peer{{Name: "p", Address: addr("198.18.0.9"), MyASN: 1, PeerASN: 2, Passive: true}},
			listening: true,
			want:      peerDiff{add: []Peer{{Name: "p", Address: addr("198.18.0.9"), MyASN: 1, PeerASN: 2, Passive: true}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := diffPeers(tt.current, tt.desired, tt.listening)
			if d := cmp.Diff(tt.want, got, attrsCmp, netipEqual); d != "" {
				t.Errorf("diffPeers() (-want +got):\n%s", d)
			}
			var names []string
			for _, e := range unjoin(err) {
				var pe *PeerError
				if !errors.As(e, &pe) {
					t.Errorf("error %v is not a *PeerError", e)
					continue
				}
				names = append(names, pe.Name)
			}
			slices.Sort(names)
			if d := cmp.Diff(tt.wantErr, names); d != "" {
				t.Errorf("diffPeers() errors (-want +got):\n%s\n%v", d, err)
			}
		})
	}
}

func TestPeerValidate(t *testing.T) {
	addr := netip.MustParseAddr
	ok := Peer{Name: "p", Address: addr("198.18.0.1"), MyASN: 64512, PeerASN: 64500}
	tests := []struct {
		name   string
		change func(*Peer)
		valid  bool
	}{
		{"minimal", func(*Peer) {}, true},
		{"IPv6 with source and everything", func(p *Peer) {
			p.Address, p.SourceAddress = addr("2001:db8:18::1"), addr("2001:db8:18::11")
			p.HoldTime, p.KeepaliveTime, p.ConnectTime = 9*time.Second, 3*time.Second, time.Second
			p.EBGPMultihop, p.Password, p.GracefulRestart, p.RestartTime = 2, "s3cret", true, 60*time.Second
		}, true},
		{"no name", func(p *Peer) { p.Name = "" }, false},
		{"no address", func(p *Peer) { p.Address = netip.Addr{} }, false},
		{"unspecified address", func(p *Peer) { p.Address = addr("::") }, false},
		{"zone", func(p *Peer) { p.Address = addr("fe80::1%eth0") }, false},
		{"IPv4-mapped", func(p *Peer) { p.Address = addr("::ffff:198.18.0.1") }, false},
		{"no peer ASN", func(p *Peer) { p.PeerASN = 0 }, false},
		{"source of the other family", func(p *Peer) { p.SourceAddress = addr("2001:db8::1") }, false},
		{"hold time below 3 s", func(p *Peer) { p.HoldTime = 2 * time.Second }, false},
		{"keepalive not below hold time", func(p *Peer) { p.HoldTime, p.KeepaliveTime = 9*time.Second, 9*time.Second }, false},
		{"keepalive not below the default hold time", func(p *Peer) { p.KeepaliveTime = 90 * time.Second }, false},
		{"connect time above the backoff cap", func(p *Peer) { p.ConnectTime = 3 * time.Minute }, false},
		{"restart time beyond 12 bits", func(p *Peer) { p.RestartTime = 4096 * time.Second }, false},
		{"password too long", func(p *Peer) { p.Password = string(make([]byte, 81)) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok
			tt.change(&p)
			if err := p.validate(true); (err == nil) != tt.valid {
				t.Errorf("validate() = %v, want valid %t", err, tt.valid)
			}
		})
	}
}
