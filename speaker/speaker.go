package speaker

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/source"
)

// Membership is what the speaker needs of memberlist.
type Membership interface {
	// Members returns the live members with their metadata.
	Members() []Member
	// Suspects returns the names of live members suspected of having failed, while this
	// node's own health makes the suspicion credible (membership.List.Suspects).
	Suspects() []string
	// Accused returns the members accused of having failed within the last 2 s, with when
	// each was last accused, whatever this node's health (membership.List.Accused).
	Accused() map[string]time.Time
	// Probe pings a member directly and reports whether it answered in time.
	Probe(name string) bool
	// Join contacts the nodes at addrs; it fails only when none answers.
	Join(addrs []netip.Addr) (int, error)
	// SetL2Interfaces publishes this node's up L2 interfaces.
	SetL2Interfaces(names []string) error
}

// Options configure a Speaker.
type Options struct {
	// Node is this node's name.
	Node    string
	Classes Classes
	Client  kubernetes.Interface
	// Cache and CRClient read berth's config and write the NodeAnnouncement; their scheme
	// must know berth's kinds. The Speaker starts the cache.
	Cache    crcache.Cache
	CRClient client.Client
	Members  Membership
	// Interfaces lists this host's up interfaces matching patterns (empty: all usable).
	Interfaces func(patterns []string) ([]string, error)
	// ReportInterval bounds NodeAnnouncement writes; 1 s when zero.
	ReportInterval time.Duration
	// LinkInterval is how often interfaces are checked; 200 ms when zero.
	LinkInterval time.Duration
	// JoinInterval is how often Nodes missing from memberlist are joined; 10 s when zero.
	JoinInterval time.Duration
	Metrics      *Metrics
	// L2 answers ARP/NDP for the IPs this node owns; nil: decide only.
	L2 L2Executor
	// FreezeThreshold is the stall after which L2 is held for FreezeHold; 400 ms and 2 s
	// when zero. The threshold stays below memberlist's fastest detection (~450 ms), so
	// that no stall long enough for the others to take this node's IPs goes unnoticed.
	FreezeThreshold, FreezeHold time.Duration
	// Recorder receives the speaker's Events; nil: none.
	Recorder record.EventRecorder
	// BGP holds the sessions and advertises the paths this node announces; nil: decide only.
	BGP BGPExecutor
	// FrontDoor drops traffic to the LB IPs but for their Service ports, and delivers
	// Proxy-mode IPs; nil: none.
	FrontDoor FrontDoorExecutor
	// KubeProxyHealthzPort is where other nodes' kube-proxy answers its health check, which
	// decides whether Proxy-mode traffic goes to their NodePorts; 0 checks none.
	KubeProxyHealthzPort int
	// Namespace is berth's namespace, where the BGP peers' password Secrets live.
	Namespace string
}

// Speaker is the node agent's loop: informers and memberlist in, decisions out.
type Speaker struct {
	opts    Options
	state   *State
	factory informers.SharedInformerFactory
	source  *informerSource
	nodes   cache.Indexer
	changed chan struct{} // decisions changed, for the reporter
	synced  atomic.Bool

	frozen  chan struct{} // woke from a freeze, for followL2
	freeze  *freezeGuard
	bgpKick chan struct{} // config, this Node or a Secret changed, for followBGP
	// doorTried closes after the first attempt to apply the front door: BGP waits for it,
	// so that no router sends traffic to a node whose door is not shut yet.
	doorTried chan struct{}
	// health checks other nodes' kube-proxy for Proxy mode (nil: every node counts
	// healthy); doorKick wakes the front door when a node's health flips or the nodes
	// change, which changes Proxy backends without changing a decision.
	health   *kubeProxyHealth
	doorKick chan struct{}
	// bgpConfigured says followBGP handed the executor its peers once: until then the
	// executor's empty status says nothing about this node's sessions.
	bgpConfigured atomic.Bool

	// secrets are berth's namespace's Secrets, for the BGP peers' passwords; nil without
	// BGP. secretGen counts their changes.
	secretFactory informers.SharedInformerFactory
	secrets       cache.Indexer
	secretGen     atomic.Uint64

	mu        sync.Mutex
	patterns  []string // L2 interface patterns of the current config
	subs      []chan struct{}
	conflicts map[netip.Addr]seenConflict
}

// New returns a Speaker; it starts nothing.
func New(opts Options) *Speaker {
	if opts.ReportInterval <= 0 {
		opts.ReportInterval = time.Second
	}
	if opts.LinkInterval <= 0 {
		opts.LinkInterval = 200 * time.Millisecond
	}
	if opts.JoinInterval <= 0 {
		opts.JoinInterval = 10 * time.Second
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	if opts.FreezeThreshold <= 0 {
		opts.FreezeThreshold = 400 * time.Millisecond
	}
	if opts.FreezeHold <= 0 {
		opts.FreezeHold = 2 * time.Second
	}
	s := &Speaker{opts: opts, changed: make(chan struct{}, 1), frozen: make(chan struct{}, 1), bgpKick: make(chan struct{}, 1), doorTried: make(chan struct{}), doorKick: make(chan struct{}, 1),
		conflicts: map[netip.Addr]seenConflict{}, freeze: newFreezeGuard(time.Now(), opts.FreezeThreshold, opts.FreezeHold)}
	s.factory = informers.NewSharedInformerFactoryWithOptions(opts.Client, 0,
		informers.WithTransform(cacheObject(opts.Node, opts.Classes)))
	svcInf := s.factory.InformerFor(&corev1.Service{}, serviceInformer)
	sliceInf := s.factory.InformerFor(&discoveryv1.EndpointSlice{}, sliceInformer)
	nodeInf := s.factory.Core().V1().Nodes().Informer()
	s.source = &informerSource{services: svcInf.GetIndexer(), slices: sliceInf.GetIndexer()}
	s.nodes = nodeInf.GetIndexer()
	s.state = NewState(opts.Node, s.source, StateOptions{OnChange: s.notify, OnNodes: func() { wake(s.doorKick) }, Observe: opts.Metrics.observePass})
	opts.Metrics.state = s.state

	if opts.BGP != nil {
		s.secretFactory = informers.NewSharedInformerFactoryWithOptions(opts.Client, 0,
			informers.WithNamespace(opts.Namespace), informers.WithTransform(cacheObject(opts.Node, opts.Classes)))
		secInf := s.secretFactory.Core().V1().Secrets().Informer()
		s.secrets = secInf.GetIndexer()
		secretChanged := func(any) {
			s.secretGen.Add(1)
			wake(s.bgpKick)
		}
		_, _ = secInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: secretChanged, UpdateFunc: func(_, o any) { secretChanged(o) }, DeleteFunc: secretChanged,
		})
	}
	_, _ = svcInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.serviceEvent(o) },
		UpdateFunc: func(old, o any) { s.serviceEvent(o) },
		DeleteFunc: func(o any) { s.serviceEvent(o) },
	})
	_, _ = sliceInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) { s.sliceEvent(o) },
		UpdateFunc: func(old, o any) {
			s.sliceEvent(old)
			s.sliceEvent(o)
		},
		DeleteFunc: func(o any) { s.sliceEvent(o) },
	})
	_, _ = nodeInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.nodeEvent(o, false) },
		UpdateFunc: func(old, o any) { s.nodeEvent(o, false) },
		DeleteFunc: func(o any) { s.nodeEvent(o, true) },
	})
	return s
}

// Run runs the speaker until ctx ends: it waits for the caches, then decides, reports and
// follows membership. It returns an error only when the caches never sync.
func (s *Speaker) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithName("speaker")
	ctx = klog.NewContext(ctx, logger)
	watcher := source.New(s.opts.Cache, source.WithOnChange(s.configChanged))
	go func() { _ = s.opts.Cache.Start(ctx) }()
	s.factory.Start(ctx.Done())
	if s.secretFactory != nil {
		s.secretFactory.Start(ctx.Done())
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		if err := watcher.Run(ctx); err != nil && ctx.Err() == nil {
			logger.Error(err, "Config watcher stopped")
		}
	})
	for typ, ok := range s.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("informer for %v did not sync: %w", typ, ctx.Err())
		}
	}
	if s.secretFactory != nil {
		for typ, ok := range s.secretFactory.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return fmt.Errorf("informer for %v did not sync: %w", typ, ctx.Err())
			}
		}
	}
	if !s.opts.Cache.WaitForCacheSync(ctx) {
		return fmt.Errorf("config cache did not sync: %w", ctx.Err())
	}
	logger.Info("Caches synced", "node", s.opts.Node)
	s.synced.Store(true)
	s.MembersChanged()
	wg.Go(func() { s.state.Run(ctx) })
	wg.Go(func() { s.report(ctx) })
	wg.Go(func() { s.watchLinks(ctx) })
	wg.Go(func() { s.joinLoop(ctx) })
	wg.Go(func() { s.watchSuspects(ctx) })
	if s.opts.L2 != nil {
		wg.Go(func() { s.watchFreeze(ctx) })
		wg.Go(func() { s.followL2(ctx) })
	}
	if s.opts.FrontDoor != nil {
		if s.opts.KubeProxyHealthzPort > 0 {
			s.health = newKubeProxyHealth(s.opts.KubeProxyHealthzPort, func() { wake(s.doorKick) })
			wg.Go(func() { s.health.Run(ctx) })
		}
		wg.Go(func() { s.followFrontDoor(ctx) })
	}
	if s.opts.BGP != nil {
		wg.Go(func() { s.followBGP(ctx) })
		wg.Go(func() { s.watchBGPSessions(ctx) })
	}
	<-ctx.Done()
	return nil
}

// Ready reports whether the caches synced and a full decision pass ran.
func (s *Speaker) Ready() bool { return s.synced.Load() && s.state.Decisions().Synced }

// Decisions returns the current decisions.
func (s *Speaker) Decisions() Decisions { return s.state.Decisions() }

// suspectPoll is how often the suspected members are read: memberlist tells of no
// suspicion, and a node cut off from the others must see it before they declare it dead
// (probe plus suspicion, ~450 ms) to step down first (the minority rule).
const suspectPoll = 50 * time.Millisecond

// reprobe is how often an accused member that did not answer this node is probed again.
const reprobe = 150 * time.Millisecond

// watchSuspects follows memberlist's suspicions into the decisions: the minority rule's
// suspects, and the accused members this node's own probe does not reach (accused.go).
func (s *Speaker) watchSuspects(ctx context.Context) {
	logger := klog.FromContext(ctx)
	accused := newAccusations(s.opts.Members.Probe, func(unreachable []string) {
		logger.V(1).Info("Members suspected of having failed and not answering this node", "unreachable", unreachable)
		s.state.SetUnreachable(unreachable)
	}, reprobe)
	t := time.NewTicker(suspectPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.state.SetSuspects(s.opts.Members.Suspects())
			accused.update(s.opts.Members.Accused())
		}
	}
}

// MembersChanged re-reads memberlist's members; membership calls it on every change.
func (s *Speaker) MembersChanged() { s.state.SetMembers(s.opts.Members.Members()) }

// Subscribe returns a channel that receives a value (dropped when one is pending) after
// the decisions changed: the executors follow the decisions with it.
func (s *Speaker) Subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs = append(s.subs, ch)
	s.mu.Unlock()
	return ch
}

func (s *Speaker) notify() {
	wake(s.changed)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.subs {
		wake(ch)
	}
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (s *Speaker) configChanged(snap *config.Snapshot) {
	var patterns []string
	all := false
	for _, a := range snap.L2Advertisements {
		all = all || len(a.Interfaces) == 0
		patterns = append(patterns, a.Interfaces...)
	}
	if all {
		patterns = nil
	}
	slices.Sort(patterns)
	s.mu.Lock()
	s.patterns = slices.Compact(patterns)
	s.mu.Unlock()
	s.state.SetConfig(snap)
	wake(s.bgpKick)
}

func (s *Speaker) serviceEvent(o any) {
	if key, ok := objectKey(o); ok {
		s.state.ServiceChanged(key)
	}
}

func (s *Speaker) sliceEvent(o any) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if es, ok := o.(*cachedSlice); ok && es.service != "" {
		s.state.ServiceChanged(types.NamespacedName{Namespace: es.namespace, Name: es.service})
	}
}

func (s *Speaker) nodeEvent(o any, deleted bool) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	n, ok := o.(*corev1.Node)
	if !ok {
		return
	}
	if deleted {
		s.state.DeleteNode(n.Name)
		return
	}
	s.state.SetNode(NodeFrom(n))
	if n.Name == s.opts.Node {
		wake(s.bgpKick) // its labels select the peers
	}
}

// watchLinks publishes this node's up L2 interfaces whenever they change, so that other
// nodes stop electing it for L2 while memberlist still sees it alive.
func (s *Speaker) watchLinks(ctx context.Context) {
	logger := klog.FromContext(ctx)
	t := time.NewTicker(s.opts.LinkInterval)
	defer t.Stop()
	var last []string
	published := false
	for {
		s.mu.Lock()
		patterns := s.patterns
		s.mu.Unlock()
		up, err := s.opts.Interfaces(patterns)
		switch {
		case err != nil:
			logger.Error(err, "List interfaces")
		case !published || !slices.Equal(up, last):
			if err := s.opts.Members.SetL2Interfaces(up); err != nil {
				logger.Error(err, "Publish L2 interfaces", "interfaces", up)
			} else {
				logger.V(2).Info("L2 interfaces", "up", up)
				last, published = up, true
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// joinLoop joins the Nodes that memberlist does not know, by their InternalIPs: at start,
// and again every JoinInterval so that a partition heals.
func (s *Speaker) joinLoop(ctx context.Context) {
	logger := klog.FromContext(ctx)
	for {
		known := map[string]bool{}
		for _, m := range s.opts.Members.Members() {
			known[m.Name] = true
		}
		var addrs []netip.Addr
		for _, o := range s.nodes.List() {
			n := o.(*corev1.Node)
			if known[n.Name] {
				continue
			}
			if a, ok := InternalIP(n); ok {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) > 0 {
			if n, err := s.opts.Members.Join(addrs); err != nil {
				logger.V(2).Info("Join", "addrs", addrs, "err", err)
			} else {
				logger.V(2).Info("Joined", "addrs", addrs, "answered", n)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.opts.JoinInterval):
		}
	}
}

// InternalIP returns a Node's first InternalIP.
func InternalIP(n *corev1.Node) (netip.Addr, bool) {
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

func objectKey(o any) (types.NamespacedName, bool) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if c, ok := o.(interface{ key() types.NamespacedName }); ok {
		return c.key(), true
	}
	m, ok := o.(metav1.Object)
	if !ok {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: m.GetNamespace(), Name: m.GetName()}, true
}
