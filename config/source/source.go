// Package source brings berth's configuration from the cluster into the process: it
// watches the custom resources, rebuilds the config.Snapshot on every change, and (in the
// controller) writes each object's conditions and capacity back to its status.
package source

import (
	"context"
	"fmt"
	"maps"
	"math/big"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

// Watcher keeps an up-to-date config.Snapshot of the cluster's berth resources.
type Watcher struct {
	cache    crcache.Cache
	status   client.Client // nil: read only
	usage    func(pool string) (PoolUsage, bool)
	onChange func(*config.Snapshot)
	clock    clock.PassiveClock

	snap     atomic.Pointer[config.Snapshot]
	problems atomic.Pointer[[]config.Problem]
	syncs    atomic.Int64
	queue    workqueue.TypedRateLimitingInterface[string]
}

// Option configures a Watcher.
type Option func(*Watcher)

// WithStatusWriter makes the Watcher write conditions and capacity to each object's status.
// Only one component may do this: the controller holding the leader lease.
func WithStatusWriter(c client.Client) Option { return func(w *Watcher) { w.status = c } }

// PoolUsage is what Services hold of a pool, as the allocator counts it.
type PoolUsage struct {
	InUse4, InUse6 *big.Int
}

// PoolInUseFinalizer keeps an IPPool that Services hold addresses of from vanishing
// under them: the status writer puts it on every pool and removes it once the pool is
// being deleted and empty.
const PoolInUseFinalizer = "berth.dev/pool-in-use"

// WithPoolUsage makes the status writer report each pool's use from f (false: unknown,
// the status keeps what it had) and keep PoolInUseFinalizer on pools in use. Call
// UsageChanged when the counts change.
func WithPoolUsage(f func(pool string) (PoolUsage, bool)) Option {
	return func(w *Watcher) { w.usage = f }
}

// WithOnChange calls f from the Watcher's goroutine with every new snapshot. f must not block.
func WithOnChange(f func(*config.Snapshot)) Option { return func(w *Watcher) { w.onChange = f } }

// WithClock sets the clock used for condition transition times.
func WithClock(c clock.PassiveClock) Option { return func(w *Watcher) { w.clock = c } }

// syncKey asks for a rebuild: Build always reads every object, so one pending sync covers
// any number of events. usageKey asks only for the status to be rewritten (pool use, the
// BGPPeers' count of established sessions).
const (
	syncKey  = "config"
	usageKey = "usage"
)

// New returns a Watcher reading from c, whose scheme must know berth's kinds. It starts nothing.
func New(c crcache.Cache, opts ...Option) *Watcher {
	w := &Watcher{cache: c, clock: clock.RealClock{}}
	for _, o := range opts {
		o(w)
	}
	// Per-item backoff 50 ms → 30 s for failed status writes (usually conflicts that the
	// next read resolves); the bucket caps bursts of rebuilds at 20/s.
	w.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedMaxOfRateLimiter(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 30*time.Second),
			&workqueue.TypedBucketRateLimiter[string]{Limiter: rate.NewLimiter(rate.Limit(20), 50)},
		),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "berth-config"},
	)
	return w
}

// Snapshot returns the current configuration, or nil before the first build.
func (w *Watcher) Snapshot() *config.Snapshot { return w.snap.Load() }

// Problems returns what the last build found wrong.
func (w *Watcher) Problems() []config.Problem {
	if p := w.problems.Load(); p != nil {
		return *p
	}
	return nil
}

// Syncs counts completed syncs; tests use it to wait for a quiet period.
func (w *Watcher) Syncs() int64 { return w.syncs.Load() }

// Resync asks for a rebuild even though nothing changed.
func (w *Watcher) Resync() { w.queue.Add(syncKey) }

// UsageChanged asks for the pools' use to be written; calls are merged, and writes are
// rate-limited by the queue.
func (w *Watcher) UsageChanged() {
	if w.usage != nil && w.status != nil {
		w.queue.AddAfter(usageKey, usageDelay)
	}
}

// configChanged says whether an update can change what Build makes of the object: its
// spec (the generation), labels (pool selectors) or deletion. Status writes cannot, and
// rebuilding on each would re-decide every Service on every node whenever a speaker
// reports a BGP session.
func configChanged(old, cur any) bool {
	o, ok1 := old.(client.Object)
	c, ok2 := cur.(client.Object)
	if !ok1 || !ok2 {
		return true
	}
	return o.GetGeneration() != c.GetGeneration() || !maps.Equal(o.GetLabels(), c.GetLabels()) ||
		(o.GetDeletionTimestamp() == nil) != (c.GetDeletionTimestamp() == nil)
}

// usageDelay batches the status writes of a burst of allocations.
const usageDelay = 200 * time.Millisecond

// Run watches until ctx ends. The cache must be started by the caller.
func (w *Watcher) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithName("config")
	ctx = klog.NewContext(ctx, logger)
	defer w.queue.ShutDown()

	kick := cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { w.queue.Add(syncKey) },
		UpdateFunc: func(old, cur any) {
			switch {
			case configChanged(old, cur):
				w.queue.Add(syncKey)
			case w.status != nil:
				// A status write (the speakers' BGPPeer entries): the configuration is
				// the same, only the status this watcher derives may change.
				w.queue.AddAfter(usageKey, usageDelay)
			}
		},
		DeleteFunc: func(any) { w.queue.Add(syncKey) },
	}
	for _, obj := range []client.Object{&v1alpha1.IPPool{}, &v1alpha1.BGPPeer{}, &v1alpha1.BGPAdvertisement{}, &v1alpha1.L2Advertisement{}} {
		inf, err := w.cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("informer for %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(kick); err != nil {
			return fmt.Errorf("event handler for %T: %w", obj, err)
		}
	}
	if !w.cache.WaitForCacheSync(ctx) {
		return fmt.Errorf("config caches did not sync: %w", ctx.Err())
	}
	w.queue.Add(syncKey)

	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()
	for {
		key, quit := w.queue.Get()
		if quit {
			return nil
		}
		if err := w.sync(ctx, key); apierrors.IsConflict(err) {
			// Our own previous write, usually: the retry reads the newer object.
			logger.V(2).Info("Config status conflict, retrying", "err", err)
			w.queue.AddRateLimited(key)
		} else if err != nil {
			logger.Error(err, "Config sync failed, retrying")
			w.queue.AddRateLimited(key)
		} else {
			w.queue.Forget(key)
		}
		w.queue.Done(key)
		w.syncs.Add(1)
	}
}

func (w *Watcher) sync(ctx context.Context, key string) error {
	res, err := w.read(ctx)
	if err != nil {
		return err
	}
	if key == usageKey {
		if snap := w.snap.Load(); snap != nil && w.status != nil {
			return w.writeStatus(ctx, res, snap, w.Problems())
		}
		return nil
	}
	snap, problems := config.Build(res)
	w.snap.Store(snap)
	w.problems.Store(&problems)
	if w.onChange != nil {
		w.onChange(snap)
	}
	klog.FromContext(ctx).V(4).Info("Config built", "pools", len(snap.Pools), "peers", len(snap.Peers), "problems", len(problems))
	if w.status == nil {
		return nil
	}
	return w.writeStatus(ctx, res, snap, problems)
}

func (w *Watcher) read(ctx context.Context) (config.Resources, error) {
	var (
		res   config.Resources
		pools v1alpha1.IPPoolList
		peers v1alpha1.BGPPeerList
		bgp   v1alpha1.BGPAdvertisementList
		l2    v1alpha1.L2AdvertisementList
	)
	for _, l := range []client.ObjectList{&pools, &peers, &bgp, &l2} {
		if err := w.cache.List(ctx, l); err != nil {
			return res, fmt.Errorf("list %T: %w", l, err)
		}
	}
	res.Pools, res.Peers, res.BGPAdvertisements, res.L2Advertisements = pools.Items, peers.Items, bgp.Items, l2.Items
	return res, nil
}

// writeStatus updates the status of every object whose conditions or capacity changed.
// It writes nothing when nothing changed. Errors are collected so one conflict does not
// hold back the other objects.
func (w *Watcher) writeStatus(ctx context.Context, res config.Resources, snap *config.Snapshot, problems []config.Problem) error {
	now := metav1.NewTime(w.clock.Now())
	var firstErr error
	write := func(obj client.Object, changed bool) {
		if !changed {
			return
		}
		if err := w.status.Status().Update(ctx, obj); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("update status of %T %q: %w", obj, obj.GetName(), err)
			}
			return
		}
		klog.FromContext(ctx).V(2).Info("Wrote config status", "object", klog.KObj(obj))
	}
	for i := range res.Pools {
		p := &res.Pools[i]
		ref := config.ObjectRef{Kind: config.KindIPPool, Name: p.Name}
		changed := config.ApplyConditions(&p.Status.Conditions, config.Conditions(ref, p.Generation, problems), now)
		changed = setPoolCapacity(&p.Status, snap.Pool(p.Name)) || changed
		var inUse, known bool
		if w.usage != nil {
			if u, ok := w.usage(p.Name); ok {
				changed = setPoolUse(&p.Status, u) || changed
				inUse, known = u.InUse4.Sign() > 0 || u.InUse6.Sign() > 0, true
			}
		}
		if p.Status.ObservedGeneration != p.Generation {
			p.Status.ObservedGeneration, changed = p.Generation, true
		}
		write(p, changed)
		// Every pool carries the finalizer until it is deleted and empty: added only once
		// in use, it came a status write after the first address, and a pool deleted
		// meanwhile vanished under its Service. While the use is unknown (before the
		// allocator claimed what Services hold) a deleted pool keeps it.
		if deleting := p.DeletionTimestamp != nil; w.usage != nil && (known || !deleting) {
			if err := w.setFinalizer(ctx, p, inUse || !deleting); err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	for i := range res.Peers {
		p := &res.Peers[i]
		orig := p.DeepCopy()
		ref := config.ObjectRef{Kind: config.KindBGPPeer, Name: p.Name}
		changed := config.ApplyConditions(&p.Status.Conditions, config.Conditions(ref, p.Generation, problems), now)
		if p.Status.ObservedGeneration != p.Generation {
			p.Status.ObservedGeneration, changed = p.Generation, true
		}
		if n := established(p.Status.Nodes); p.Status.Established != n {
			p.Status.Established, changed = n, true
		}
		if !changed {
			continue
		}
		// A merge patch of what changed, without the optimistic lock: the speakers apply
		// their entries all the time, and an Update would keep conflicting with them.
		if err := w.status.Status().Patch(ctx, p, client.MergeFrom(orig)); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("patch status of BGPPeer %q: %w", p.Name, err)
		}
	}
	for i := range res.BGPAdvertisements {
		a := &res.BGPAdvertisements[i]
		ref := config.ObjectRef{Kind: config.KindBGPAdvertisement, Name: a.Name}
		write(a, applyAdvertisementStatus(&a.Status, ref, a.Generation, problems, now))
	}
	for i := range res.L2Advertisements {
		a := &res.L2Advertisements[i]
		ref := config.ObjectRef{Kind: config.KindL2Advertisement, Name: a.Name}
		write(a, applyAdvertisementStatus(&a.Status, ref, a.Generation, problems, now))
	}
	return firstErr
}

// established counts the nodes whose speaker reports its session with the peer up. The
// speakers write their own entries (server-side apply, one field manager per node); the
// count is the watcher's, which sees them all.
func established(nodes []v1alpha1.PeerNodeStatus) int32 {
	var n int32
	for _, e := range nodes {
		if e.State == v1alpha1.SessionEstablished {
			n++
		}
	}
	return n
}

func applyAdvertisementStatus(s *v1alpha1.AdvertisementStatus, ref config.ObjectRef, gen int64, problems []config.Problem, now metav1.Time) bool {
	changed := config.ApplyConditions(&s.Conditions, config.Conditions(ref, gen, problems), now)
	if s.ObservedGeneration != gen {
		s.ObservedGeneration, changed = gen, true
	}
	return changed
}

// setPoolUse writes the in-use counts of the families the status reports.
func setPoolUse(s *v1alpha1.IPPoolStatus, u PoolUsage) bool {
	changed := false
	for _, f := range []struct {
		usage **v1alpha1.FamilyUsage
		n     *big.Int
	}{{&s.IPv4, u.InUse4}, {&s.IPv6, u.InUse6}} {
		if *f.usage == nil || f.n == nil {
			continue
		}
		if v := f.n.String(); (*f.usage).InUse != v {
			(*f.usage).InUse, changed = v, true
		}
	}
	return changed
}

// setFinalizer puts PoolInUseFinalizer on a pool (want) or takes it off.
func (w *Watcher) setFinalizer(ctx context.Context, p *v1alpha1.IPPool, want bool) error {
	if controllerutil.ContainsFinalizer(p, PoolInUseFinalizer) == want {
		return nil
	}
	patch := client.MergeFromWithOptions(p.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if want {
		controllerutil.AddFinalizer(p, PoolInUseFinalizer)
	} else {
		controllerutil.RemoveFinalizer(p, PoolInUseFinalizer)
	}
	if err := w.status.Patch(ctx, p, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("finalizer of pool %q: %w", p.Name, err)
	}
	return nil
}

// setPoolCapacity writes the accepted pool's capacity per family, keeping the in-use
// counts the allocator owns; a pool left out has no capacity.
func setPoolCapacity(s *v1alpha1.IPPoolStatus, p *config.Pool) bool {
	usage := func(have *v1alpha1.FamilyUsage, f config.Family) *v1alpha1.FamilyUsage {
		if p == nil || p.Capacity(f).Sign() == 0 {
			return nil
		}
		u := &v1alpha1.FamilyUsage{Capacity: p.Capacity(f).String()}
		if have != nil {
			u.InUse = have.InUse
		}
		return u
	}
	v4, v6 := usage(s.IPv4, config.IPv4), usage(s.IPv6, config.IPv6)
	if equality.Semantic.DeepEqual(v4, s.IPv4) && equality.Semantic.DeepEqual(v6, s.IPv6) {
		return false
	}
	s.IPv4, s.IPv6 = v4, v6
	return true
}
