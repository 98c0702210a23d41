package controller

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthlb/berth/controller/allocator"
)

// metrics are berth-controller's Prometheus metrics. Labels stay bounded: pool names come
// from the configuration, reasons from allocator.Reason.
type metrics struct {
	allocations     *prometheus.CounterVec
	failures        *prometheus.CounterVec
	conditionWrites *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, lb *LoadBalancer) *metrics {
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
		reg.MustRegister(m.allocations, m.failures, m.conditionWrites, &poolCollector{lb: lb})
	}
	return m
}

var (
	descInUse = prometheus.NewDesc("berth_allocator_addresses_in_use",
		"Addresses Services hold, by pool and family.", []string{"pool", "family"}, nil)
	descCapacity = prometheus.NewDesc("berth_allocator_addresses_capacity",
		"Addresses a pool can hand out, by pool and family (an IPv6 /64 is 1.8e19).", []string{"pool", "family"}, nil)
	descPending = prometheus.NewDesc("berth_controller_pending_services",
		"Services waiting for an address.", nil, nil)
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
