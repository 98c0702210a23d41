package config_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

func TestBuildPeer(t *testing.T) {
	type spec = v1alpha1.BGPPeerSpec
	tests := []struct {
		name string
		addr string // peerAddress; 192.0.2.1 when empty
		edit func(*spec)
		// want edits the defaulted Peer; when wantReason is set the peer must be left
		// out instead, with a message containing wantMsg.
		want       func(*config.Peer)
		wantReason config.Reason
		wantMsg    string
	}{
		{name: "defaults"},
		{name: "IPv6 peer", addr: "2001:db8::1"},
		{
			name: "every field",
			edit: func(s *spec) {
				s.MyASN, s.PeerASN = 4200000000, 65000
				s.PeerPort = 1179
				s.SourceAddress = "192.0.2.100"
				s.RouterID = "10.255.0.1"
				s.HoldTime, s.KeepaliveTime, s.ConnectTime = dur(30*time.Second), dur(5*time.Second), dur(2*time.Second)
				s.EBGPMultiHop = true
				s.Password = &v1alpha1.SecretKeyRef{Name: "bgp", Key: "password"}
				s.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true, RestartTime: dur(300 * time.Second)}
				s.NodeSelector = matchLabels("rack", "a")
			},
			want: func(p *config.Peer) {
				p.MyASN, p.PeerASN = 4200000000, 65000
				p.Port = 1179
				p.SourceAddress = netip.MustParseAddr("192.0.2.100")
				p.RouterID = netip.MustParseAddr("10.255.0.1")
				p.HoldTime, p.KeepaliveTime, p.ConnectTime = 30*time.Second, 5*time.Second, 2*time.Second
				p.EBGPMultiHop = true
				p.Password = &v1alpha1.SecretKeyRef{Name: "bgp", Key: "password"}
				p.GracefulRestart = true
				p.RestartTime = 300 * time.Second
				p.NodeSelector = mustSelector(t, matchLabels("rack", "a"))
			},
		},

		// ASNs.
		{name: "myASN 0", edit: func(s *spec) { s.MyASN = 0 }, wantReason: config.InvalidPeer, wantMsg: "myASN 0 is out of range"},
		{name: "myASN 2^32", edit: func(s *spec) { s.MyASN = 1 << 32 }, wantReason: config.InvalidPeer, wantMsg: "myASN 4294967296 is out of range"},
		{name: "myASN negative", edit: func(s *spec) { s.MyASN = -1 }, wantReason: config.InvalidPeer, wantMsg: "myASN -1"},
		{name: "peerASN 0", edit: func(s *spec) { s.PeerASN = 0 }, wantReason: config.InvalidPeer, wantMsg: "peerASN 0 is out of range"},
		{name: "peerASN 2^32", edit: func(s *spec) { s.PeerASN = 1 << 32 }, wantReason: config.InvalidPeer, wantMsg: "peerASN"},
		{
			name: "largest ASNs",
			edit: func(s *spec) { s.MyASN, s.PeerASN = 1<<32-1, 1 },
			want: func(p *config.Peer) { p.MyASN, p.PeerASN = 1<<32-1, 1 },
		},
		{
			name: "iBGP",
			edit: func(s *spec) { s.PeerASN = s.MyASN },
			want: func(p *config.Peer) { p.PeerASN = p.MyASN },
		},

		// peerAddress.
		{name: "peerAddress not an address", addr: "router-1", wantReason: config.InvalidPeer, wantMsg: `peerAddress "router-1" is not an IP address`},
		{name: "peerAddress empty", edit: func(s *spec) { s.PeerAddress = "" }, wantReason: config.InvalidPeer, wantMsg: "peerAddress"},
		{name: "peerAddress CIDR", addr: "192.0.2.1/32", wantReason: config.InvalidPeer, wantMsg: "is not an IP address"},
		{name: "peerAddress zoned", addr: "fe80::1%eth0", wantReason: config.InvalidPeer, wantMsg: "is not an IP address"},
		{name: "peerAddress IPv4 unspecified", addr: "0.0.0.0", wantReason: config.InvalidPeer, wantMsg: "unspecified or loopback"},
		{name: "peerAddress IPv6 unspecified", addr: "::", wantReason: config.InvalidPeer, wantMsg: "unspecified or loopback"},
		{name: "peerAddress IPv4 loopback", addr: "127.0.0.1", wantReason: config.InvalidPeer, wantMsg: "unspecified or loopback"},
		{name: "peerAddress IPv4 loopback network", addr: "127.1.2.3", wantReason: config.InvalidPeer, wantMsg: "unspecified or loopback"},
		{name: "peerAddress IPv6 loopback", addr: "::1", wantReason: config.InvalidPeer, wantMsg: "unspecified or loopback"},
		{name: "peerAddress IPv4-mapped loopback", addr: "::ffff:127.0.0.1", wantReason: config.InvalidPeer, wantMsg: "is not an IP address"},
		{
			// The CRD's isIP() rejects IPv4-mapped addresses, and so does ParseRange for
			// pools; the mapped unspecified address slips past IsUnspecified.
			name: "peerAddress IPv4-mapped unspecified", addr: "::ffff:0.0.0.0", wantReason: config.InvalidPeer, wantMsg: "peerAddress",
		},
		{
			// As an IPv6 address it also escapes duplicate detection against 192.0.2.1.
			name: "peerAddress IPv4-mapped", addr: "::ffff:192.0.2.1", wantReason: config.InvalidPeer, wantMsg: "peerAddress",
		},

		// peerPort.
		{name: "peerPort 1", edit: func(s *spec) { s.PeerPort = 1 }, want: func(p *config.Peer) { p.Port = 1 }},
		{name: "peerPort 65535", edit: func(s *spec) { s.PeerPort = 65535 }, want: func(p *config.Peer) { p.Port = 65535 }},
		{name: "peerPort 65536", edit: func(s *spec) { s.PeerPort = 65536 }, wantReason: config.InvalidPeer, wantMsg: "peerPort 65536 is out of range 1-65535"},
		{name: "peerPort negative", edit: func(s *spec) { s.PeerPort = -1 }, wantReason: config.InvalidPeer, wantMsg: "peerPort -1"},

		// sourceAddress.
		{
			name: "IPv6 sourceAddress",
			addr: "2001:db8::1",
			edit: func(s *spec) { s.SourceAddress = "2001:db8::2" },
			want: func(p *config.Peer) { p.SourceAddress = netip.MustParseAddr("2001:db8::2") },
		},
		{name: "IPv6 sourceAddress for IPv4 peer", edit: func(s *spec) { s.SourceAddress = "2001:db8::2" },
			wantReason: config.InvalidPeer, wantMsg: "sourceAddress 2001:db8::2 is not of the family of peerAddress 192.0.2.1"},
		{name: "IPv4 sourceAddress for IPv6 peer", addr: "2001:db8::1", edit: func(s *spec) { s.SourceAddress = "192.0.2.2" },
			wantReason: config.InvalidPeer, wantMsg: "is not of the family of peerAddress"},
		{name: "sourceAddress not an address", edit: func(s *spec) { s.SourceAddress = "eth0" },
			wantReason: config.InvalidPeer, wantMsg: `sourceAddress "eth0" is not an IP address`},

		// routerID.
		{name: "routerID zero", edit: func(s *spec) { s.RouterID = "0.0.0.0" }, wantReason: config.InvalidPeer, wantMsg: `routerID "0.0.0.0" is not a non-zero IPv4 address`},
		{name: "routerID IPv6", edit: func(s *spec) { s.RouterID = "2001:db8::1" }, wantReason: config.InvalidPeer, wantMsg: "routerID"},
		{name: "routerID garbage", edit: func(s *spec) { s.RouterID = "1" }, wantReason: config.InvalidPeer, wantMsg: "routerID"},

		// Timers.
		{
			name: "holdTime 0 disables keepalives",
			edit: func(s *spec) { s.HoldTime = dur(0) },
			want: func(p *config.Peer) { p.HoldTime, p.KeepaliveTime = 0, 0 },
		},
		{
			name: "holdTime 0 keepaliveTime 0",
			edit: func(s *spec) { s.HoldTime, s.KeepaliveTime = dur(0), dur(0) },
			want: func(p *config.Peer) { p.HoldTime, p.KeepaliveTime = 0, 0 },
		},
		{name: "holdTime 0 with keepalives", edit: func(s *spec) { s.HoldTime, s.KeepaliveTime = dur(0), dur(time.Second) },
			wantReason: config.InvalidPeer, wantMsg: "keepaliveTime 1s must be"},
		{
			name: "holdTime 3s",
			edit: func(s *spec) { s.HoldTime = dur(3 * time.Second) },
			want: func(p *config.Peer) { p.HoldTime, p.KeepaliveTime = 3*time.Second, time.Second },
		},
		{
			name: "holdTime 65535s",
			edit: func(s *spec) { s.HoldTime = dur(65535 * time.Second) },
			want: func(p *config.Peer) { p.HoldTime, p.KeepaliveTime = 65535*time.Second, 21845*time.Second },
		},
		{name: "holdTime 2s", edit: func(s *spec) { s.HoldTime = dur(2 * time.Second) },
			wantReason: config.InvalidPeer, wantMsg: "holdTime 2s must be 0 or between 3s and 65535s"},
		{name: "holdTime just under 3s", edit: func(s *spec) { s.HoldTime = dur(3*time.Second - 1) },
			wantReason: config.InvalidPeer, wantMsg: "holdTime"},
		{name: "holdTime 65536s", edit: func(s *spec) { s.HoldTime = dur(65536 * time.Second) },
			wantReason: config.InvalidPeer, wantMsg: "holdTime"},
		{name: "holdTime negative", edit: func(s *spec) { s.HoldTime = dur(-time.Second) },
			wantReason: config.InvalidPeer, wantMsg: "holdTime"},
		// With a hold time, keepalives must flow or the session drops.
		{name: "keepaliveTime 0 with holdTime", edit: func(s *spec) { s.KeepaliveTime = dur(0) },
			wantReason: config.InvalidPeer, wantMsg: "keepaliveTime 0s must be"},
		{
			name: "keepaliveTime 1ns",
			edit: func(s *spec) { s.KeepaliveTime = dur(1) },
			want: func(p *config.Peer) { p.KeepaliveTime = 1 },
		},
		{
			name: "keepaliveTime just under holdTime",
			edit: func(s *spec) { s.HoldTime, s.KeepaliveTime = dur(9*time.Second), dur(9*time.Second-time.Millisecond) },
			want: func(p *config.Peer) { p.HoldTime, p.KeepaliveTime = 9*time.Second, 9*time.Second-time.Millisecond },
		},
		{name: "keepaliveTime equal to holdTime", edit: func(s *spec) { s.HoldTime, s.KeepaliveTime = dur(9*time.Second), dur(9*time.Second) },
			wantReason: config.InvalidPeer, wantMsg: "keepaliveTime 9s must be"},
		{name: "keepaliveTime above default holdTime", edit: func(s *spec) { s.KeepaliveTime = dur(90 * time.Second) },
			wantReason: config.InvalidPeer, wantMsg: "keepaliveTime 1m30s must be"},
		{name: "keepaliveTime negative", edit: func(s *spec) { s.KeepaliveTime = dur(-time.Second) },
			wantReason: config.InvalidPeer, wantMsg: "keepaliveTime -1s"},
		{
			name: "connectTime 1s",
			edit: func(s *spec) { s.ConnectTime = dur(time.Second) },
			want: func(p *config.Peer) { p.ConnectTime = time.Second },
		},
		{name: "connectTime under 1s", edit: func(s *spec) { s.ConnectTime = dur(999 * time.Millisecond) },
			wantReason: config.InvalidPeer, wantMsg: "connectTime 999ms must be at least 1s"},
		{name: "connectTime 0", edit: func(s *spec) { s.ConnectTime = dur(0) },
			wantReason: config.InvalidPeer, wantMsg: "connectTime 0s must be at least 1s"},

		// ebgpMultiHop.
		{
			name: "ebgpMultiHop on eBGP",
			edit: func(s *spec) { s.EBGPMultiHop = true },
			want: func(p *config.Peer) { p.EBGPMultiHop = true },
		},
		{name: "ebgpMultiHop on iBGP", edit: func(s *spec) { s.EBGPMultiHop, s.PeerASN = true, s.MyASN },
			wantReason: config.InvalidPeer, wantMsg: "ebgpMultiHop applies to eBGP only, but myASN equals peerASN (64512)"},

		// Graceful restart.
		{
			name: "graceful restart default time",
			edit: func(s *spec) { s.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true} },
			want: func(p *config.Peer) { p.GracefulRestart = true },
		},
		{
			name: "graceful restart disabled ignores time",
			edit: func(s *spec) {
				s.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: false, RestartTime: dur(time.Second)}
			},
		},

		// nodeSelector.
		{name: "bad nodeSelector", edit: func(s *spec) { s.NodeSelector = badSelector() },
			wantReason: config.InvalidPeer, wantMsg: "nodeSelector: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.addr
			if addr == "" {
				addr = "192.0.2.1"
			}
			obj := bgpPeer("r1", 0, addr)
			if tc.edit != nil {
				tc.edit(&obj.Spec)
			}
			snap, problems := config.Build(config.Resources{Peers: []v1alpha1.BGPPeer{obj}})
			if tc.wantReason != "" {
				checkRejected(t, problems, config.ObjectRef{Kind: config.KindBGPPeer, Name: "r1"}, tc.wantReason, tc.wantMsg)
				if d := cmp.Diff([]*config.Peer(nil), snap.Peers, snapOpts); d != "" {
					t.Errorf("Build() peers (-want +got):\n%s", d)
				}
				checkLookups(t, snap, "r1")
				return
			}
			if len(problems) > 0 {
				t.Errorf("Build() problems = %v, want none", problems)
			}
			want := wantPeer("r1", 0, addr)
			if tc.want != nil {
				tc.want(want)
			}
			if d := cmp.Diff([]*config.Peer{want}, snap.Peers, snapOpts); d != "" {
				t.Errorf("Build() peers (-want +got):\n%s", d)
			}
			checkLookups(t, snap)
		})
	}
}

// TestBuildPeerCopiesPassword checks the snapshot does not share the password reference
// with the object it was built from.
func TestBuildPeerCopiesPassword(t *testing.T) {
	obj := bgpPeer("r1", 0, "192.0.2.1")
	obj.Spec.Password = &v1alpha1.SecretKeyRef{Name: "bgp", Key: "password"}
	snap, _ := config.Build(config.Resources{Peers: []v1alpha1.BGPPeer{obj}})
	obj.Spec.Password.Key = "changed"
	if d := cmp.Diff(&v1alpha1.SecretKeyRef{Name: "bgp", Key: "password"}, snap.Peer("r1").Password); d != "" {
		t.Errorf("Password (-want +got):\n%s", d)
	}
}

// TestBuildPoolCopiesLabels checks the snapshot does not share the labels map with the
// object it was built from, as it does not share a peer's password reference.
func TestBuildPoolCopiesLabels(t *testing.T) {
	obj := ipPool("p", 0, "10.0.0.0/24")
	obj.Labels = map[string]string{"env": "prod"}
	snap, _ := config.Build(config.Resources{Pools: []v1alpha1.IPPool{obj}})
	obj.Labels["env"] = "dev"
	if d := cmp.Diff(labels.Set{"env": "prod"}, snap.Pool("p").Labels); d != "" {
		t.Errorf("Labels (-want +got):\n%s", d)
	}
}

func TestPeerIBGP(t *testing.T) {
	got := []bool{
		(&config.Peer{MyASN: 64512, PeerASN: 64512}).IBGP(),
		(&config.Peer{MyASN: 64512, PeerASN: 64513}).IBGP(),
	}
	if d := cmp.Diff([]bool{true, false}, got); d != "" {
		t.Errorf("IBGP() (-want +got):\n%s", d)
	}
}

func TestBuildDuplicatePeer(t *testing.T) {
	withSel := func(p v1alpha1.BGPPeer, s *metav1.LabelSelector) v1alpha1.BGPPeer {
		p.Spec.NodeSelector = s
		return p
	}
	withPort := func(p v1alpha1.BGPPeer, port int32) v1alpha1.BGPPeer {
		p.Spec.PeerPort = port
		return p
	}
	dupMsg := func(older, addr string, port int) string {
		return "older peer \"" + older + "\" already peers with " + addr + " port " + itoa(port) +
			" from the same nodes; give the peers disjoint nodeSelectors"
	}
	tests := []struct {
		name         string
		peers        []v1alpha1.BGPPeer
		wantAccepted []string
		wantProblems []config.Problem
	}{
		{
			// The older peer wins although its name sorts last; 179 is the default port.
			name:         "same address and port",
			peers:        []v1alpha1.BGPPeer{bgpPeer("a-new", 2, "192.0.2.1"), withPort(bgpPeer("z-old", 1, "192.0.2.1"), 179)},
			wantAccepted: []string{"z-old"},
			wantProblems: []config.Problem{rejected(config.KindBGPPeer, "a-new", config.DuplicatePeer, dupMsg("z-old", "192.0.2.1", 179))},
		},
		{
			name:         "same timestamp: name decides",
			peers:        []v1alpha1.BGPPeer{bgpPeer("b", 1, "192.0.2.1"), bgpPeer("a", 1, "192.0.2.1")},
			wantAccepted: []string{"a"},
			wantProblems: []config.Problem{rejected(config.KindBGPPeer, "b", config.DuplicatePeer, dupMsg("a", "192.0.2.1", 179))},
		},
		{
			name:         "IPv6 address spelled differently",
			peers:        []v1alpha1.BGPPeer{bgpPeer("a", 0, "2001:db8::1"), bgpPeer("b", 1, "2001:DB8:0:0::0001")},
			wantAccepted: []string{"a"},
			wantProblems: []config.Problem{rejected(config.KindBGPPeer, "b", config.DuplicatePeer, dupMsg("a", "2001:db8::1", 179))},
		},
		{
			name:         "same custom port",
			peers:        []v1alpha1.BGPPeer{withPort(bgpPeer("a", 0, "192.0.2.1"), 1179), withPort(bgpPeer("b", 1, "192.0.2.1"), 1179)},
			wantAccepted: []string{"a"},
			wantProblems: []config.Problem{rejected(config.KindBGPPeer, "b", config.DuplicatePeer, dupMsg("a", "192.0.2.1", 1179))},
		},
		{
			name:         "different ports",
			peers:        []v1alpha1.BGPPeer{bgpPeer("a", 0, "192.0.2.1"), withPort(bgpPeer("b", 1, "192.0.2.1"), 1179)},
			wantAccepted: []string{"a", "b"},
		},
		{
			name:         "different addresses",
			peers:        []v1alpha1.BGPPeer{bgpPeer("a", 0, "192.0.2.1"), bgpPeer("b", 1, "192.0.2.2")},
			wantAccepted: []string{"a", "b"},
		},
		{
			name: "disjoint matchLabels",
			peers: []v1alpha1.BGPPeer{
				withSel(bgpPeer("a", 0, "192.0.2.1"), matchLabels("rack", "a")),
				withSel(bgpPeer("b", 1, "192.0.2.1"), matchLabels("rack", "b")),
			},
			wantAccepted: []string{"a", "b"},
		},
		{
			name: "matchLabels disjoint from In",
			peers: []v1alpha1.BGPPeer{
				withSel(bgpPeer("a", 0, "192.0.2.1"), matchLabels("rack", "a", "zone", "z1")),
				withSel(bgpPeer("b", 1, "192.0.2.1"), matchIn("rack", "b", "c")),
			},
			wantAccepted: []string{"a", "b"},
		},
		{
			name: "In disjoint from matchLabels",
			peers: []v1alpha1.BGPPeer{
				withSel(bgpPeer("a", 0, "192.0.2.1"), matchIn("rack", "b", "c")),
				withSel(bgpPeer("b", 1, "192.0.2.1"), matchLabels("rack", "a")),
			},
			wantAccepted: []string{"a", "b"},
		},
		{
			name: "In sets share a value",
			peers: []v1alpha1.BGPPeer{
				withSel(bgpPeer("a", 0, "192.0.2.1"), matchIn("rack", "a", "b")),
				withSel(bgpPeer("b", 1, "192.0.2.1"), matchIn("rack", "b", "c")),
			},
			wantAccepted: []string{"a"},
			wantProblems: []config.Problem{rejected(config.KindBGPPeer, "b", config.DuplicatePeer, dupMsg("a", "192.0.2.1", 179))},
		},
		{
			name: "same matchLabels",
			peers: []v1alpha1.BGPPeer{
				withSel(bgpPeer("a", 0, "192.0.2.1"), matchLabels("rack", "a")),
				withSel(bgpPeer("b", 1, "192.0.2.1"), matchLabels("rack", "a")),
			},
			wantAccepted: []string{"a"},
			wantProblems: []config.Problem{rejected(config.KindBGPPeer, "b", config.DuplicatePeer, dupMsg("a", "192.0.2.1", 179))},
		},
		{
			// rack=a,zone=z1 and rack=b select no node in common, whichever key is seen first.
			name: "disjoint on one of several keys",
			peers: []v1alpha1.BGPPeer{
				withSel(bgpPeer("a", 0, "192.0.2.1"), matchLabels("zone", "z1", "rack", "a")),
				withSel(bgpPeer("b", 1, "192.0.2.1"), matchLabels("zone", "z1", "rack", "b")),
			},
			wantAccepted: []string{"a", "b"},
		},
		{
			name: "different keys are not provably disjoint",
			peers: []v1alpha1.BGPPeer{
				withSel(bgpPeer("a", 0, "192.0.2.1"), matchLabels("rack", "a")),
				withSel(bgpPeer("b", 1, "192.0.2.1"), matchLabels("zone", "b")),
			},
			wantAccepted: []string{"a"},
			wantProblems: []config.Problem{rejected(config.KindBGPPeer, "b", config.DuplicatePeer, dupMsg("a", "192.0.2.1", 179))},
		},
		{
			name: "NotIn is not provably disjoint",
			peers: []v1alpha1.BGPPeer{
				withSel(bgpPeer("a", 0, "192.0.2.1"), matchLabels("rack", "a")),
				withSel(bgpPeer("b", 1, "192.0.2.1"), &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "rack", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"a"}},
				}}),
			},
			wantAccepted: []string{"a"},
			wantProblems: []config.Problem{rejected(config.KindBGPPeer, "b", config.DuplicatePeer, dupMsg("a", "192.0.2.1", 179))},
		},
		{
			name: "no selector overlaps every selector",
			peers: []v1alpha1.BGPPeer{
				withSel(bgpPeer("a", 0, "192.0.2.1"), matchLabels("rack", "a")),
				bgpPeer("b", 1, "192.0.2.1"),
			},
			wantAccepted: []string{"a"},
			wantProblems: []config.Problem{rejected(config.KindBGPPeer, "b", config.DuplicatePeer, dupMsg("a", "192.0.2.1", 179))},
		},
		{
			// c is disjoint from a but not from b: b lost to a, so only a counts.
			name: "left-out peer does not block",
			peers: []v1alpha1.BGPPeer{
				withSel(bgpPeer("a", 0, "192.0.2.1"), matchLabels("rack", "a")),
				bgpPeer("b", 1, "192.0.2.1"),
				withSel(bgpPeer("c", 2, "192.0.2.1"), matchLabels("rack", "c")),
			},
			wantAccepted: []string{"a", "c"},
			wantProblems: []config.Problem{rejected(config.KindBGPPeer, "b", config.DuplicatePeer, dupMsg("a", "192.0.2.1", 179))},
		},
		{
			name: "invalid older peer does not block",
			peers: []v1alpha1.BGPPeer{
				with(bgpPeer("old", 0, "192.0.2.1"), func(p *v1alpha1.BGPPeer) { p.Spec.MyASN = 0 }),
				bgpPeer("new", 1, "192.0.2.1"),
			},
			wantAccepted: []string{"new"},
			wantProblems: []config.Problem{rejected(config.KindBGPPeer, "old", config.InvalidPeer, "myASN 0 is out of range 1-4294967295")},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap, problems := config.Build(config.Resources{Peers: tc.peers})
			var got []string
			for _, p := range snap.Peers {
				got = append(got, p.Name)
			}
			if d := cmp.Diff(tc.wantAccepted, got); d != "" {
				t.Errorf("Build() accepted peers (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.wantProblems, problems, cmpOpts); d != "" {
				t.Errorf("Build() problems (-want +got):\n%s", d)
			}
			checkLookups(t, snap)
		})
	}
}

// advFixture are the pools and peers the advertisement tests resolve against: pools a and
// b (labelled env=prod), c (env=dev), and the left-out pool lost (overlaps a); peers r1 and
// r2, and the invalid peer bad.
func advFixture() config.Resources {
	return config.Resources{
		Pools: []v1alpha1.IPPool{
			with(ipPool("a", 0, "10.0.0.0/24"), func(p *v1alpha1.IPPool) { p.Labels = map[string]string{"env": "prod"} }),
			with(ipPool("b", 0, "2001:db8::/64"), func(p *v1alpha1.IPPool) { p.Labels = map[string]string{"env": "prod"} }),
			with(ipPool("c", 0, "10.0.1.0/24", "2001:db8:1::/64"), func(p *v1alpha1.IPPool) { p.Labels = map[string]string{"env": "dev"} }),
			ipPool("lost", 1, "10.0.0.128/25"),
		},
		Peers: []v1alpha1.BGPPeer{
			bgpPeer("r1", 0, "192.0.2.1"),
			bgpPeer("r2", 0, "192.0.2.2"),
			bgpPeer("bad", 0, "127.0.0.1"),
		},
	}
}

// fixtureProblems are the problems advFixture has on its own.
var fixtureProblems = []config.Problem{
	rejected(config.KindBGPPeer, "bad", config.InvalidPeer, "peerAddress 127.0.0.1 is unspecified or loopback"),
	rejected(config.KindIPPool, "lost", config.PoolOverlap,
		`addresses 10.0.0.128/25 overlap 10.0.0.0/24 of older pool "a"; this pool is not used until the overlap is removed`),
}

func TestBuildBGPAdvertisement(t *testing.T) {
	type spec = v1alpha1.BGPAdvertisementSpec
	const kind = config.KindBGPAdvertisement
	tests := []struct {
		name string
		edit func(*spec)
		// want is the accepted advertisement, nil when it is left out.
		want         *config.BGPAdvertisement
		wantProblems []config.Problem // beyond fixtureProblems
	}{
		{
			name: "defaults: every pool, every peer",
			want: wantBGPAdv("adv", 0, "a", "b", "c"),
		},
		{
			name: "communities",
			edit: func(s *spec) {
				s.Communities = []v1alpha1.Community{"65000:100", "no-export", "0:0", "65535:65535", "no-advertise",
					"no-export-subconfed", "no-peer", "blackhole"}
				s.LargeCommunities = []v1alpha1.LargeCommunity{"4294967295:0:1", "64512:1:2"}
			},
			want: edit(wantBGPAdv("adv", 0, "a", "b", "c"), func(a *config.BGPAdvertisement) {
				a.Communities = []uint32{65000<<16 | 100, 0xFFFFFF01, 0, 0xFFFFFFFF, 0xFFFFFF02, 0xFFFFFF03, 0xFFFFFF04, 0xFFFF029A}
				a.LargeCommunities = []config.LargeCommunity{{Global: 4294967295, Local1: 0, Local2: 1}, {Global: 64512, Local1: 1, Local2: 2}}
			}),
		},
		{
			name: "community out of range",
			edit: func(s *spec) { s.Communities = []v1alpha1.Community{"65000:100", "65536:1"} },
			wantProblems: []config.Problem{rejected(kind, "adv", config.InvalidCommunity,
				`community "65536:1": ASN must be 0-65535`)},
		},
		{
			name: "community value out of range",
			edit: func(s *spec) { s.Communities = []v1alpha1.Community{"1:65536"} },
			wantProblems: []config.Problem{rejected(kind, "adv", config.InvalidCommunity,
				`community "1:65536": value must be 0-65535`)},
		},
		{
			name: "large community as community",
			edit: func(s *spec) { s.Communities = []v1alpha1.Community{"1:2:3"} },
			wantProblems: []config.Problem{rejected(kind, "adv", config.InvalidCommunity,
				`community "1:2:3": want ASN:value or a well-known name`)},
		},
		{
			name: "unknown well-known name",
			edit: func(s *spec) { s.Communities = []v1alpha1.Community{"no-exprot"} },
			wantProblems: []config.Problem{rejected(kind, "adv", config.InvalidCommunity,
				`community "no-exprot": want ASN:value or a well-known name`)},
		},
		{
			name: "large community out of range",
			edit: func(s *spec) { s.LargeCommunities = []v1alpha1.LargeCommunity{"4294967296:0:0"} },
			wantProblems: []config.Problem{rejected(kind, "adv", config.InvalidCommunity,
				`large community "4294967296:0:0": each part must be 0-4294967295`)},
		},
		{
			name: "standard community as large community",
			edit: func(s *spec) { s.LargeCommunities = []v1alpha1.LargeCommunity{"65000:100"} },
			wantProblems: []config.Problem{rejected(kind, "adv", config.InvalidCommunity,
				`large community "65000:100": want global:local1:local2`)},
		},
		{
			name: "localPref and aggregation",
			edit: func(s *spec) {
				s.LocalPref = ptr.To[int64](4294967295)
				s.AggregationLength, s.AggregationLengthV6 = ptr.To[int32](24), ptr.To[int32](64)
			},
			want: edit(wantBGPAdv("adv", 0, "a", "b", "c"), func(a *config.BGPAdvertisement) {
				a.LocalPref = ptr.To[uint32](4294967295)
				a.AggregationLength, a.AggregationLengthV6 = 24, 64
			}),
		},
		{
			name: "aggregation 0",
			edit: func(s *spec) { s.AggregationLength, s.AggregationLengthV6 = ptr.To[int32](0), ptr.To[int32](0) },
			want: edit(wantBGPAdv("adv", 0, "a", "b", "c"), func(a *config.BGPAdvertisement) {
				a.AggregationLength, a.AggregationLengthV6 = 0, 0
			}),
		},
		{
			name: "localPref out of range",
			edit: func(s *spec) { s.LocalPref = ptr.To[int64](1 << 32) },
			wantProblems: []config.Problem{rejected(kind, "adv", config.InvalidAdvertisement,
				"localPref 4294967296 is out of range 0-4294967295")},
		},
		{
			name: "negative localPref",
			edit: func(s *spec) { s.LocalPref = ptr.To[int64](-1) },
			wantProblems: []config.Problem{rejected(kind, "adv", config.InvalidAdvertisement,
				"localPref -1 is out of range 0-4294967295")},
		},
		{
			name: "aggregationLength 33",
			edit: func(s *spec) { s.AggregationLength = ptr.To[int32](33) },
			wantProblems: []config.Problem{rejected(kind, "adv", config.InvalidAdvertisement,
				"aggregation lengths 33/128 exceed 32/128")},
		},
		{
			name: "aggregationLengthV6 129",
			edit: func(s *spec) { s.AggregationLengthV6 = ptr.To[int32](129) },
			wantProblems: []config.Problem{rejected(kind, "adv", config.InvalidAdvertisement,
				"aggregation lengths 32/129 exceed 32/128")},
		},
		{
			name: "negative aggregationLength",
			edit: func(s *spec) { s.AggregationLength = ptr.To[int32](-1) },
			wantProblems: []config.Problem{rejected(kind, "adv", config.InvalidAdvertisement,
				"aggregation lengths -1/128 exceed 32/128")},
		},

		// Pools.
		{
			name: "named pools sorted",
			edit: func(s *spec) { s.IPPools = names("c", "a") },
			want: wantBGPAdv("adv", 0, "a", "c"),
		},
		{
			name: "ipPoolSelector",
			edit: func(s *spec) { s.IPPoolSelector = matchLabels("env", "prod") },
			want: wantBGPAdv("adv", 0, "a", "b"),
		},
		{
			name: "named pools and ipPoolSelector union",
			edit: func(s *spec) { s.IPPools, s.IPPoolSelector = names("c", "a"), matchLabels("env", "prod") },
			want: wantBGPAdv("adv", 0, "a", "b", "c"),
		},
		{
			name: "empty ipPoolSelector selects every pool",
			edit: func(s *spec) { s.IPPoolSelector = &metav1.LabelSelector{} },
			want: wantBGPAdv("adv", 0, "a", "b", "c"),
		},
		{
			name: "ipPoolSelector matching nothing",
			edit: func(s *spec) { s.IPPoolSelector = matchLabels("env", "staging") },
			want: wantBGPAdv("adv", 0),
		},
		{
			name: "missing pool",
			edit: func(s *spec) { s.IPPools = names("a", "nope", "gone") },
			want: wantBGPAdv("adv", 0, "a"),
			wantProblems: []config.Problem{unresolved(kind, "adv", config.PoolNotFound,
				`no accepted IPPool named "nope", "gone"`)},
		},
		{
			name: "pool left out for an overlap",
			edit: func(s *spec) { s.IPPools = names("lost") },
			want: wantBGPAdv("adv", 0),
			wantProblems: []config.Problem{unresolved(kind, "adv", config.PoolNotFound,
				`no accepted IPPool named "lost"`)},
		},
		{
			name: "bad ipPoolSelector",
			edit: func(s *spec) { s.IPPoolSelector = badSelector() },
			wantProblems: []config.Problem{rejected(kind, "adv", config.InvalidSelector,
				`ipPoolSelector: "Near" is not a valid label selector operator`)},
		},
		{
			name: "service and node selectors",
			edit: func(s *spec) {
				s.ServiceSelector, s.NodeSelector = matchLabels("tier", "edge"), matchIn("rack", "a", "b")
			},
			want: edit(wantBGPAdv("adv", 0, "a", "b", "c"), func(a *config.BGPAdvertisement) {
				a.ServiceSelector = mustSelector(t, matchLabels("tier", "edge"))
				a.NodeSelector = mustSelector(t, matchIn("rack", "a", "b"))
			}),
		},
		{
			name:         "bad serviceSelector",
			edit:         func(s *spec) { s.ServiceSelector = badSelector() },
			wantProblems: []config.Problem{rejected(kind, "adv", config.InvalidSelector, `serviceSelector: "Near" is not a valid label selector operator`)},
		},
		{
			name:         "bad nodeSelector",
			edit:         func(s *spec) { s.NodeSelector = badSelector() },
			wantProblems: []config.Problem{rejected(kind, "adv", config.InvalidSelector, `nodeSelector: "Near" is not a valid label selector operator`)},
		},

		// Peers.
		{
			name: "named peers sorted",
			edit: func(s *spec) { s.Peers = names("r2", "r1") },
			want: edit(wantBGPAdv("adv", 0, "a", "b", "c"), func(a *config.BGPAdvertisement) {
				a.AllPeers, a.Peers = false, []string{"r1", "r2"}
			}),
		},
		{
			name: "missing and invalid peers",
			edit: func(s *spec) { s.Peers = names("r2", "ghost", "bad") },
			want: edit(wantBGPAdv("adv", 0, "a", "b", "c"), func(a *config.BGPAdvertisement) {
				a.AllPeers, a.Peers = false, []string{"r2"}
			}),
			wantProblems: []config.Problem{unresolved(kind, "adv", config.PeerNotFound,
				`no accepted BGPPeer named "ghost", "bad"`)},
		},
		{
			// Naming only missing peers does not mean every peer.
			name: "only missing peers",
			edit: func(s *spec) { s.Peers = names("ghost") },
			want: edit(wantBGPAdv("adv", 0, "a", "b", "c"), func(a *config.BGPAdvertisement) { a.AllPeers = false }),
			wantProblems: []config.Problem{unresolved(kind, "adv", config.PeerNotFound,
				`no accepted BGPPeer named "ghost"`)},
		},
		{
			name: "missing pool and peer",
			edit: func(s *spec) { s.IPPools, s.Peers = names("b", "nope"), names("ghost", "r1") },
			want: edit(wantBGPAdv("adv", 0, "b"), func(a *config.BGPAdvertisement) {
				a.AllPeers, a.Peers = false, []string{"r1"}
			}),
			wantProblems: []config.Problem{
				unresolved(kind, "adv", config.PoolNotFound, `no accepted IPPool named "nope"`),
				unresolved(kind, "adv", config.PeerNotFound, `no accepted BGPPeer named "ghost"`),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := advFixture()
			obj := bgpAdv("adv", 0)
			if tc.edit != nil {
				tc.edit(&obj.Spec)
			}
			res.BGPAdvertisements = []v1alpha1.BGPAdvertisement{obj}
			snap, problems := config.Build(res)

			var want []*config.BGPAdvertisement
			if tc.want != nil {
				want = append(want, tc.want)
			}
			if d := cmp.Diff(want, snap.BGPAdvertisements, snapOpts); d != "" {
				t.Errorf("Build() BGP advertisements (-want +got):\n%s", d)
			}
			wantProblems := append(tc.wantProblems[:len(tc.wantProblems):len(tc.wantProblems)], fixtureProblems...)
			sortProblems(wantProblems)
			if d := cmp.Diff(wantProblems, problems, cmpOpts); d != "" {
				t.Errorf("Build() problems (-want +got):\n%s", d)
			}
		})
	}
}

func TestBuildAdvertisementConflict(t *testing.T) {
	type spec = v1alpha1.BGPAdvertisementSpec
	lp := func(v int64) func(*spec) { return func(s *spec) { s.LocalPref = ptr.To(v) } }
	pools := func(ns ...string) func(*spec) { return func(s *spec) { s.IPPools = names(ns...) } }
	peers := func(ns ...string) func(*spec) { return func(s *spec) { s.Peers = names(ns...) } }
	agg := func(v4, v6 int32) func(*spec) {
		return func(s *spec) { s.AggregationLength, s.AggregationLengthV6 = ptr.To(v4), ptr.To(v6) }
	}
	conflict := func(name, older, pool, peer string) []config.Problem {
		return []config.Problem{rejected(config.KindBGPAdvertisement, name, config.AdvertisementConflict,
			"older advertisement \""+older+"\" sends pool \""+pool+"\" to peer \""+peer+
				"\" with a different localPref at the same prefix length")}
	}
	tests := []struct {
		name         string
		advs         []v1alpha1.BGPAdvertisement
		wantAccepted []string
		wantProblems []config.Problem // beyond fixtureProblems
	}{
		{
			// The older advertisement wins although its name sorts last.
			name:         "every pool to every peer",
			advs:         []v1alpha1.BGPAdvertisement{bgpAdv("a-new", 2, lp(200)), bgpAdv("z-old", 1, lp(100))},
			wantAccepted: []string{"z-old"},
			wantProblems: conflict("a-new", "z-old", "a", "*"),
		},
		{
			name:         "same timestamp: name decides",
			advs:         []v1alpha1.BGPAdvertisement{bgpAdv("y", 1, lp(200), pools("c")), bgpAdv("x", 1, lp(100), pools("c"))},
			wantAccepted: []string{"x"},
			wantProblems: conflict("y", "x", "c", "*"),
		},
		{
			name:         "common named peer",
			advs:         []v1alpha1.BGPAdvertisement{bgpAdv("old", 0, lp(100), peers("r1", "r2")), bgpAdv("new", 1, lp(200), peers("r2"))},
			wantAccepted: []string{"old"},
			wantProblems: conflict("new", "old", "a", "r2"),
		},
		{
			name:         "older to every peer, newer to one",
			advs:         []v1alpha1.BGPAdvertisement{bgpAdv("old", 0, lp(100), pools("b")), bgpAdv("new", 1, lp(200), peers("r2"))},
			wantAccepted: []string{"old"},
			wantProblems: conflict("new", "old", "b", "r2"),
		},
		{
			name:         "older to one peer, newer to every peer",
			advs:         []v1alpha1.BGPAdvertisement{bgpAdv("old", 0, lp(100), peers("r2")), bgpAdv("new", 1, lp(200), pools("b", "c"))},
			wantAccepted: []string{"old"},
			wantProblems: conflict("new", "old", "b", "r2"),
		},
		{
			name:         "same localPref",
			advs:         []v1alpha1.BGPAdvertisement{bgpAdv("old", 0, lp(100)), bgpAdv("new", 1, lp(100))},
			wantAccepted: []string{"new", "old"},
		},
		{
			name:         "no localPref",
			advs:         []v1alpha1.BGPAdvertisement{bgpAdv("old", 0), bgpAdv("new", 1, lp(100)), bgpAdv("newest", 2)},
			wantAccepted: []string{"new", "newest", "old"},
		},
		{
			name:         "disjoint peers",
			advs:         []v1alpha1.BGPAdvertisement{bgpAdv("old", 0, lp(100), peers("r1")), bgpAdv("new", 1, lp(200), peers("r2"))},
			wantAccepted: []string{"new", "old"},
		},
		{
			name:         "disjoint pools",
			advs:         []v1alpha1.BGPAdvertisement{bgpAdv("old", 0, lp(100), pools("a")), bgpAdv("new", 1, lp(200), pools("b", "c"))},
			wantAccepted: []string{"new", "old"},
		},
		{
			name: "disjoint pools by selector",
			advs: []v1alpha1.BGPAdvertisement{
				bgpAdv("old", 0, lp(100), func(s *spec) { s.IPPoolSelector = matchLabels("env", "prod") }),
				bgpAdv("new", 1, lp(200), func(s *spec) { s.IPPoolSelector = matchLabels("env", "dev") }),
			},
			wantAccepted: []string{"new", "old"},
		},
		{
			// Only missing peers: the newer one goes nowhere.
			name:         "newer names only missing peers",
			advs:         []v1alpha1.BGPAdvertisement{bgpAdv("old", 0, lp(100)), bgpAdv("new", 1, lp(200), peers("ghost"))},
			wantAccepted: []string{"new", "old"},
			wantProblems: []config.Problem{unresolved(config.KindBGPAdvertisement, "new", config.PeerNotFound, `no accepted BGPPeer named "ghost"`)},
		},
		{
			name:         "different prefix lengths in both families",
			advs:         []v1alpha1.BGPAdvertisement{bgpAdv("old", 0, lp(100)), bgpAdv("new", 1, lp(200), agg(24, 64))},
			wantAccepted: []string{"new", "old"},
		},
		{
			// Dual-stack pool c: the IPv6 routes are the same.
			name:         "same IPv6 prefix length for a dual-stack pool",
			advs:         []v1alpha1.BGPAdvertisement{bgpAdv("old", 0, lp(100), pools("c")), bgpAdv("new", 1, lp(200), pools("c"), agg(24, 128))},
			wantAccepted: []string{"old"},
			wantProblems: conflict("new", "old", "c", "*"),
		},
		{
			// Pool a is IPv4 only: /32 and /24 routes are different routes, whatever the
			// IPv6 lengths are.
			name:         "different IPv4 prefix length for an IPv4 pool",
			advs:         []v1alpha1.BGPAdvertisement{bgpAdv("old", 0, lp(100), pools("a")), bgpAdv("new", 1, lp(200), pools("a"), agg(24, 128))},
			wantAccepted: []string{"new", "old"},
		},
		{
			name:         "different IPv6 prefix length for an IPv6 pool",
			advs:         []v1alpha1.BGPAdvertisement{bgpAdv("old", 0, lp(100), pools("b")), bgpAdv("new", 1, lp(200), pools("b"), agg(32, 64))},
			wantAccepted: []string{"new", "old"},
		},
		{
			// a wins over b, b is left out, so c only has a to agree with.
			name: "left-out advertisement does not block",
			advs: []v1alpha1.BGPAdvertisement{
				bgpAdv("x", 0, lp(100), pools("a")),
				bgpAdv("y", 1, lp(200), pools("a", "b")),
				bgpAdv("z", 2, lp(300), pools("b")),
			},
			wantAccepted: []string{"x", "z"},
			wantProblems: conflict("y", "x", "a", "*"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := advFixture()
			res.BGPAdvertisements = tc.advs
			snap, problems := config.Build(res)
			var got []string
			for _, a := range snap.BGPAdvertisements {
				got = append(got, a.Name)
			}
			if d := cmp.Diff(tc.wantAccepted, got); d != "" {
				t.Errorf("Build() accepted BGP advertisements (-want +got):\n%s", d)
			}
			wantProblems := append(tc.wantProblems[:len(tc.wantProblems):len(tc.wantProblems)], fixtureProblems...)
			sortProblems(wantProblems)
			if d := cmp.Diff(wantProblems, problems, cmpOpts); d != "" {
				t.Errorf("Build() problems (-want +got):\n%s", d)
			}
		})
	}
}

func TestAggregationFor(t *testing.T) {
	a := &config.BGPAdvertisement{AggregationLength: 24, AggregationLengthV6: 64}
	got := []int{a.AggregationFor(config.IPv4), a.AggregationFor(config.IPv6)}
	if d := cmp.Diff([]int{24, 64}, got); d != "" {
		t.Errorf("AggregationFor() (-want +got):\n%s", d)
	}
}

func TestBuildL2Advertisement(t *testing.T) {
	type spec = v1alpha1.L2AdvertisementSpec
	const kind = config.KindL2Advertisement
	want := func(pools ...string) *config.L2Advertisement {
		tg := everything()
		tg.Pools = pools
		return &config.L2Advertisement{Name: "l2", Created: createdAt(0), Target: tg}
	}
	tests := []struct {
		name         string
		edit         func(*spec)
		want         *config.L2Advertisement
		wantProblems []config.Problem // beyond fixtureProblems
	}{
		{name: "defaults: every pool", want: want("a", "b", "c")},
		{
			name: "interfaces sorted",
			edit: func(s *spec) { s.Interfaces = []v1alpha1.InterfaceName{"eth1", "bond*", "eth0"} },
			want: edit(want("a", "b", "c"), func(a *config.L2Advertisement) { a.Interfaces = []string{"bond*", "eth0", "eth1"} }),
		},
		{
			name: "named pools and ipPoolSelector union",
			edit: func(s *spec) { s.IPPools, s.IPPoolSelector = names("c"), matchLabels("env", "prod") },
			want: want("a", "b", "c"),
		},
		{
			name: "ipPoolSelector matching nothing",
			edit: func(s *spec) { s.IPPoolSelector = matchIn("env", "staging") },
			want: want(),
		},
		{
			name: "missing pool",
			edit: func(s *spec) { s.IPPools = names("b", "lost") },
			want: want("b"),
			wantProblems: []config.Problem{unresolved(kind, "l2", config.PoolNotFound,
				`no accepted IPPool named "lost"`)},
		},
		{
			name: "service and node selectors",
			edit: func(s *spec) {
				s.ServiceSelector, s.NodeSelector = matchLabels("tier", "edge"), matchLabels("l2", "yes")
			},
			want: edit(want("a", "b", "c"), func(a *config.L2Advertisement) {
				a.ServiceSelector = mustSelector(t, matchLabels("tier", "edge"))
				a.NodeSelector = mustSelector(t, matchLabels("l2", "yes"))
			}),
		},
		{
			name:         "bad ipPoolSelector",
			edit:         func(s *spec) { s.IPPoolSelector = badSelector() },
			wantProblems: []config.Problem{rejected(kind, "l2", config.InvalidSelector, `ipPoolSelector: "Near" is not a valid label selector operator`)},
		},
		{
			name:         "bad serviceSelector",
			edit:         func(s *spec) { s.ServiceSelector = badSelector() },
			wantProblems: []config.Problem{rejected(kind, "l2", config.InvalidSelector, `serviceSelector: "Near" is not a valid label selector operator`)},
		},
		{
			name:         "bad nodeSelector",
			edit:         func(s *spec) { s.NodeSelector = badSelector() },
			wantProblems: []config.Problem{rejected(kind, "l2", config.InvalidSelector, `nodeSelector: "Near" is not a valid label selector operator`)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := advFixture()
			obj := l2Adv("l2", 0)
			if tc.edit != nil {
				tc.edit(&obj.Spec)
			}
			res.L2Advertisements = []v1alpha1.L2Advertisement{obj}
			snap, problems := config.Build(res)

			var wantAdvs []*config.L2Advertisement
			if tc.want != nil {
				wantAdvs = append(wantAdvs, tc.want)
			}
			if d := cmp.Diff(wantAdvs, snap.L2Advertisements, snapOpts); d != "" {
				t.Errorf("Build() L2 advertisements (-want +got):\n%s", d)
			}
			wantProblems := append(tc.wantProblems[:len(tc.wantProblems):len(tc.wantProblems)], fixtureProblems...)
			sortProblems(wantProblems)
			if d := cmp.Diff(wantProblems, problems, cmpOpts); d != "" {
				t.Errorf("Build() problems (-want +got):\n%s", d)
			}
		})
	}
}

// TestBuildAdvertisementsSortedByName checks the snapshot lists advertisements by name
// whatever their age.
func TestBuildAdvertisementsSortedByName(t *testing.T) {
	res := advFixture()
	res.BGPAdvertisements = []v1alpha1.BGPAdvertisement{bgpAdv("m", 0), bgpAdv("z", 1), bgpAdv("a", 2)}
	res.L2Advertisements = []v1alpha1.L2Advertisement{l2Adv("m", 2), l2Adv("a", 1), l2Adv("z", 0)}
	snap, _ := config.Build(res)
	var got []string
	for _, a := range snap.BGPAdvertisements {
		got = append(got, "bgp/"+a.Name)
	}
	for _, a := range snap.L2Advertisements {
		got = append(got, "l2/"+a.Name)
	}
	want := []string{"bgp/a", "bgp/m", "bgp/z", "l2/a", "l2/m", "l2/z"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Build() advertisements (-want +got):\n%s", d)
	}
}
