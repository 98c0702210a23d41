package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	servicecontroller "k8s.io/cloud-provider/controllers/service"
	"k8s.io/component-base/featuregate"
	controllersmetrics "k8s.io/component-base/metrics/prometheus/controllers"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/source"
	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/controller/allocator"
)

// Options configure the controller.
type Options struct {
	// LoadBalancerClass is berth's class; Services with it are handled by berth's loop.
	LoadBalancerClass string
	// HandleDefaultClass makes berth also serve Services without a class, through the
	// upstream service controller. Off, berth can sit beside another provider.
	HandleDefaultClass bool
	// Workers is the number of Services synced at once by each loop.
	Workers int
	// ClusterName is passed to the cloud-provider interface.
	ClusterName string
	// Registerer receives the controller's metrics; nil registers none.
	Registerer prometheus.Registerer
	// EventClient writes berth's Events; give it its own rate limit so that a burst of
	// Events neither slows status writes nor overflows the broadcaster's queue, which
	// drops silently. Nil uses the main client.
	EventClient kubernetes.Interface
	// AnnouncedClient writes the berth.dev/Announced condition; give it its own rate limit
	// so that reporting who announces never slows allocation. Nil uses the main client.
	AnnouncedClient kubernetes.Interface
}

// Controller runs berth's allocation: the config watcher, the upstream service controller
// for the default class, and berth's loop for its own class; and the loop summarising the
// NodeAnnouncements into each Service's berth.dev/Announced condition.
type Controller struct {
	opts    Options
	client  kubernetes.Interface
	crCache crcache.Cache
	crCli   client.Client
	lb      *LoadBalancer
	ready   chan struct{}
	leading atomic.Bool
}

// New returns a Controller; it starts nothing. crCache and crClient must know berth's kinds.
func New(client kubernetes.Interface, crCache crcache.Cache, crClient client.Client, opts Options) (*Controller, error) {
	if opts.LoadBalancerClass == "" {
		return nil, errors.New("a load-balancer class is required")
	}
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	return &Controller{opts: opts, client: client, crCache: crCache, crCli: crClient, ready: make(chan struct{})}, nil
}

// Leading reports whether Run is running, i.e. this replica holds the lease.
func (c *Controller) Leading() bool { return c.leading.Load() }

// Ready is closed once the controller has claimed every address in use and allocates.
func (c *Controller) Ready() <-chan struct{} { return c.ready }

// Run allocates until ctx ends. Call it only while holding the leader lease: two
// allocators would hand out the same address twice.
func (c *Controller) Run(ctx context.Context) error {
	c.leading.Store(true)
	defer c.leading.Store(false)
	logger := klog.FromContext(ctx).WithName("controller")
	ctx = klog.NewContext(ctx, logger)

	factory := informers.NewSharedInformerFactory(c.client, 0)
	svcInf := factory.Core().V1().Services()
	nsInf := factory.Core().V1().Namespaces()
	nodeInf := factory.Core().V1().Nodes()

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartStructuredLogging(4)
	events := c.opts.EventClient
	if events == nil {
		events = c.client
	}
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: events.CoreV1().Events("")})
	defer broadcaster.Shutdown()

	c.lb = &LoadBalancer{
		class:         c.opts.LoadBalancerClass,
		handleDefault: c.opts.HandleDefaultClass,
		namespaces:    nsInf.Lister(),
		recorder:      broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "berth-controller"}),
		pending:       map[allocator.Key]bool{},
	}
	firstConfig := make(chan struct{})
	var once sync.Once
	watcher := source.New(c.crCache, source.WithStatusWriter(c.crCli), source.WithPoolUsage(c.lb.poolUsage), source.WithOnChange(func(s *config.Snapshot) {
		c.lb.SetConfig(s)
		once.Do(func() { close(firstConfig) })
	}))
	c.lb.usageChanged = watcher.UsageChanged
	c.lb.metrics = newMetrics(c.opts.Registerer, c.lb, watcher.Problems)
	c.lb.conditions = newServiceConditions(c.client, clock.RealClock{}, c.lb.metrics.conditionWrites)
	loop := newClassLoop(c.lb, c.client, svcInf.Lister())
	c.lb.kick = loop.kick
	if _, err := svcInf.Informer().AddEventHandler(loop.handlers()); err != nil {
		return err
	}
	announcedClient := c.opts.AnnouncedClient
	if announcedClient == nil {
		announcedClient = c.client
	}
	announced := newAnnouncedLoop(c.lb.handles, svcInf.Lister(), c.lb.recorder,
		newServiceConditions(announcedClient, clock.RealClock{}, c.lb.metrics.conditionWrites))
	announced.allocating = func() bool { return backlogged(loop.queue.Len(), c.opts.Workers) }
	announcedSynced, err := c.addAnnouncedHandlers(ctx, announced, svcInf.Informer())
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	errs := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs <- c.crCache.Start(ctx) }()
	go func() { defer wg.Done(); errs <- watcher.Run(ctx) }()

	var upstream *servicecontroller.Controller
	if c.opts.HandleDefaultClass {
		var err error
		upstream, err = servicecontroller.New(cloud{c.lb}, c.client, svcInf, nodeInf, c.opts.ClusterName, featuregate.NewFeatureGate())
		if err != nil {
			return fmt.Errorf("service controller: %w", err)
		}
	}
	// Informers exist once asked for; ask for all of them before starting the factory.
	synced := []cache.InformerSynced{svcInf.Informer().HasSynced, nsInf.Informer().HasSynced}
	if upstream != nil {
		synced = append(synced, nodeInf.Informer().HasSynced)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("caches did not sync: %w", ctx.Err())
	}
	select {
	case <-firstConfig:
	case err := <-errs:
		return fmt.Errorf("config watcher stopped: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}

	start := time.Now()
	n := c.claimExisting(ctx, svcInf.Informer().GetStore().List())
	logger.Info("Claimed addresses in use", "services", n, "duration", time.Since(start))
	close(c.ready)

	if upstream != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			upstream.Run(ctx, c.opts.Workers, controllersmetrics.NewControllerManagerMetrics("berth-controller"))
		}()
	}
	wg.Add(2)
	go func() { defer wg.Done(); loop.run(ctx, c.opts.Workers) }()
	go func() { defer wg.Done(); announced.run(ctx, c.opts.Workers, announcedSynced...) }()
	for _, obj := range svcInf.Informer().GetStore().List() {
		if svc := obj.(*corev1.Service); svc.Spec.LoadBalancerClass != nil && *svc.Spec.LoadBalancerClass == c.opts.LoadBalancerClass {
			loop.queue.Add(cache.MetaObjectToName(svc))
		}
	}

	select {
	case <-ctx.Done():
		return nil
	case err := <-errs:
		if err != nil {
			return fmt.Errorf("config watcher stopped: %w", err)
		}
		return nil
	}
}

// addAnnouncedHandlers feeds the Announced loop with Services and NodeAnnouncements, and
// returns what reports that both were delivered in full. The loop waits on it alone, so
// allocation never waits for NodeAnnouncements.
func (c *Controller) addAnnouncedHandlers(ctx context.Context, loop *announcedLoop, services cache.SharedIndexInformer) ([]cache.InformerSynced, error) {
	svcReg, err := services.AddEventHandler(loop.serviceHandlers())
	if err != nil {
		return nil, err
	}
	// The cache starts the informer with the others; blocking here would wait forever.
	inf, err := c.crCache.GetInformer(ctx, &v1alpha1.NodeAnnouncement{}, crcache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("informer for NodeAnnouncements: %w", err)
	}
	annReg, err := inf.AddEventHandler(loop.announcementHandlers())
	if err != nil {
		return nil, fmt.Errorf("event handler for NodeAnnouncements: %w", err)
	}
	return []cache.InformerSynced{svcReg.HasSynced, annReg.HasSynced}, nil
}

// claimExisting claims the addresses in every handled Service's status, oldest Service
// first, before anything is allocated, so a restart never moves an address. Services
// whose addresses cannot be claimed get an Event; their next sync allocates again.
func (c *Controller) claimExisting(ctx context.Context, objs []any) int {
	var existing []allocator.Existing
	services := map[allocator.Key]*corev1.Service{}
	for _, obj := range objs {
		svc := obj.(*corev1.Service)
		ips := ingressIPs(svc)
		if len(ips) == 0 || svc.Spec.Type != corev1.ServiceTypeLoadBalancer || !c.lb.handles(svc) {
			continue
		}
		var nsLabels map[string]string
		if ns, err := c.lb.namespaces.Get(svc.Namespace); err == nil {
			nsLabels = ns.Labels
		}
		req, err := requestFor(svc, nsLabels)
		if err != nil {
			// Claim what the status shows anyway: the address is in use until the
			// Service is fixed, and must not be handed to another.
			req, _ = requestFor(svcWithoutRequests(svc), nsLabels)
		}
		existing = append(existing, allocator.Existing{Request: req, IPs: ips})
		services[req.Key] = svc
	}
	c.lb.mu.Lock()
	errs := c.lb.alloc.ClaimAll(existing)
	c.lb.claimed = true
	c.lb.mu.Unlock()
	c.lb.notifyUsage()
	for key, err := range errs {
		svc := services[key]
		klog.FromContext(ctx).Info("Could not reclaim addresses", "service", klog.KObj(svc), "err", err)
		c.lb.recorder.Eventf(svc, corev1.EventTypeWarning, EventIPReclaimFailed, "Addresses %s not kept: %v", addrList(ingressIPs(svc)), err)
	}
	return len(existing)
}

func svcWithoutRequests(svc *corev1.Service) *corev1.Service {
	s := svc.DeepCopy()
	s.Spec.LoadBalancerIP = ""
	delete(s.Annotations, AnnotationLoadBalancerIPs)
	return s
}

func addrList(ips []netip.Addr) string {
	return joinAddrs(allocator.Assignment{IPs: ips})
}
