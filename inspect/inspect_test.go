package inspect

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

func lb(ns, name string, ips []string, mode corev1.LoadBalancerIPMode, conds ...metav1.Condition) corev1.Service {
	s := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip, IPMode: ptr.To(mode)})
	}
	s.Status.Conditions = conds
	return s
}

// TestServicesAndPools: the status table joins each Service's addresses with the pool
// holding them, the nodes answering ARP/NDP and announcing BGP (from their
// NodeAnnouncements), the peers, and every problem: a False condition, two nodes claiming
// one L2 address, a conflict a node saw. Pools show their use per family.
func TestServicesAndPools(t *testing.T) {
	pools := []v1alpha1.IPPool{
		{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.18.2.192/26", "2001:db8:18:2::1:0/112"}},
			Status: v1alpha1.IPPoolStatus{IPv4: &v1alpha1.FamilyUsage{InUse: "16", Capacity: "64"}, IPv6: &v1alpha1.FamilyUsage{InUse: "1", Capacity: "65536"},
				Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "bgp"}, Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"203.0.113.0/24"}, IPMode: v1alpha1.IPModeProxy},
			Status: v1alpha1.IPPoolStatus{IPv4: &v1alpha1.FamilyUsage{InUse: "256", Capacity: "256"},
				Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "dup"}, Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"203.0.113.0/28"}},
			Status: v1alpha1.IPPoolStatus{Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionFalse, Reason: "PoolOverlap", Message: `overlaps pool "bgp"`}}}},
	}
	snap, _ := config.Build(config.Resources{Pools: pools})
	svcs := []corev1.Service{
		lb("demo", "web", []string{"2001:db8:18:2::1:0", "198.18.2.192"}, corev1.LoadBalancerIPModeVIP),
		lb("demo", "api", []string{"203.0.113.7"}, corev1.LoadBalancerIPModeProxy),
		lb("demo", "wait", nil, "", metav1.Condition{Type: conditionAllocated, Status: metav1.ConditionFalse, Reason: "PoolExhausted", Message: `pool "bgp" has no free IPv4 address`}),
		{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "internal"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "other-class"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass: ptr.To("example.com/lb")}},
		lb("demo", "stray", []string{"198.51.100.9"}, corev1.LoadBalancerIPModeVIP),
	}
	berth := Classes{LoadBalancerClass: "berth.dev/lb", HandleDefaultClass: true}
	anns := []v1alpha1.NodeAnnouncement{
		{ObjectMeta: metav1.ObjectMeta{Name: "node1"}, Status: v1alpha1.NodeAnnouncementStatus{Services: []v1alpha1.AnnouncedService{
			{Namespace: "demo", Name: "web", L2: []string{"198.18.2.192"}, Interfaces: []string{"eth1"}},
			{Namespace: "demo", Name: "api", BGP: []string{"203.0.113.7"}, Peers: []string{"frr"}},
		}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "node2"}, Status: v1alpha1.NodeAnnouncementStatus{
			Services: []v1alpha1.AnnouncedService{
				{Namespace: "demo", Name: "web", L2: []string{"2001:db8:18:2::1:0", "198.18.2.192"}, Interfaces: []string{"eth1"}},
				{Namespace: "demo", Name: "api", BGP: []string{"203.0.113.7"}, Peers: []string{"bird", "frr"}},
			},
			Conflicts: []v1alpha1.L2Conflict{{IP: "198.18.2.192", MAC: "02:00:00:00:00:99", Interface: "eth1"}},
		}},
	}
	var b bytes.Buffer
	if err := WriteServices(&b, FormatTable, Services(svcs, anns, snap, berth)); err != nil {
		t.Fatal(err)
	}
	golden(t, "status.golden", b.String())

	b.Reset()
	if err := WritePools(&b, FormatTable, Pools(pools)); err != nil {
		t.Fatal(err)
	}
	golden(t, "pools.golden", b.String())

	b.Reset()
	if err := WriteServices(&b, FormatYAML, Services(svcs[:1], anns[:1], snap, berth)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "pool: lan") || !strings.Contains(b.String(), "198.18.2.192:\n    - node1") {
		t.Errorf("yaml:\n%s", b.String())
	}
	if err := CheckFormat("wide"); err == nil {
		t.Error("CheckFormat(wide) = nil, want an error")
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}
