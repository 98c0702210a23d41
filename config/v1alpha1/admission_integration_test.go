//go:build integration

package v1alpha1_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/lab/controlplane"
)

// TestAdmission checks that valid objects are stored with their defaults by a real
// kube-apiserver. Invalid ones are the corpus in config/testdata/invalid, which
// config/admission's tests apply to the apiserver and to berthctl check's admitter.
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
