package controller

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/controller/allocator"
)

func ipPool(name string, addrs ...v1alpha1.AddressRange) v1alpha1.IPPool {
	p := v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}}
	p.Spec.Addresses = addrs
	return p
}

// nonZero gathers reg and returns the series of name that are not 0, as "label=value,…" → value.
func nonZero(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var key string
			for i, l := range m.GetLabel() {
				if i > 0 {
					key += ","
				}
				key += l.GetName() + "=" + l.GetValue()
			}
			if v := m.GetGauge().GetValue(); v != 0 {
				out[key] = v
			}
		}
	}
	return out
}

// TestConfigProblemsMetric: the gauge counts the objects config.Build reports, per kind
// and reason, follows the latest build, and starts every known kind and reason at 0.
func TestConfigProblemsMetric(t *testing.T) {
	var problems []config.Problem
	build := func(res config.Resources) *config.Snapshot {
		snap, p := config.Build(res)
		problems = p
		return snap
	}
	snap := build(config.Resources{Pools: []v1alpha1.IPPool{
		ipPool("a", "203.0.113.0/28"),
		ipPool("b", "203.0.113.8/29"),   // overlaps a, which is older by name: b is left out
		ipPool("c", "203.0.113.12/30"),  // overlaps a too
		ipPool("d", "not-an-address"),   // refused outright
		ipPool("e", "198.51.100.0/30")}, // fine
		L2Advertisements: []v1alpha1.L2Advertisement{{ObjectMeta: metav1.ObjectMeta{Name: "l2"},
			Spec: v1alpha1.L2AdvertisementSpec{AdvertisementTarget: v1alpha1.AdvertisementTarget{IPPools: []v1alpha1.ObjectName{"missing"}}}}},
	})
	lb := &LoadBalancer{alloc: allocator.New(snap), pending: map[allocator.Key]bool{}}
	reg := prometheus.NewPedanticRegistry()
	newMetrics(reg, lb, func() []config.Problem { return problems })

	const name = "berth_controller_config_objects_with_problems"
	want := map[string]float64{
		"kind=IPPool,reason=PoolOverlap":           2,
		"kind=IPPool,reason=InvalidAddresses":      1,
		"kind=L2Advertisement,reason=PoolNotFound": 1,
	}
	if d := cmp.Diff(want, nonZero(t, reg, name)); d != "" {
		t.Errorf("%s (-want +got):\n%s", name, d)
	}
	if n := testutil.CollectAndCount(reg, name); n != len(problemKinds)*len(problemReasons) {
		t.Errorf("%s has %d series, want %d (every kind and reason from the start)", name, n, len(problemKinds)*len(problemReasons))
	}

	build(config.Resources{Pools: []v1alpha1.IPPool{ipPool("a", "203.0.113.0/28")}})
	if d := cmp.Diff(map[string]float64{}, nonZero(t, reg, name)); d != "" {
		t.Errorf("%s after the problems were fixed (-want +got):\n%s", name, d)
	}

	// The pending gauge follows the waiting Services.
	const pending = "berth_controller_pending_services"
	lb.pending[allocator.Key{Namespace: "ns", Name: "web"}] = true
	if d := cmp.Diff(map[string]float64{"": 1}, nonZero(t, reg, pending)); d != "" {
		t.Errorf("%s (-want +got):\n%s", pending, d)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
