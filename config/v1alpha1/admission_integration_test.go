//go:build integration

package v1alpha1_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/lab/controlplane"
)

// TestAdmission checks the generated CRD schemas and their CEL rules against a real
// kube-apiserver: valid objects are stored with their defaults, invalid ones are rejected
// with an error that names the bad field and says what is wrong with it.
func TestAdmission(t *testing.T) {
	cp := controlplane.Start(t, controlplane.WithBerthCRDs())
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("valid", func(t *testing.T) { testAdmissionValid(t, c) })
	t.Run("invalid", func(t *testing.T) { testAdmissionInvalid(t, c, scheme) })
}

func testAdmissionValid(t *testing.T, c client.Client) {
	pool := &v1alpha1.IPPool{
		ObjectMeta: metav1.ObjectMeta{Name: "valid-pool"},
		Spec: v1alpha1.IPPoolSpec{
			Addresses: []v1alpha1.AddressRange{
				"198.18.2.192/26",
				"2001:db8:2::/64",
				"198.18.2.10-198.18.2.20",
				"2001:db8:3::10-2001:db8:3::1:0",
				"198.18.3.7/32",
			},
			AvoidBuggyIPs:   true,
			Priority:        10,
			ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "edge"}},
		},
	}
	wantPool := pool.Spec.DeepCopy()
	wantPool.AutoAssign = ptr.To(true)
	wantPool.IPMode = v1alpha1.IPModeVIP

	peer := &v1alpha1.BGPPeer{
		ObjectMeta: metav1.ObjectMeta{Name: "valid-peer"},
		Spec: v1alpha1.BGPPeerSpec{
			MyASN:           4200000000,
			PeerASN:         64513,
			PeerAddress:     "2001:db8:1::1",
			SourceAddress:   "2001:db8:1::10",
			RouterID:        "198.18.0.10",
			HoldTime:        &metav1.Duration{Duration: 30 * time.Second},
			KeepaliveTime:   &metav1.Duration{Duration: 10 * time.Second},
			ConnectTime:     &metav1.Duration{Duration: 5 * time.Second},
			EBGPMultiHop:    true,
			Password:        &v1alpha1.SecretKeyRef{Name: "bgp-auth.tor1", Key: "password"},
			GracefulRestart: &v1alpha1.GracefulRestart{Enabled: true},
			NodeSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "rack", Operator: metav1.LabelSelectorOpIn, Values: []string{"r1", "r2"},
			}}},
		},
	}
	wantPeer := peer.Spec.DeepCopy()
	wantPeer.PeerPort = 179
	wantPeer.GracefulRestart.RestartTime = &metav1.Duration{Duration: 120 * time.Second}

	bgpAdv := &v1alpha1.BGPAdvertisement{
		ObjectMeta: metav1.ObjectMeta{Name: "valid-bgpadv"},
		Spec: v1alpha1.BGPAdvertisementSpec{
			AdvertisementTarget: v1alpha1.AdvertisementTarget{
				IPPools:      []v1alpha1.ObjectName{"valid-pool", "pool.b"},
				NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"bgp": "on"}},
			},
			Peers:               []v1alpha1.ObjectName{"valid-peer"},
			Communities:         []v1alpha1.Community{"65000:100", "0:65535", "no-export"},
			LargeCommunities:    []v1alpha1.LargeCommunity{"4200000000:1:4294967295"},
			LocalPref:           ptr.To[int64](4294967295),
			AggregationLength:   ptr.To[int32](24),
			AggregationLengthV6: ptr.To[int32](64),
		},
	}
	wantBGPAdv := bgpAdv.Spec.DeepCopy()

	l2Adv := &v1alpha1.L2Advertisement{
		ObjectMeta: metav1.ObjectMeta{Name: "valid-l2adv"},
		Spec: v1alpha1.L2AdvertisementSpec{
			AdvertisementTarget: v1alpha1.AdvertisementTarget{
				IPPoolSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"l2": "on"}},
			},
			Interfaces: []v1alpha1.InterfaceName{"eth*", "enp0s31f6", "bond0.100", "abcdefghijklmno*"},
		},
	}
	wantL2Adv := l2Adv.Spec.DeepCopy()

	for _, tc := range []struct {
		obj  client.Object
		got  client.Object
		spec func(client.Object) any
		want any
	}{
		{pool, &v1alpha1.IPPool{}, func(o client.Object) any { return o.(*v1alpha1.IPPool).Spec }, *wantPool},
		{peer, &v1alpha1.BGPPeer{}, func(o client.Object) any { return o.(*v1alpha1.BGPPeer).Spec }, *wantPeer},
		{bgpAdv, &v1alpha1.BGPAdvertisement{}, func(o client.Object) any { return o.(*v1alpha1.BGPAdvertisement).Spec }, *wantBGPAdv},
		{l2Adv, &v1alpha1.L2Advertisement{}, func(o client.Object) any { return o.(*v1alpha1.L2Advertisement).Spec }, *wantL2Adv},
	} {
		t.Run(tc.obj.GetName(), func(t *testing.T) {
			if err := c.Create(t.Context(), tc.obj); err != nil {
				t.Fatalf("Create() rejected a valid object: %v", err)
			}
			if err := c.Get(t.Context(), client.ObjectKeyFromObject(tc.obj), tc.got); err != nil {
				t.Fatalf("Get(): %v", err)
			}
			if d := cmp.Diff(tc.want, tc.spec(tc.got)); d != "" {
				t.Errorf("stored spec (-want +got):\n%s", d)
			}
		})
	}
}

// Builders of unnamed objects that are valid except for what edit changes.

func pool(edit func(*v1alpha1.IPPoolSpec)) client.Object {
	p := &v1alpha1.IPPool{Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.18.2.0/24"}}}
	edit(&p.Spec)
	return p
}

func peer(edit func(*v1alpha1.BGPPeerSpec)) client.Object {
	p := &v1alpha1.BGPPeer{Spec: v1alpha1.BGPPeerSpec{MyASN: 64512, PeerASN: 64513, PeerAddress: "198.18.0.1"}}
	edit(&p.Spec)
	return p
}

func bgpAdv(edit func(*v1alpha1.BGPAdvertisementSpec)) client.Object {
	a := &v1alpha1.BGPAdvertisement{}
	edit(&a.Spec)
	return a
}

func l2Adv(edit func(*v1alpha1.L2AdvertisementSpec)) client.Object {
	a := &v1alpha1.L2Advertisement{}
	edit(&a.Spec)
	return a
}

func dur(s string) *metav1.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return &metav1.Duration{Duration: d}
}

// invalidRow is an object with exactly one problem, and what the rejection must say: the
// path of the bad field and a fragment of the rule's message.
type invalidRow struct {
	name  string         // also the object's name
	obj   client.Object  // unnamed
	raw   map[string]any // spec fields set on an unstructured copy: values omitempty drops or the Go type cannot hold
	field string
	msg   string
}

func testAdmissionInvalid(t *testing.T, c client.Client, scheme *runtime.Scheme) {
	const (
		notRange  = "must be a CIDR (198.18.2.192/26) or a range first-last"
		minOne    = "should be greater than or equal to 1"
		asnMax    = "should be less than or equal to 4294967295"
		notIP     = "must be an IPv4 or IPv6 address"
		notRouter = "must be a non-zero IPv4 address"
		community = "must be ASN:value with each part 0-65535"
		large     = "must be global:local1:local2 with each part 0-4294967295"
		noMatch   = "in body should match"
		notPeerIP = "must not be an unspecified or loopback address"
		keepalive = "keepaliveTime must be less than holdTime"
		holdTime  = "must be a duration of 0s or between 3s and 65535s"
		minZero   = "should be greater than or equal to 0"
	)
	rows := []invalidRow{
		// IPPool
		{name: "ippool-bad-cidr", field: "spec.addresses[1]", msg: notRange,
			obj: pool(func(s *v1alpha1.IPPoolSpec) {
				s.Addresses = []v1alpha1.AddressRange{"198.18.2.0/24", "198.18.3.0/33"}
			})},
		{name: "ippool-garbage-address", field: "spec.addresses[1]", msg: notRange,
			obj: pool(func(s *v1alpha1.IPPoolSpec) {
				s.Addresses = []v1alpha1.AddressRange{"198.18.2.0/24", "edge-pool"}
			})},
		{name: "ippool-cidr-host-bits", field: "spec.addresses[1]", msg: "CIDR has host bits set",
			obj: pool(func(s *v1alpha1.IPPoolSpec) {
				s.Addresses = []v1alpha1.AddressRange{"2001:db8::/64", "198.18.2.1/24"}
			})},
		{name: "ippool-cidr-v6-host-bits", field: "spec.addresses[0]", msg: "CIDR has host bits set",
			obj: pool(func(s *v1alpha1.IPPoolSpec) {
				s.Addresses = []v1alpha1.AddressRange{"2001:db8::1/64"}
			})},
		{name: "ippool-range-mixed-families", field: "spec.addresses[0]", msg: "range mixes IPv4 and IPv6",
			obj: pool(func(s *v1alpha1.IPPoolSpec) {
				s.Addresses = []v1alpha1.AddressRange{"198.18.2.10-2001:db8::10"}
			})},
		{name: "ippool-range-v4-reversed", field: "spec.addresses[1]", msg: "range first address is greater than last",
			obj: pool(func(s *v1alpha1.IPPoolSpec) {
				s.Addresses = []v1alpha1.AddressRange{"198.18.3.0/24", "198.18.2.20-198.18.2.9"}
			})},
		{name: "ippool-range-three-parts", field: "spec.addresses[0]", msg: notRange,
			obj: pool(func(s *v1alpha1.IPPoolSpec) {
				s.Addresses = []v1alpha1.AddressRange{"198.18.2.10-198.18.2.20-198.18.2.30"}
			})},
		{name: "ippool-empty-addresses", field: "spec.addresses", msg: "should have at least 1 items",
			obj: pool(func(s *v1alpha1.IPPoolSpec) {
				s.Addresses = []v1alpha1.AddressRange{}
			})},
		{name: "ippool-ipmode-unknown", field: "spec.ipMode", msg: `Unsupported value: "Direct"`,
			obj: pool(func(s *v1alpha1.IPPoolSpec) { s.IPMode = "Direct" })},
		{name: "ippool-negative-priority", field: "spec.priority", msg: minZero,
			obj: pool(func(s *v1alpha1.IPPoolSpec) { s.Priority = -1 })},

		// BGPPeer
		{name: "bgppeer-myasn-zero", field: "spec.myASN", msg: minOne,
			obj: peer(func(s *v1alpha1.BGPPeerSpec) { s.MyASN = 0 })},
		{name: "bgppeer-myasn-too-big", field: "spec.myASN", msg: asnMax,
			obj: peer(func(s *v1alpha1.BGPPeerSpec) { s.MyASN = 4294967296 })},
		{name: "bgppeer-peerasn-negative", field: "spec.peerASN", msg: minOne,
			obj: peer(func(s *v1alpha1.BGPPeerSpec) { s.PeerASN = -64513 })},
		{name: "bgppeer-peerasn-too-big", field: "spec.peerASN", msg: asnMax,
			obj: peer(func(s *v1alpha1.BGPPeerSpec) { s.PeerASN = 5000000000 })},
		{name: "bgppeer-peeraddress-hostname", field: "spec.peerAddress", msg: notIP,
			obj: peer(func(s *v1alpha1.BGPPeerSpec) { s.PeerAddress = "tor1.example" })},
		{name: "bgppeer-peeraddress-unspecified", field: "spec.peerAddress", msg: notPeerIP,
			obj: peer(func(s *v1alpha1.BGPPeerSpec) { s.PeerAddress = "0.0.0.0" })},
		{name: "bgppeer-peeraddress-loopback", field: "spec.peerAddress", msg: notPeerIP,
			obj: peer(func(s *v1alpha1.BGPPeerSpec) { s.PeerAddress = "127.0.0.1" })},
		{name: "bgppeer-peeraddress-v6-loopback", field: "spec.peerAddress", msg: notPeerIP,
			obj: peer(func(s *v1alpha1.BGPPeerSpec) { s.PeerAddress = "::1" })},
		{name: "bgppeer-peerport-zero", field: "spec.peerPort", msg: minOne,
			obj: peer(func(*v1alpha1.BGPPeerSpec) {}),
			raw: map[string]any{"peerPort": int64(0)}},
		{name: "bgppeer-peerport-70000", field: "spec.peerPort", msg: "should be less than or equal to 65535",
			obj: peer(func(s *v1alpha1.BGPPeerSpec) { s.PeerPort = 70000 })},
		{name: "bgppeer-sourceaddress-other-family", field: "spec.sourceAddress",
			msg: "sourceAddress must be of the same family as peerAddress",
			obj: peer(func(s *v1alpha1.BGPPeerSpec) {
				s.SourceAddress = "2001:db8:1::10"
			})},
		{name: "bgppeer-sourceaddress-garbage", field: "spec.sourceAddress", msg: notIP,
			obj: peer(func(s *v1alpha1.BGPPeerSpec) { s.SourceAddress = "eth0" })},
		{name: "bgppeer-routerid-ipv6", field: "spec.routerID", msg: notRouter,
			obj: peer(func(s *v1alpha1.BGPPeerSpec) { s.RouterID = "2001:db8::1" })},
		{name: "bgppeer-routerid-garbage", field: "spec.routerID", msg: notRouter,
			obj: peer(func(s *v1alpha1.BGPPeerSpec) { s.RouterID = "node-1" })},
		{name: "bgppeer-routerid-zero", field: "spec.routerID", msg: notRouter,
			obj: peer(func(s *v1alpha1.BGPPeerSpec) { s.RouterID = "0.0.0.0" })},
		{name: "bgppeer-holdtime-1s", field: "spec.holdTime", msg: holdTime,
			obj: peer(func(s *v1alpha1.BGPPeerSpec) { s.HoldTime = dur("1s") })},
		{name: "bgppeer-holdtime-no-unit", field: "spec.holdTime", msg: holdTime,
			obj: peer(func(*v1alpha1.BGPPeerSpec) {}), raw: map[string]any{"holdTime": "90"}},
		{name: "bgppeer-keepalive-days", field: "spec.keepaliveTime", msg: "must be a duration between 0s and 21845s",
			obj: peer(func(*v1alpha1.BGPPeerSpec) {}), raw: map[string]any{"keepaliveTime": "1d"}},
		{name: "bgppeer-keepalive-equals-hold", field: "spec.keepaliveTime", msg: keepalive,
			obj: peer(func(s *v1alpha1.BGPPeerSpec) {
				s.HoldTime, s.KeepaliveTime = dur("30s"), dur("30s")
			})},
		{name: "bgppeer-keepalive-not-below-default-hold", field: "spec.keepaliveTime", msg: "holdTime (default 90s)",
			obj: peer(func(s *v1alpha1.BGPPeerSpec) {
				s.KeepaliveTime = dur("90s")
			})},
		{name: "bgppeer-keepalive-zero-with-hold", field: "spec.keepaliveTime", msg: "needs holdTime 0s too",
			obj: peer(func(s *v1alpha1.BGPPeerSpec) {
				s.HoldTime, s.KeepaliveTime = dur("90s"), dur("0s")
			})},
		{name: "bgppeer-ebgpmultihop-ibgp", field: "spec.ebgpMultiHop", msg: "applies to eBGP only",
			obj: peer(func(s *v1alpha1.BGPPeerSpec) {
				s.PeerASN, s.EBGPMultiHop = s.MyASN, true
			})},
		{name: "bgppeer-password-secret-name", field: "spec.password.name", msg: noMatch,
			obj: peer(func(s *v1alpha1.BGPPeerSpec) {
				s.Password = &v1alpha1.SecretKeyRef{Name: "BGP_Secret", Key: "password"}
			})},
		{name: "bgppeer-restarttime-zero", field: "spec.gracefulRestart.restartTime", msg: "must be a duration between 1s and 4095s",
			obj: peer(func(s *v1alpha1.BGPPeerSpec) {
				s.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true, RestartTime: dur("0s")}
			})},
		{name: "bgppeer-connecttime-zero", field: "spec.connectTime", msg: "must be a duration between 1s and 65535s",
			obj: peer(func(s *v1alpha1.BGPPeerSpec) { s.ConnectTime = dur("0s") })},

		// BGPAdvertisement
		{name: "bgpadv-community-asn-too-big", field: "spec.communities[1]", msg: community,
			obj: bgpAdv(func(s *v1alpha1.BGPAdvertisementSpec) {
				s.Communities = []v1alpha1.Community{"65000:100", "70000:1"}
			})},
		{name: "bgpadv-community-word", field: "spec.communities[0]", msg: community,
			obj: bgpAdv(func(s *v1alpha1.BGPAdvertisementSpec) {
				s.Communities = []v1alpha1.Community{"foo"}
			})},
		{name: "bgpadv-community-three-parts", field: "spec.communities[0]", msg: community,
			obj: bgpAdv(func(s *v1alpha1.BGPAdvertisementSpec) {
				s.Communities = []v1alpha1.Community{"1:2:3"}
			})},
		{name: "bgpadv-large-community-part-too-big", field: "spec.largeCommunities[0]", msg: large,
			obj: bgpAdv(func(s *v1alpha1.BGPAdvertisementSpec) {
				s.LargeCommunities = []v1alpha1.LargeCommunity{"64512:4294967296:1"}
			})},
		{name: "bgpadv-large-community-two-parts", field: "spec.largeCommunities[1]", msg: large,
			obj: bgpAdv(func(s *v1alpha1.BGPAdvertisementSpec) {
				s.LargeCommunities = []v1alpha1.LargeCommunity{"64512:1:2", "64512:1"}
			})},
		{name: "bgpadv-localpref-negative", field: "spec.localPref", msg: minZero,
			obj: bgpAdv(func(s *v1alpha1.BGPAdvertisementSpec) {
				s.LocalPref = ptr.To[int64](-1)
			})},
		{name: "bgpadv-aggregationlength-33", field: "spec.aggregationLength", msg: "should be less than or equal to 32",
			obj: bgpAdv(func(s *v1alpha1.BGPAdvertisementSpec) {
				s.AggregationLength = ptr.To[int32](33)
			})},
		{name: "bgpadv-aggregationlengthv6-129", field: "spec.aggregationLengthV6", msg: "should be less than or equal to 128",
			obj: bgpAdv(func(s *v1alpha1.BGPAdvertisementSpec) {
				s.AggregationLengthV6 = ptr.To[int32](129)
			})},
		{name: "bgpadv-ippools-uppercase", field: "spec.ipPools[0]", msg: noMatch,
			obj: bgpAdv(func(s *v1alpha1.BGPAdvertisementSpec) {
				s.IPPools = []v1alpha1.ObjectName{"Edge-Pool"}
			})},
		{name: "bgpadv-peers-uppercase", field: "spec.peers[0]", msg: noMatch,
			obj: bgpAdv(func(s *v1alpha1.BGPAdvertisementSpec) {
				s.Peers = []v1alpha1.ObjectName{"TOR1"}
			})},

		// L2Advertisement
		{name: "l2adv-interface-too-long", field: "spec.interfaces[1]", msg: "Too long: may not be more than 16 bytes",
			obj: l2Adv(func(s *v1alpha1.L2AdvertisementSpec) {
				s.Interfaces = []v1alpha1.InterfaceName{"eth0", "enp0s31f6-uplink-a"}
			})},
		{name: "l2adv-interface-space", field: "spec.interfaces[0]", msg: noMatch,
			obj: l2Adv(func(s *v1alpha1.L2AdvertisementSpec) {
				s.Interfaces = []v1alpha1.InterfaceName{"eth 0"}
			})},
		{name: "l2adv-ippools-uppercase", field: "spec.ipPools[0]", msg: noMatch,
			obj: l2Adv(func(s *v1alpha1.L2AdvertisementSpec) {
				s.IPPools = []v1alpha1.ObjectName{"Pool_A"}
			})},
	}

	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			obj := row.obj
			obj.SetName(row.name)
			if row.raw != nil {
				obj = withSpecFields(t, scheme, obj, row.raw)
			}
			err := c.Create(t.Context(), obj)
			if err == nil {
				t.Fatalf("Create(%s) was accepted; want rejected: %s: %s", row.name, row.field, row.msg)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("Create(%s) = %v; want an Invalid error", row.name, err)
			}
			if !strings.Contains(err.Error(), row.field) || !strings.Contains(err.Error(), row.msg) {
				t.Errorf("Create(%s) error = %q\nwant it to name %q and contain %q", row.name, err, row.field, row.msg)
			}
			// Every cause must be about the one field the row breaks, save the apiserver's
			// field-less note that it skipped CEL rules after a schema error.
			var status apierrors.APIStatus
			if errors.As(err, &status) && status.Status().Details != nil {
				for _, cause := range status.Status().Details.Causes {
					if cause.Field != row.field && !strings.Contains(cause.Message, "validation rules were not checked") {
						t.Errorf("Create(%s): cause for %s (%s); want only causes for %s", row.name, cause.Field, cause.Message, row.field)
					}
				}
			}
		})
	}
}

// withSpecFields converts obj to unstructured and sets fields of its spec, for values the
// typed object cannot carry: an explicit 0 that omitempty drops, a duration that is no
// time.Duration.
func withSpecFields(t *testing.T, scheme *runtime.Scheme, obj client.Object, fields map[string]any) client.Object {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	gvk, err := apiutil.GVKForObject(obj, scheme)
	if err != nil {
		t.Fatal(err)
	}
	u.SetGroupVersionKind(gvk)
	for k, v := range fields {
		if err := unstructured.SetNestedField(u.Object, v, "spec", k); err != nil {
			t.Fatal(err)
		}
	}
	return u
}
