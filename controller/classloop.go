package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/controller/allocator"
)

// cleanupFinalizer is the finalizer the upstream service controller uses; berth's loop uses
// the same one so a Service's load balancer is always released before it goes.
const cleanupFinalizer = "service.kubernetes.io/load-balancer-cleanup"

// classLoop is berth's own Service loop, in the shape of sample-controller. It owns the
// Services of berth's loadBalancerClass (finalizer, status, release), and finishes Services
// of the default class that wait for an address when one may have become available, since
// the upstream controller would retry them only after its backoff (5 s to 5 min).
type classLoop struct {
	lb       *LoadBalancer
	client   kubernetes.Interface
	services corelisters.ServiceLister
	queue    workqueue.TypedRateLimitingInterface[cache.ObjectName]

	// writtenOver holds, per Service, the resourceVersion our last ingress write was based
	// on: while the lister still shows that version, it has not seen the write, and its
	// stale ingress must not cause the same write again.
	mu          sync.Mutex
	writtenOver map[cache.ObjectName]string
}

func newClassLoop(lb *LoadBalancer, client kubernetes.Interface, services corelisters.ServiceLister) *classLoop {
	return &classLoop{
		lb:          lb,
		client:      client,
		services:    services,
		writtenOver: map[cache.ObjectName]string{},
		// Per-item backoff 5 ms → 60 s for API errors (capacity waits are not retried
		// by backoff: a release or a config change kicks them); the bucket caps the loop
		// at 100 syncs/s with bursts of 500, in line with the client's QPS.
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedMaxOfRateLimiter(
				workqueue.NewTypedItemExponentialFailureRateLimiter[cache.ObjectName](5*time.Millisecond, 60*time.Second),
				&workqueue.TypedBucketRateLimiter[cache.ObjectName]{Limiter: rate.NewLimiter(rate.Limit(100), 500)},
			),
			workqueue.TypedRateLimitingQueueConfig[cache.ObjectName]{Name: "berth-services"},
		),
	}
}

// handlers turns Service events for berth's class into keys.
func (c *classLoop) handlers() cache.ResourceEventHandler {
	isOurs := func(obj any) (*corev1.Service, bool) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		svc, ok := obj.(*corev1.Service)
		return svc, ok && svc.Spec.LoadBalancerClass != nil && *svc.Spec.LoadBalancerClass == c.lb.class
	}
	enqueue := func(obj any) {
		if svc, ok := isOurs(obj); ok {
			c.queue.Add(cache.MetaObjectToName(svc))
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue,
		UpdateFunc: func(old, cur any) {
			if old.(*corev1.Service).ResourceVersion == cur.(*corev1.Service).ResourceVersion {
				return
			}
			// A Service turned into another type loses its class: the old copy says
			// it was ours, and ours to clean up.
			if _, was := isOurs(old); was {
				enqueue(old)
				return
			}
			enqueue(cur)
		},
		DeleteFunc: enqueue,
	}
}

func (c *classLoop) kick(keys []allocator.Key) {
	for _, k := range keys {
		c.queue.Add(cache.ObjectName{Namespace: k.Namespace, Name: k.Name})
	}
}

func (c *classLoop) run(ctx context.Context, workers int) {
	defer c.queue.ShutDown()
	for range workers {
		go func() {
			for c.next(ctx) {
			}
		}()
	}
	<-ctx.Done()
}

func (c *classLoop) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.sync(ctx, key); err != nil {
		klog.FromContext(ctx).Error(err, "Service sync failed", "service", key)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

func (c *classLoop) sync(ctx context.Context, key cache.ObjectName) error {
	svc, err := c.services.Services(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		c.mu.Lock()
		delete(c.writtenOver, key)
		c.mu.Unlock()
		c.lb.release(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}})
		return nil
	}
	if err != nil {
		return err
	}
	ours := svc.Spec.LoadBalancerClass != nil && *svc.Spec.LoadBalancerClass == c.lb.class
	wants := svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.DeletionTimestamp == nil
	upstreamOwns := svc.Spec.LoadBalancerClass == nil && c.lb.handleDefault
	switch {
	case upstreamOwns:
		// The upstream controller owns this Service; only finish a waiting one once the
		// upstream controller has taken it in (its finalizer is there).
		if !wants || !slices.Contains(svc.Finalizers, cleanupFinalizer) {
			return nil
		}
	case ours && wants:
		if err := c.setFinalizer(ctx, svc, true); err != nil {
			return err
		}
	case ours || c.lb.holds(svc):
		// Deleted, or no longer a LoadBalancer of ours (a type change drops the class),
		// with no other berth loop to clean up after it.
		return c.cleanup(ctx, svc)
	default:
		return nil
	}
	defer c.lb.lockService(keyOf(svc))()
	a, allocated, err := c.lb.allocate(ctx, svc)
	if errors.Is(err, errNotReady) {
		return err
	}
	if err != nil {
		// Recorded as an Event and a condition; a release, a config change or an edit of
		// the Service retries it.
		var ae *allocator.Error
		var ue userError
		if errors.As(err, &ae) || errors.As(err, &ue) {
			return nil
		}
		return err
	}
	if err := c.writeStatus(ctx, key, svc, ingressFor(a), allocated); err != nil {
		return err
	}
	return c.lb.setProxyCondition(ctx, svc, a)
}

// writeStatus writes the ingress and the Allocated condition where the Service's differ,
// in one strategic-merge patch of the status: one write per allocation, not two.
func (c *classLoop) writeStatus(ctx context.Context, key cache.ObjectName, svc *corev1.Service, want *corev1.LoadBalancerStatus, allocated metav1.Condition) error {
	c.mu.Lock()
	base, inFlight := c.writtenOver[key]
	if !inFlight || base != svc.ResourceVersion {
		delete(c.writtenOver, key)
		inFlight = false
	}
	c.mu.Unlock()
	writeIngress := !inFlight && !ingressEqual(svc.Status.LoadBalancer.Ingress, want.Ingress)
	cond, writeCond := c.lb.conditions.pending(svc, allocated)
	if !writeIngress && !writeCond {
		return nil
	}
	status := map[string]any{}
	if writeIngress {
		// loadBalancer.ingress is an atomic list: the patch replaces it as a whole.
		status["loadBalancer"] = map[string]any{"ingress": want.Ingress}
	}
	if writeCond {
		// conditions merge by type: the other loops' conditions stay.
		status["conditions"] = []metav1.Condition{cond}
	}
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	_, err = c.client.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("write status of service %s: %w", klog.KObj(svc), err)
	}
	if writeCond {
		c.lb.conditions.wrote(svc, cond)
	}
	if writeIngress {
		c.mu.Lock()
		c.writtenOver[key] = svc.ResourceVersion
		c.mu.Unlock()
	}
	return nil
}

// cleanup removes every trace of berth from the Service, then releases its addresses.
// Releasing last keeps the Service ours until the end: a failed step is retried, since
// the next sync still finds the addresses held. The finalizer goes first because its
// patch carries the resourceVersion, which the status patches would make stale.
func (c *classLoop) cleanup(ctx context.Context, svc *corev1.Service) error {
	if err := c.setFinalizer(ctx, svc, false); err != nil {
		return err
	}
	if len(svc.Status.LoadBalancer.Ingress) > 0 {
		if err := c.patchIngress(ctx, svc, &corev1.LoadBalancerStatus{}); err != nil {
			return err
		}
	}
	if err := c.lb.clearCondition(ctx, svc); err != nil {
		return err
	}
	c.lb.release(ctx, svc)
	return nil
}

func ingressEqual(a, b []corev1.LoadBalancerIngress) bool {
	return slices.EqualFunc(a, b, func(x, y corev1.LoadBalancerIngress) bool {
		return x.IP == y.IP && x.Hostname == y.Hostname && ptrEqual(x.IPMode, y.IPMode)
	})
}

func ptrEqual[T comparable](a, b *T) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

func (c *classLoop) patchIngress(ctx context.Context, svc *corev1.Service, st *corev1.LoadBalancerStatus) error {
	// A merge patch replaces the ingress list as a whole.
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"loadBalancer": map[string]any{"ingress": st.Ingress}}})
	if err != nil {
		return err
	}
	_, err = c.client.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("write status of service %s: %w", klog.KObj(svc), err)
	}
	return nil
}

func (c *classLoop) setFinalizer(ctx context.Context, svc *corev1.Service, present bool) error {
	has := slices.Contains(svc.Finalizers, cleanupFinalizer)
	if has == present {
		return nil
	}
	fin := slices.DeleteFunc(slices.Clone(svc.Finalizers), func(f string) bool { return f == cleanupFinalizer })
	if present {
		fin = append(fin, cleanupFinalizer)
	}
	// The resourceVersion makes the patch fail on a concurrent change instead of
	// overwriting someone else's finalizer.
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": fin, "resourceVersion": svc.ResourceVersion}})
	if err != nil {
		return err
	}
	_, err = c.client.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("finalizer of service %s: %w", klog.KObj(svc), err)
	}
	return nil
}
