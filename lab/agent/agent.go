// Package agent plays kubelet for one lab node: it registers the Node and keeps it Ready,
// and gives every Pod bound to the node a network namespace on the node's pod bridge with
// an address from the node's pod CIDRs, runs the echo server (lab/echo) in it, reports the
// Pod Running and Ready with its IPs, and finalises Pod deletion so that Deployments scale
// and roll. Tests can fail a Pod's readiness, or the Node's, on demand.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
)

// Node describes the node the agent plays kubelet for.
type Node struct {
	// Name is the Node object's name and its kubernetes.io/hostname label.
	Name string
	// NS is the node's network namespace; Bridge is its pod bridge there.
	NS     netns.NS
	Bridge string
	// Addrs are the node's InternalIPs, primary family first (kube-proxy takes its node
	// IPs from them).
	Addrs []netip.Addr
	// PodCIDRs are the node's pod ranges, one per family, primary first; Gateways are the
	// addresses on Bridge that pods route through, in the same order.
	PodCIDRs []netip.Prefix
	Gateways []netip.Addr
	// Labels are added to the Node's labels.
	Labels map[string]string
}

// Config configures an Agent.
type Config struct {
	Client kubernetes.Interface
	// Runner starts the pods' echo servers (logs and pid files in its directory).
	Runner *proc.Runner
	// Prefix is the run prefix (netns.ValidPrefix); pod namespaces are named with it so
	// the run's cleanup finds them.
	Prefix string
	Node   Node
	// Heartbeat is how often the node's Lease and Ready condition are renewed; 10 s
	// (kubelet's lease interval) when zero.
	Heartbeat time.Duration
	// Workers is the number of pods set up in parallel; 4 when zero.
	Workers int
}

// Agent is one node's kubelet stand-in.
type Agent struct {
	cfg  Config
	node Node
	nss  *netns.Manager
	ipam *ipam

	mu        sync.Mutex
	queue     workqueue.TypedRateLimitingInterface[cache.ObjectName] // nil unless running
	running   bool
	pods      map[cache.ObjectName]*sandbox
	notReady  map[cache.ObjectName]bool
	nodeReady bool
	kick      chan struct{} // one slot: the node status changed, write it now
	started   chan struct{} // closed once the Node is registered and pods are watched

	watchers sync.WaitGroup // one per echo process, waiting for it to exit
}

// New checks cfg and returns an Agent. It starts nothing; Run does.
func New(cfg Config) (*Agent, error) {
	n := cfg.Node
	switch {
	case cfg.Client == nil || cfg.Runner == nil:
		return nil, fmt.Errorf("agent for node %q: client and runner are required", n.Name)
	case n.Name == "" || n.NS == "" || n.Bridge == "":
		return nil, fmt.Errorf("agent for node %q: name, namespace and bridge are required", n.Name)
	case len(n.Addrs) == 0:
		return nil, fmt.Errorf("agent for node %s: no node address", n.Name)
	case len(n.PodCIDRs) == 0 || len(n.PodCIDRs) != len(n.Gateways):
		return nil, fmt.Errorf("agent for node %s: want one gateway per pod CIDR, have %v and %v", n.Name, n.PodCIDRs, n.Gateways)
	}
	for i, p := range n.PodCIDRs {
		if !p.Contains(n.Gateways[i]) {
			return nil, fmt.Errorf("agent for node %s: gateway %s outside pod CIDR %s", n.Name, n.Gateways[i], p)
		}
	}
	nss, err := netns.New(cfg.Prefix)
	if err != nil {
		return nil, fmt.Errorf("agent for node %s: %w", n.Name, err)
	}
	pool, err := newIPAM(n.PodCIDRs, n.Gateways)
	if err != nil {
		return nil, fmt.Errorf("agent for node %s: %w", n.Name, err)
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 10 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	return &Agent{
		cfg: cfg, node: n, nss: nss, ipam: pool,
		pods:      map[cache.ObjectName]*sandbox{},
		notReady:  map[cache.ObjectName]bool{},
		nodeReady: true,
		kick:      make(chan struct{}, 1),
		started:   make(chan struct{}),
	}, nil
}

// ErrRunning means Run was called on an Agent that is already running or has run.
var ErrRunning = errors.New("agent already ran")

// Run registers the Node, then serves the Pods bound to it until ctx ends. Before it
// returns it stops every pod's echo server and deletes every pod namespace; the API
// objects stay, as a stopped kubelet leaves them.
func (a *Agent) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithName("agent").WithValues("node", a.node.Name)
	ctx = klog.NewContext(ctx, logger)
	if err := netns.Preflight(); err != nil {
		return fmt.Errorf("agent for node %s: %w", a.node.Name, err)
	}
	// Per-item backoff from 5 ms (a conflict on a status write is retried at once) to
	// 10 s; overall 100 syncs/s with bursts of 500, far above what a lab node sees.
	limiter := workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[cache.ObjectName](5*time.Millisecond, 10*time.Second),
		&workqueue.TypedBucketRateLimiter[cache.ObjectName]{Limiter: rate.NewLimiter(rate.Limit(100), 500)},
	)
	a.mu.Lock()
	if a.running {
		a.mu.Unlock()
		return fmt.Errorf("agent for node %s: %w", a.node.Name, ErrRunning)
	}
	a.running = true
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(limiter,
		workqueue.TypedRateLimitingQueueConfig[cache.ObjectName]{Name: "agent-" + a.node.Name})
	a.queue = queue
	a.mu.Unlock()
	defer queue.ShutDown()

	if err := a.register(ctx); err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactoryWithOptions(a.cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.node.Name).String()
		}))
	informer := factory.Core().V1().Pods()
	enqueue := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if pod, ok := obj.(*corev1.Pod); ok {
			queue.Add(cache.MetaObjectToName(pod))
		}
	}
	if _, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue,
		UpdateFunc: func(old, cur any) {
			if old.(*corev1.Pod).ResourceVersion != cur.(*corev1.Pod).ResourceVersion {
				enqueue(cur)
			}
		},
		DeleteFunc: enqueue,
	}); err != nil {
		return fmt.Errorf("agent for node %s: %w", a.node.Name, err)
	}
	lister := informer.Lister()
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("agent for node %s: %v cache did not sync: %w", a.node.Name, typ, ctx.Err())
		}
	}
	logger.V(2).Info("Node agent running", "podCIDRs", a.node.PodCIDRs)
	close(a.started)

	var wg sync.WaitGroup
	for range a.cfg.Workers {
		wg.Go(func() {
			for a.processNext(ctx, queue, lister) {
			}
		})
	}
	wg.Go(func() { a.heartbeat(ctx) })
	<-ctx.Done()
	queue.ShutDown()
	wg.Wait()

	// ctx is over; tearing down still needs a context of its own.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := a.teardownAll(tctx)
	a.watchers.Wait()
	if cerr := a.nss.Close(tctx); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		return fmt.Errorf("agent for node %s: stop: %w", a.node.Name, err)
	}
	logger.V(2).Info("Node agent stopped")
	return nil
}

func (a *Agent) processNext(ctx context.Context, queue workqueue.TypedRateLimitingInterface[cache.ObjectName], lister corelisters.PodLister) bool {
	key, quit := queue.Get()
	if quit {
		return false
	}
	defer queue.Done(key)
	if err := a.sync(ctx, key, lister); err != nil {
		klog.FromContext(ctx).V(2).Info("Pod sync failed, will retry", "pod", key, "err", err)
		queue.AddRateLimited(key)
		return true
	}
	queue.Forget(key)
	return true
}

// enqueue asks for key to be synced, if the agent runs.
func (a *Agent) enqueue(key cache.ObjectName) {
	a.mu.Lock()
	q := a.queue
	a.mu.Unlock()
	if q != nil {
		q.Add(key)
	}
}

// SetReady makes the pod's readiness fail (false) or pass again (true), as a failing
// readiness probe would: the Pod's Ready and ContainersReady conditions follow, and with
// them its EndpointSlice entries. It may be called before the pod exists.
func (a *Agent) SetReady(namespace, name string, ready bool) {
	key := cache.ObjectName{Namespace: namespace, Name: name}
	a.mu.Lock()
	if ready {
		delete(a.notReady, key)
	} else {
		a.notReady[key] = true
	}
	a.mu.Unlock()
	a.enqueue(key)
}

// SetNodeReady sets the Node's Ready condition, as a kubelet that stops (or resumes)
// reporting would; the pods keep running.
func (a *Agent) SetNodeReady(ready bool) {
	a.mu.Lock()
	a.nodeReady = ready
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Pod is what the agent runs for one Pod.
type Pod struct {
	Namespace, Name string
	NS              netns.NS
	IPs             []netip.Addr
	// Process is the pod's echo server.
	Process *proc.Process
}

// Pods lists the pods the agent runs now.
func (a *Agent) Pods() []Pod {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Pod, 0, len(a.pods))
	for key, sb := range a.pods {
		out = append(out, Pod{Namespace: key.Namespace, Name: key.Name, NS: sb.ns, IPs: sb.ips, Process: sb.echo})
	}
	return out
}

// Started is closed once Run has registered the Node and watches its pods.
func (a *Agent) Started() <-chan struct{} { return a.started }

// Node is the node the agent runs.
func (a *Agent) Node() Node { return a.node }
