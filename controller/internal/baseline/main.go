// Command baseline is the yardstick of berth-controller's throughput test
// (controller/scale_integration_test.go). For each LoadBalancer Service it makes the API
// writes berth-controller makes, in the same order and through the same kind of client —
// one clientset with the same QPS and burst, two loops of the same number of workers, two
// Event broadcasters — but decides nothing: every Service gets a fake address from a
// counter. It counts its requests by verb and resource and writes the counts as JSON to
// --counts when it stops.
//
// Per Service without a class (berth runs the upstream service controller for these):
// Event EnsuringLoadBalancer, the cleanup finalizer (a strategic merge patch through the
// status subresource, as upstream's servicehelper.PatchService sends it), the
// berth.dev/Allocated condition, Event IPAllocated, Event EnsuredLoadBalancer, the ingress.
// Per Service of berth's class: the finalizer (a merge patch guarded by resourceVersion),
// Event IPAllocated, the condition and the ingress (one strategic merge patch of the
// status).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// Names berth-controller writes; kept literal so the baseline shares no code with it.
const (
	cleanupFinalizer   = "service.kubernetes.io/load-balancer-cleanup"
	conditionAllocated = "berth.dev/Allocated"
	reasonAllocated    = "IPAllocated"
	fakePool           = "baseline"
)

type options struct {
	kubeconfig    string
	qps           float64
	burst         int
	workers       int
	class         string
	handleDefault bool
	counts        string
}

func main() {
	fs := flag.NewFlagSet("baseline", flag.ExitOnError)
	var o options
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "path to a kubeconfig; empty means in-cluster")
	fs.Float64Var(&o.qps, "kube-api-qps", 100, "client queries per second to the kube-apiserver")
	fs.IntVar(&o.burst, "kube-api-burst", 200, "client burst to the kube-apiserver")
	fs.IntVar(&o.workers, "workers", 8, "Services synced at once by each loop")
	fs.StringVar(&o.class, "load-balancer-class", "berth.dev/lb", "loadBalancerClass handled by the class loop")
	fs.BoolVar(&o.handleDefault, "handle-default-class", true, "also handle Services without a loadBalancerClass")
	fs.StringVar(&o.counts, "counts", "", "file to write the request counts to, as JSON, on exit")
	klog.InitFlags(fs)
	_ = fs.Parse(os.Args[1:])
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		klog.ErrorS(err, "Baseline failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	cfg.UserAgent = "berth-baseline"
	// Protobuf, as berth-controller's clientset (cmd/internal/kubeclient).
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	counts := &requestCounts{m: map[string]int{}}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &countingTransport{next: rt, counts: counts} })
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}

	factory := informers.NewSharedInformerFactory(kc, 0)
	svcInf := factory.Core().V1().Services()
	// berth-controller has two broadcasters on its one client: the upstream service
	// controller's (logging every Event at V(0)) and its own (V(4)).
	upstreamEvents := record.NewBroadcaster(record.WithContext(ctx))
	upstreamEvents.StartStructuredLogging(0)
	upstreamEvents.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kc.CoreV1().Events("")})
	defer upstreamEvents.Shutdown()
	berthEvents := record.NewBroadcaster(record.WithContext(ctx))
	berthEvents.StartStructuredLogging(4)
	berthEvents.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kc.CoreV1().Events("")})
	defer berthEvents.Shutdown()

	b := &baseline{
		opts:     o,
		client:   kc,
		services: svcInf.Lister(),
		upstream: upstreamEvents.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "service-controller"}),
		berth:    berthEvents.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "berth-controller"}),
		clock:    clock.RealClock{},
		defaultQ: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[cache.ObjectName]()),
		classQ:   workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[cache.ObjectName]()),
		ips:      map[cache.ObjectName][]string{},
	}
	if _, err := svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: b.enqueue}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), svcInf.Informer().HasSynced) {
		return fmt.Errorf("caches did not sync: %w", ctx.Err())
	}
	klog.InfoS("Baseline ready", "qps", o.qps, "burst", o.burst, "workers", o.workers)

	var wg sync.WaitGroup
	for _, q := range []workqueue.TypedRateLimitingInterface[cache.ObjectName]{b.defaultQ, b.classQ} {
		for range o.workers {
			wg.Go(func() {
				for b.next(ctx, q) {
				}
			})
		}
	}
	<-ctx.Done()
	b.defaultQ.ShutDown()
	b.classQ.ShutDown()
	wg.Wait()
	if o.counts != "" {
		return counts.write(o.counts)
	}
	return nil
}

type baseline struct {
	opts     options
	client   kubernetes.Interface
	services corelisters.ServiceLister
	upstream record.EventRecorder
	berth    record.EventRecorder
	clock    clock.PassiveClock
	defaultQ workqueue.TypedRateLimitingInterface[cache.ObjectName]
	classQ   workqueue.TypedRateLimitingInterface[cache.ObjectName]

	mu  sync.Mutex
	n   int
	ips map[cache.ObjectName][]string
}

// enqueue takes each Service once, when it appears: the baseline never needs a second look.
func (b *baseline) enqueue(obj any) {
	svc, ok := obj.(*corev1.Service)
	if !ok || svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Status.LoadBalancer.Ingress) > 0 {
		return
	}
	switch c := svc.Spec.LoadBalancerClass; {
	case c == nil && b.opts.handleDefault:
		b.defaultQ.Add(cache.MetaObjectToName(svc))
	case c != nil && *c == b.opts.class:
		b.classQ.Add(cache.MetaObjectToName(svc))
	}
}

func (b *baseline) next(ctx context.Context, q workqueue.TypedRateLimitingInterface[cache.ObjectName]) bool {
	key, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(key)
	svc, err := b.services.Services(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		q.Forget(key)
		return true
	}
	if err == nil {
		if svc.Spec.LoadBalancerClass == nil {
			err = b.syncDefault(ctx, svc)
		} else {
			err = b.syncClass(ctx, svc)
		}
	}
	if err != nil {
		klog.FromContext(ctx).Error(err, "Service sync failed", "service", key)
		q.AddRateLimited(key)
		return true
	}
	q.Forget(key)
	return true
}

// syncDefault makes the writes of the upstream service controller calling berth's
// EnsureLoadBalancer.
func (b *baseline) syncDefault(ctx context.Context, svc *corev1.Service) error {
	b.upstream.Event(svc, corev1.EventTypeNormal, "EnsuringLoadBalancer", "Ensuring load balancer")
	if !slices.Contains(svc.Finalizers, cleanupFinalizer) {
		patch := map[string]any{"metadata": map[string]any{"finalizers": append(slices.Clone(svc.Finalizers), cleanupFinalizer)}}
		if err := b.patch(ctx, svc, types.StrategicMergePatchType, patch, "status"); err != nil {
			return err
		}
	}
	ips := b.fakeIPs(svc)
	if err := b.allocated(ctx, svc, ips); err != nil {
		return err
	}
	b.upstream.Event(svc, corev1.EventTypeNormal, "EnsuredLoadBalancer", "Ensured load balancer")
	return b.patch(ctx, svc, types.StrategicMergePatchType, ingressPatch(ips), "status")
}

// syncClass makes the writes of berth's own loop.
func (b *baseline) syncClass(ctx context.Context, svc *corev1.Service) error {
	if !slices.Contains(svc.Finalizers, cleanupFinalizer) {
		patch := map[string]any{"metadata": map[string]any{
			"finalizers":      append(slices.Clone(svc.Finalizers), cleanupFinalizer),
			"resourceVersion": svc.ResourceVersion,
		}}
		if err := b.patch(ctx, svc, types.MergePatchType, patch); err != nil {
			return err
		}
	}
	// The condition and the ingress in one status patch, as berth's loop writes them.
	ips := b.fakeIPs(svc)
	b.berth.Eventf(svc, corev1.EventTypeNormal, reasonAllocated, "Assigned %s from pool %q", strings.Join(ips, ", "), fakePool)
	patch := ingressPatch(ips)
	patch["status"].(map[string]any)["conditions"] = []metav1.Condition{allocatedCondition(svc, ips, b.clock.Now())}
	return b.patch(ctx, svc, types.StrategicMergePatchType, patch, "status")
}

// allocated writes what berth's EnsureLoadBalancer writes itself: the Event and the
// condition.
func (b *baseline) allocated(ctx context.Context, svc *corev1.Service, ips []string) error {
	b.berth.Eventf(svc, corev1.EventTypeNormal, reasonAllocated, "Assigned %s from pool %q", strings.Join(ips, ", "), fakePool)
	cond := allocatedCondition(svc, ips, b.clock.Now())
	return b.patch(ctx, svc, types.StrategicMergePatchType, map[string]any{"status": map[string]any{"conditions": []metav1.Condition{cond}}}, "status")
}

// allocatedCondition is berth.dev/Allocated as berth writes it for ips.
func allocatedCondition(svc *corev1.Service, ips []string, now time.Time) metav1.Condition {
	return metav1.Condition{
		Type: conditionAllocated, Status: metav1.ConditionTrue, Reason: reasonAllocated,
		Message:            fmt.Sprintf("%s from pool %q", strings.Join(ips, ", "), fakePool),
		ObservedGeneration: svc.Generation, LastTransitionTime: metav1.NewTime(now),
	}
}

func (b *baseline) patch(ctx context.Context, svc *corev1.Service, pt types.PatchType, patch any, sub ...string) error {
	data, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	_, err = b.client.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, pt, data, metav1.PatchOptions{}, sub...)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("patch service %s: %w", klog.KObj(svc), err)
	}
	return nil
}

// fakeIPs gives the Service one made-up address per family, the same on every retry.
func (b *baseline) fakeIPs(svc *corev1.Service) []string {
	key := cache.MetaObjectToName(svc)
	b.mu.Lock()
	defer b.mu.Unlock()
	if ips, ok := b.ips[key]; ok {
		return ips
	}
	b.n++
	var ips []string
	for _, f := range svc.Spec.IPFamilies {
		if f == corev1.IPv6Protocol {
			ips = append(ips, fmt.Sprintf("2001:db8:ffff::%x", b.n))
		} else {
			ips = append(ips, fmt.Sprintf("198.51.%d.%d", 112+b.n/256%16, b.n%256))
		}
	}
	if len(ips) == 0 {
		ips = []string{fmt.Sprintf("198.51.%d.%d", 112+b.n/256%16, b.n%256)}
	}
	b.ips[key] = ips
	return ips
}

func ingressPatch(ips []string) map[string]any {
	mode := corev1.LoadBalancerIPModeVIP
	ingress := make([]corev1.LoadBalancerIngress, len(ips))
	for i, ip := range ips {
		ingress[i] = corev1.LoadBalancerIngress{IP: ip, IPMode: &mode}
	}
	return map[string]any{"status": map[string]any{"loadBalancer": map[string]any{"ingress": ingress}}}
}

// requestCounts counts requests by "VERB resource[/subresource]", VERB as the
// apiserver's apiserver_request_total reports it (LIST and WATCH apart from GET).
type requestCounts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *requestCounts) add(key string) {
	c.mu.Lock()
	c.m[key]++
	c.mu.Unlock()
}

func (c *requestCounts) write(path string) error {
	c.mu.Lock()
	data, err := json.MarshalIndent(c.m, "", "  ")
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

type countingTransport struct {
	next   http.RoundTripper
	counts *requestCounts
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.counts.add(requestKey(r))
	return t.next.RoundTrip(r)
}

// requestKey names a request to /api/v1/... or /apis/<group>/<version>/... by verb and
// resource, e.g. "PATCH services/status".
func requestKey(r *http.Request) string {
	p := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(p) >= 2 && p[0] == "api":
		p = p[2:]
	case len(p) >= 3 && p[0] == "apis":
		p = p[3:]
	default:
		return r.Method + " " + r.URL.Path
	}
	if len(p) >= 3 && p[0] == "namespaces" {
		p = p[2:]
	}
	if len(p) == 0 {
		return r.Method + " " + r.URL.Path
	}
	key := p[0]
	if len(p) >= 3 {
		key += "/" + p[2]
	}
	verb := r.Method
	switch {
	case verb == http.MethodGet && r.URL.Query().Get("watch") == "true":
		verb = "WATCH"
	case verb == http.MethodGet && len(p) == 1:
		verb = "LIST"
	}
	return verb + " " + key
}
