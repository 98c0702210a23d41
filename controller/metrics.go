package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/controller/allocator"
)

// metrics are berth-controller's Prometheus metrics. Labels stay bounded: pool names come
// from the configuration, reasons from allocator.Reason and config.Reason, kinds from
// config.Kind.
type metrics struct {
	allocations     *prometheus.CounterVec
	failures        *prometheus.CounterVec
	conditionWrites *prometheus.CounterVec
}

// newMetrics builds the controller's metrics and registers them on reg (nil: none).
// problems returns what the last config.Build found wrong; nil reports none.
func newMetrics(reg prometheus.Registerer, lb *LoadBalancer, problems func() []config.Problem) *metrics {
	m := &metrics{
		allocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_controller_allocations_total",
			Help: "Services given new addresses, by pool.",
		}, []string{"pool"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_controller_allocation_failures_total",
			Help: "Failed attempts to give a Service its addresses, by reason.",
		}, []string{"reason"}),
		conditionWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_controller_service_condition_writes_total",
			Help: "Status patches of berth's Service conditions (set or removed), by condition type.",
		}, []string{"condition"}),
	}
	for _, r := range []allocator.Reason{allocator.InvalidRequest, allocator.PoolNotFound, allocator.PoolNotAllowed,
		allocator.NoPoolForService, allocator.RequestedIPNotInPool, allocator.IPInUse, allocator.PoolExhausted,
		allocator.FamilyUnavailable} {
		m.failures.WithLabelValues(string(r))
	}
	m.failures.WithLabelValues(EventBadRequest)
	for _, c := range []string{ConditionAllocated, ConditionAnnounced, ConditionProxyNodePorts} {
		m.conditionWrites.WithLabelValues(c)
	}
	if reg != nil {
		reg.MustRegister(m.collectors(lb, problems)...)
	}
	return m
}

// collectors are what newMetrics registers.
func (m *metrics) collectors(lb *LoadBalancer, problems func() []config.Problem) []prometheus.Collector {
	return []prometheus.Collector{m.allocations, m.failures, m.conditionWrites, &poolCollector{lb: lb},
		&problemCollector{problems: problems}}
}

var (
	descInUse = prometheus.NewDesc("berth_allocator_addresses_in_use",
		"Addresses Services hold, by pool and family.", []string{"pool", "family"}, nil)
	descCapacity = prometheus.NewDesc("berth_allocator_addresses_capacity",
		"Addresses a pool can hand out, by pool and family (an IPv6 /64 is 1.8e19).", []string{"pool", "family"}, nil)
	descPending = prometheus.NewDesc("berth_controller_pending_services",
		"Services berth handles that wait for an address because allocation failed (pool exhausted, no pool "+
			"for the Service, requested IP taken, ...); they are retried when addresses free up.", nil, nil)
	descProblems = prometheus.NewDesc("berth_controller_config_objects_with_problems",
		"berth objects (IPPool, BGPPeer, BGPAdvertisement, L2Advertisement) the configuration build found a "+
			"problem with, by kind and reason: left out (condition Accepted=False) or used without what they "+
			"name that is missing (ResolvedRefs=False). An object with problems of two reasons counts under each.",
		[]string{"kind", "reason"}, nil)
)

// poolCollector reads the allocator at scrape time, so the figures are never stale.
type poolCollector struct{ lb *LoadBalancer }

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descInUse
	ch <- descCapacity
	ch <- descPending
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	c.lb.mu.Lock()
	defer c.lb.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(len(c.lb.pending)))
	if c.lb.alloc == nil {
		return
	}
	for _, name := range c.lb.alloc.Pools() {
		u, ok := c.lb.alloc.Usage(name)
		if !ok {
			continue
		}
		for _, f := range []struct {
			family string
			u      allocator.FamilyUsage
		}{{"ipv4", u.IPv4}, {"ipv6", u.IPv6}} {
			capacity, _ := f.u.Capacity.Float64()
			if capacity == 0 && f.u.InUse == 0 {
				continue
			}
			ch <- prometheus.MustNewConstMetric(descInUse, prometheus.GaugeValue, float64(f.u.InUse), name, f.family)
			ch <- prometheus.MustNewConstMetric(descCapacity, prometheus.GaugeValue, capacity, name, f.family)
		}
	}
}

// problemKinds and problemReasons are the label values reported even at 0, so that a
// dashboard tells "no problem" from "no data". A reason missing here still shows once it occurs.
var (
	problemKinds   = []config.Kind{config.KindIPPool, config.KindBGPPeer, config.KindBGPAdvertisement, config.KindL2Advertisement}
	problemReasons = []config.Reason{config.InvalidAddresses, config.PoolOverlap, config.InvalidSelector,
		config.InvalidPeer, config.DuplicatePeer, config.InvalidCommunity, config.InvalidAdvertisement,
		config.AdvertisementConflict, config.PoolNotFound, config.PeerNotFound}
)

// problemCollector counts, at scrape time, the objects of each kind that the last
// config.Build reported a problem with, by reason.
type problemCollector struct{ problems func() []config.Problem }

func (c *problemCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descProblems }

func (c *problemCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct {
		kind   config.Kind
		reason config.Reason
	}
	objects := map[key]map[string]bool{}
	for _, k := range problemKinds {
		for _, r := range problemReasons {
			objects[key{k, r}] = map[string]bool{}
		}
	}
	if c.problems != nil {
		for _, p := range c.problems() {
			k := key{p.Object.Kind, p.Reason}
			if objects[k] == nil {
				objects[k] = map[string]bool{}
			}
			objects[k][p.Object.Name] = true
		}
	}
	for k, names := range objects {
		ch <- prometheus.MustNewConstMetric(descProblems, prometheus.GaugeValue, float64(len(names)), string(k.kind), string(k.reason))
	}
}

// RegisterExampleMetrics registers on reg the collectors the Controller registers, holding
// one example pool, one waiting Service and one configuration problem, so that every
// metric can be listed with its type, labels and help (docs/metrics.md, the checks of
// deploy/observability). Never serve reg.
func RegisterExampleMetrics(reg prometheus.Registerer) error {
	pool := v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "example"}}
	pool.Spec.Addresses = []v1alpha1.AddressRange{"203.0.113.0/30", "2001:db8:113::/126"}
	snap, problems := config.Build(config.Resources{Pools: []v1alpha1.IPPool{pool}})
	problems = append(problems, config.Problem{Object: config.ObjectRef{Kind: config.KindIPPool, Name: "other"},
		Condition: v1alpha1.ConditionAccepted, Reason: config.PoolOverlap, Message: "example"})
	lb := &LoadBalancer{alloc: allocator.New(snap), pending: map[allocator.Key]bool{{Namespace: "example", Name: "waiting"}: true}}
	get := func() []config.Problem { return problems }
	m := newMetrics(nil, lb, get)
	m.allocations.WithLabelValues("example")
	for _, c := range m.collectors(lb, get) {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
