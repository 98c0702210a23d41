// Package controller is berth's cloud provider: a LoadBalancer that assigns addresses from
// berth's pools, used both by the upstream service controller (Services without a
// loadBalancerClass) and by berth's own loop (Services with berth's class).
package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/big"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/source"
	"github.com/berthlb/berth/controller/allocator"
)

// ConditionAllocated is the Service condition berth sets: True once the Service holds its
// addresses, False with the allocator's reason while it waits.
const ConditionAllocated = "berth.dev/Allocated"

// Event reasons berth adds to those of the allocator (allocator.Reason values).
const (
	EventIPAllocated     = "IPAllocated"
	EventIPReleased      = "IPReleased"
	EventIPReclaimFailed = "IPReclaimFailed"
	EventBadRequest      = "InvalidAnnotation"
)

// errNotReady makes the service controller retry while startup has not claimed the
// addresses already in use: allocating before that could hand out an address twice.
var errNotReady = errors.New("berth-controller is still claiming the addresses already in use")

// userError is a mistake in the Service that only its owner can fix: it is reported, and
// retrying before the Service changes would only repeat the report.
type userError struct{ error }

func (e userError) Unwrap() error { return e.error }

var _ cloudprovider.LoadBalancer = (*LoadBalancer)(nil)

// LoadBalancer assigns addresses to Services. Its methods are safe for concurrent use.
type LoadBalancer struct {
	class         string
	handleDefault bool
	namespaces    corelisters.NamespaceLister
	recorder      record.EventRecorder
	metrics       *metrics

	mu      sync.Mutex
	alloc   *allocator.Allocator
	claimed bool
	// pending holds the Services that wait for an address; they are retried at once
	// when one may have become available.
	pending map[allocator.Key]bool
	// kick asks berth's own loop to sync these Services (set by the loop).
	kick func([]allocator.Key)
	// usageChanged tells the pool status writer that counts changed.
	usageChanged func()

	// serial makes the two loops take turns on one Service, so that the condition each
	// writes matches the allocation it made.
	serial [64]sync.Mutex
	// conditions writes berth.dev/Allocated, and remembers what it wrote.
	conditions *serviceConditions
}

func (l *LoadBalancer) lockService(k allocator.Key) func() {
	h := fnv.New32a()
	h.Write([]byte(k.Namespace))
	h.Write([]byte{0})
	h.Write([]byte(k.Name))
	m := &l.serial[h.Sum32()%uint32(len(l.serial))]
	m.Lock()
	return m.Unlock
}

// poolUsage reports a pool's use for the status writer.
func (l *LoadBalancer) poolUsage(pool string) (source.PoolUsage, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.alloc == nil || !l.claimed {
		return source.PoolUsage{}, false
	}
	u, ok := l.alloc.Usage(pool)
	if !ok {
		// No Service holds anything of a pool the allocator has no record of.
		return source.PoolUsage{InUse4: new(big.Int), InUse6: new(big.Int)}, true
	}
	return source.PoolUsage{InUse4: big.NewInt(int64(u.IPv4.InUse)), InUse6: big.NewInt(int64(u.IPv6.InUse))}, true
}

func (l *LoadBalancer) notifyUsage() {
	if l.usageChanged != nil {
		l.usageChanged()
	}
}

// handles reports whether berth is responsible for the Service's load balancer.
func (l *LoadBalancer) handles(svc *corev1.Service) bool {
	if c := svc.Spec.LoadBalancerClass; c != nil {
		return *c == l.class
	}
	return l.handleDefault
}

// GetLoadBalancer reports the addresses the Service holds.
func (l *LoadBalancer) GetLoadBalancer(_ context.Context, _ string, svc *corev1.Service) (*corev1.LoadBalancerStatus, bool, error) {
	if !l.handles(svc) {
		return nil, false, nil
	}
	l.mu.Lock()
	a, ok := l.alloc.Assigned(keyOf(svc))
	l.mu.Unlock()
	if !ok {
		return nil, false, nil
	}
	return ingressFor(a), true, nil
}

// GetLoadBalancerName returns the conventional name; berth keeps nothing under it.
func (l *LoadBalancer) GetLoadBalancerName(_ context.Context, _ string, svc *corev1.Service) string {
	return cloudprovider.DefaultLoadBalancerName(svc)
}

// EnsureLoadBalancer assigns the Service its addresses (keeping those it holds) and returns
// the status to write; it writes only the berth.dev/Allocated condition itself.
func (l *LoadBalancer) EnsureLoadBalancer(ctx context.Context, _ string, svc *corev1.Service, _ []*corev1.Node) (*corev1.LoadBalancerStatus, error) {
	if !l.handles(svc) {
		return nil, cloudprovider.ImplementedElsewhere
	}
	a, err := l.ensure(ctx, svc)
	if err != nil {
		return nil, err
	}
	return ingressFor(a), nil
}

// UpdateLoadBalancer has nothing to do: which nodes announce is the speakers' decision.
func (l *LoadBalancer) UpdateLoadBalancer(context.Context, string, *corev1.Service, []*corev1.Node) error {
	return nil
}

// EnsureLoadBalancerDeleted frees the Service's addresses.
func (l *LoadBalancer) EnsureLoadBalancerDeleted(ctx context.Context, _ string, svc *corev1.Service) error {
	if !l.handles(svc) {
		return cloudprovider.ImplementedElsewhere
	}
	l.release(ctx, svc)
	return l.clearCondition(ctx, svc)
}

// holds reports whether the Service holds addresses.
func (l *LoadBalancer) holds(svc *corev1.Service) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.alloc.Assigned(keyOf(svc))
	return ok
}

// clearCondition removes berth.dev/Allocated and berth.dev/ProxyNodePorts from a Service
// that is no longer berth's.
func (l *LoadBalancer) clearCondition(ctx context.Context, svc *corev1.Service) error {
	return errors.Join(l.conditions.clear(ctx, svc, ConditionAllocated), l.conditions.clear(ctx, svc, ConditionProxyNodePorts))
}

func keyOf(svc *corev1.Service) allocator.Key {
	return allocator.Key{Namespace: svc.Namespace, Name: svc.Name}
}

// ensure allocates for svc and records the outcome as an Event and a condition.
func (l *LoadBalancer) ensure(ctx context.Context, svc *corev1.Service) (allocator.Assignment, error) {
	defer l.lockService(keyOf(svc))()
	a, allocated, err := l.allocate(ctx, svc)
	if err != nil {
		return a, err
	}
	_, err = l.conditions.set(ctx, svc, allocated)
	return a, errors.Join(err, l.setProxyCondition(ctx, svc, a))
}

// allocate allocates for svc and records the outcome as an Event; a failure also as the
// Allocated condition. On success it returns the Allocated condition to write, which the
// caller writes (berth's class loop writes it with the ingress, in one patch). The caller
// holds lockService for the Service until it has written.
func (l *LoadBalancer) allocate(ctx context.Context, svc *corev1.Service) (allocator.Assignment, metav1.Condition, error) {
	logger := klog.FromContext(ctx).WithValues("service", klog.KObj(svc))
	var nsLabels map[string]string
	if ns, err := l.namespaces.Get(svc.Namespace); err == nil {
		nsLabels = ns.Labels
	} else if !apierrors.IsNotFound(err) {
		return allocator.Assignment{}, metav1.Condition{}, fmt.Errorf("namespace of service %s: %w", klog.KObj(svc), err)
	}
	req, err := requestFor(svc, nsLabels)
	if err != nil {
		l.metrics.failures.WithLabelValues(EventBadRequest).Inc()
		l.recorder.Event(svc, corev1.EventTypeWarning, EventBadRequest, err.Error())
		return allocator.Assignment{}, metav1.Condition{}, errors.Join(userError{err}, l.setCondition(ctx, svc, metav1.ConditionFalse, EventBadRequest, err.Error()))
	}

	l.mu.Lock()
	if !l.claimed {
		l.mu.Unlock()
		return allocator.Assignment{}, metav1.Condition{}, errNotReady
	}
	prev, _ := l.alloc.Assigned(req.Key)
	a, err := l.alloc.Allocate(req)
	if err != nil {
		l.pending[req.Key] = true
	} else {
		delete(l.pending, req.Key)
	}
	l.mu.Unlock()

	if err != nil {
		reason := string(allocator.InvalidRequest)
		var ae *allocator.Error
		if errors.As(err, &ae) {
			reason = string(ae.Reason)
		}
		l.metrics.failures.WithLabelValues(reason).Inc()
		logger.V(2).Info("Allocation failed", "reason", reason, "err", err)
		l.recorder.Event(svc, corev1.EventTypeWarning, reason, err.Error())
		return a, metav1.Condition{}, errors.Join(fmt.Errorf("service %s: %w", klog.KObj(svc), err),
			l.setCondition(ctx, svc, metav1.ConditionFalse, reason, err.Error()))
	}
	// Judge "new" by the allocator's record: the Service copy may predate our last write.
	if !slices.Equal(a.IPs, prev.IPs) {
		l.notifyUsage()
		l.metrics.allocations.WithLabelValues(a.Pool).Inc()
		logger.V(2).Info("Allocated", "pool", a.Pool, "ips", a.IPs)
		l.recorder.Eventf(svc, corev1.EventTypeNormal, EventIPAllocated, "Assigned %s from pool %q", joinAddrs(a), a.Pool)
	}
	msg := fmt.Sprintf("%s from pool %q", joinAddrs(a), a.Pool)
	return a, metav1.Condition{Type: ConditionAllocated, Status: metav1.ConditionTrue, Reason: EventIPAllocated, Message: msg}, nil
}

// release frees what the Service holds and retries the Services waiting for an address.
func (l *LoadBalancer) release(ctx context.Context, svc *corev1.Service) {
	key := keyOf(svc)
	l.mu.Lock()
	a, held := l.alloc.Assigned(key)
	l.alloc.Release(key)
	delete(l.pending, key)
	waiting := l.pendingKeys()
	l.mu.Unlock()
	l.conditions.forget(key, ConditionAllocated)
	l.conditions.forget(key, ConditionProxyNodePorts)
	if held {
		l.notifyUsage()
		klog.FromContext(ctx).V(2).Info("Released", "service", klog.KObj(svc), "ips", a.IPs)
		l.recorder.Eventf(svc, corev1.EventTypeNormal, EventIPReleased, "Released %s to pool %q", joinAddrs(a), a.Pool)
		l.retry(waiting)
	}
}

// pendingKeys returns the waiting Services, sorted; l.mu must be held.
func (l *LoadBalancer) pendingKeys() []allocator.Key {
	keys := make([]allocator.Key, 0, len(l.pending))
	for k := range l.pending {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b allocator.Key) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return keys
}

func (l *LoadBalancer) retry(keys []allocator.Key) {
	if len(keys) > 0 && l.kick != nil {
		l.kick(keys)
	}
}

// SetConfig switches the allocator to a new snapshot and re-examines only the Services it
// affects, plus the waiting ones when the pools grew.
func (l *LoadBalancer) SetConfig(snap *config.Snapshot) {
	l.mu.Lock()
	if l.alloc == nil {
		l.alloc = allocator.New(snap)
		l.mu.Unlock()
		return
	}
	keys, widened := l.alloc.SetConfig(snap)
	if widened {
		keys = append(keys, l.pendingKeys()...)
	}
	l.mu.Unlock()
	l.retry(keys)
}

// setCondition writes the berth.dev/Allocated condition when it differs from the Service's.
func (l *LoadBalancer) setCondition(ctx context.Context, svc *corev1.Service, status metav1.ConditionStatus, reason, msg string) error {
	_, err := l.conditions.set(ctx, svc, metav1.Condition{Type: ConditionAllocated, Status: status, Reason: reason, Message: msg})
	return err
}

func joinAddrs(a allocator.Assignment) string {
	s := make([]string, len(a.IPs))
	for i, ip := range a.IPs {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}
