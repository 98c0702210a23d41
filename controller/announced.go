package controller

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/controller/allocator"
)

// ConditionAnnounced is the Service condition that summarises the nodes' NodeAnnouncements:
// True naming which nodes announce which addresses over which protocol, False when none does.
const ConditionAnnounced = "berth.dev/Announced"

// Reasons of berth.dev/Announced, reused as Event reasons, and the Event for an L2 handover.
const (
	ReasonAnnounced     = "Announced"
	ReasonNotAnnounced  = "NotAnnounced"
	EventL2OwnerChanged = "L2OwnerChanged"
)

// announcedService is what the summary needs of a Service.
type announcedService struct {
	IPs   []netip.Addr // status.loadBalancer.ingress
	Local bool         // externalTrafficPolicy: Local
}

// announcedSummary is a Service's berth.dev/Announced condition, plus the node answering
// ARP/NDP for each address, which the Events compare.
type announcedSummary struct {
	Status  metav1.ConditionStatus // empty: the Service gets no condition
	Reason  string
	Message string
	L2Owner map[netip.Addr]string
}

func (s announcedSummary) condition() metav1.Condition {
	return metav1.Condition{Type: ConditionAnnounced, Status: s.Status, Reason: s.Reason, Message: s.Message}
}

// announcers are the nodes announcing one address over one protocol, and through what:
// interfaces for L2, peers for BGP. Both sorted, without duplicates.
type announcers struct{ nodes, via []string }

// summarizeAnnounced turns every node's entry for a Service (by node name) into its
// condition. Only the Service's own addresses count: an entry naming another is stale.
// prevOwner is the L2 owner per address from the previous summary.
func summarizeAnnounced(svc announcedService, entries map[string]v1alpha1.AnnouncedService, prevOwner map[netip.Addr]string) announcedSummary {
	ips := slices.Clone(svc.IPs)
	slices.SortFunc(ips, netip.Addr.Compare)
	ips = slices.Compact(ips)
	if len(ips) == 0 {
		return announcedSummary{}
	}
	l2 := collectAnnouncers(ips, entries, func(e v1alpha1.AnnouncedService) ([]string, []string) { return e.L2, e.Interfaces })
	bgp := collectAnnouncers(ips, entries, func(e v1alpha1.AnnouncedService) ([]string, []string) { return e.BGP, e.Peers })
	owner := l2Owners(ips, l2, prevOwner)

	clauses := describeAnnouncers("L2", ips, l2, func(via []string) string { return " (" + strings.Join(via, ", ") + ")" })
	clauses = append(clauses, describeAnnouncers("BGP", ips, bgp, func(via []string) string { return " to peers " + strings.Join(via, ", ") })...)
	var silent []netip.Addr
	for _, ip := range ips {
		if _, ok := l2[ip]; !ok {
			if _, ok := bgp[ip]; !ok {
				silent = append(silent, ip)
			}
		}
	}
	if len(clauses) == 0 {
		return announcedSummary{Status: metav1.ConditionFalse, Reason: ReasonNotAnnounced, Message: notAnnouncedMessage(silent, svc.Local), L2Owner: owner}
	}
	if len(silent) > 0 {
		clauses = append(clauses, "no node announces "+addrList(silent))
	}
	return announcedSummary{Status: metav1.ConditionTrue, Reason: ReasonAnnounced, Message: strings.Join(clauses, "; "), L2Owner: owner}
}

// collectAnnouncers gathers, per address of ips (sorted), the nodes whose entry lists it
// in the protocol pick returns, with the interfaces or peers they list.
func collectAnnouncers(ips []netip.Addr, entries map[string]v1alpha1.AnnouncedService, pick func(v1alpha1.AnnouncedService) (addrs, via []string)) map[netip.Addr]announcers {
	out := map[netip.Addr]announcers{}
	for node, e := range entries {
		addrs, via := pick(e)
		for _, s := range addrs {
			ip, err := netip.ParseAddr(s)
			if _, found := slices.BinarySearchFunc(ips, ip, netip.Addr.Compare); err != nil || !found {
				continue
			}
			a := out[ip]
			a.nodes = append(a.nodes, node)
			a.via = append(a.via, via...)
			out[ip] = a
		}
	}
	for ip, a := range out {
		slices.Sort(a.nodes)
		slices.Sort(a.via)
		out[ip] = announcers{nodes: slices.Compact(a.nodes), via: slices.Compact(a.via)}
	}
	return out
}

// describeAnnouncers renders one protocol's part of the message, in address order;
// addresses announced by the same nodes through the same interfaces or peers share a clause.
func describeAnnouncers(proto string, ips []netip.Addr, by map[netip.Addr]announcers, via func([]string) string) []string {
	type group struct {
		a   announcers
		ips []netip.Addr
	}
	var groups []*group
	seen := map[string]*group{}
	for _, ip := range ips {
		a, ok := by[ip]
		if !ok {
			continue
		}
		k := strings.Join(a.nodes, "\x00") + "\x01" + strings.Join(a.via, "\x00")
		g := seen[k]
		if g == nil {
			g = &group{a: a}
			seen[k] = g
			groups = append(groups, g)
		}
		g.ips = append(g.ips, ip)
	}
	out := make([]string, 0, len(groups))
	for _, g := range groups {
		s := fmt.Sprintf("%s %s from %s", proto, addrList(g.ips), strings.Join(g.a.nodes, ", "))
		if len(g.a.via) > 0 {
			s += via(g.a.via)
		}
		out = append(out, s)
	}
	return out
}

// l2Owners names the node answering for each address: the previous owner while it still
// announces it (two nodes at once is a handover under way, not yet a change), else the
// first by name. An address nobody announces keeps its last owner, so that a handover
// through a gap still reads as one change.
func l2Owners(ips []netip.Addr, l2 map[netip.Addr]announcers, prev map[netip.Addr]string) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for _, ip := range ips {
		nodes := l2[ip].nodes
		switch p := prev[ip]; {
		case p != "" && (len(nodes) == 0 || slices.Contains(nodes, p)):
			out[ip] = p
		case len(nodes) > 0:
			out[ip] = nodes[0]
		}
	}
	return out
}

func notAnnouncedMessage(ips []netip.Addr, local bool) string {
	msg := fmt.Sprintf("No node announces %s: check that an L2Advertisement or BGPAdvertisement selects its pool and nodes where berth-speaker runs", addrList(ips))
	if local {
		msg += ", and that those nodes have a ready endpoint (externalTrafficPolicy: Local)"
	}
	return msg + "; kubectl get nodeannouncements -o yaml shows what each node announces"
}

// announcedEvent is an Event a change of summary warrants.
type announcedEvent struct{ Type, Reason, Message string }

// announcedEvents returns the Events the change from old to cur warrants: the first
// announcer arriving, the last one leaving (Warning), and each address whose L2 owner
// changed. An unchanged summary warrants none, so resyncs stay silent.
func announcedEvents(old, cur announcedSummary) []announcedEvent {
	if cur.Status == "" {
		return nil
	}
	var out []announcedEvent
	switch {
	case cur.Status == metav1.ConditionTrue && old.Status != metav1.ConditionTrue:
		out = append(out, announcedEvent{corev1.EventTypeNormal, ReasonAnnounced, cur.Message})
	case cur.Status == metav1.ConditionFalse && old.Status == metav1.ConditionTrue:
		out = append(out, announcedEvent{corev1.EventTypeWarning, ReasonNotAnnounced, cur.Message})
	}
	ips := make([]netip.Addr, 0, len(cur.L2Owner))
	for ip := range cur.L2Owner {
		ips = append(ips, ip)
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	for _, ip := range ips {
		if was, now := old.L2Owner[ip], cur.L2Owner[ip]; was != "" && was != now {
			out = append(out, announcedEvent{corev1.EventTypeNormal, EventL2OwnerChanged, fmt.Sprintf("%s: %s → %s", ip, was, now)})
		}
	}
	return out
}

// entriesByService indexes one node's entries by Service.
func entriesByService(list []v1alpha1.AnnouncedService) map[cache.ObjectName]v1alpha1.AnnouncedService {
	out := make(map[cache.ObjectName]v1alpha1.AnnouncedService, len(list))
	for _, e := range list {
		out[cache.ObjectName{Namespace: e.Namespace, Name: e.Name}] = e
	}
	return out
}

// changedEntries returns, sorted, the Services whose entry differs between two versions of
// one node's list: added, removed or changed. The others need no recomputing.
func changedEntries(old, cur []v1alpha1.AnnouncedService) []cache.ObjectName {
	before := entriesByService(old)
	var out []cache.ObjectName
	for key, e := range entriesByService(cur) {
		if b, ok := before[key]; !ok || !sameEntry(b, e) {
			out = append(out, key)
		}
		delete(before, key)
	}
	for key := range before {
		out = append(out, key)
	}
	slices.SortFunc(out, func(a, b cache.ObjectName) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return out
}

func sameEntry(a, b v1alpha1.AnnouncedService) bool {
	return slices.Equal(a.L2, b.L2) && slices.Equal(a.Interfaces, b.Interfaces) &&
		slices.Equal(a.BGP, b.BGP) && slices.Equal(a.Peers, b.Peers)
}

// announcedLoop is the single writer of berth.dev/Announced. It keeps every
// NodeAnnouncement's entries indexed by Service and recomputes a Service only when its
// entries or the Service itself change; the queue, keyed by Service, coalesces bursts.
type announcedLoop struct {
	handles    func(*corev1.Service) bool
	services   corelisters.ServiceLister
	conditions *serviceConditions
	recorder   record.EventRecorder
	queue      workqueue.TypedRateLimitingInterface[cache.ObjectName]

	mu sync.Mutex
	// index is Service → node → entry, as the NodeAnnouncements say. The entries share
	// slices with the informer's cache: read only.
	index map[cache.ObjectName]map[string]v1alpha1.AnnouncedService
	// last is the summary last written per Service: the "before" of its Events.
	last map[cache.ObjectName]announcedSummary
	// members is what each node's memberlist sees alive; dead are the nodes most others
	// do not see, whose entries are ignored.
	members map[string][]string
	dead    map[string]bool
	// conflicts are the L2 conflicts each node reports.
	conflicts map[string][]v1alpha1.L2Conflict
	// entries is how many Services each node's NodeAnnouncement lists (see settle).
	entries map[string]int
	// allocating reports a backlog of allocations; nil: none. Announced writes wait it out.
	allocating func() bool
}

// allocationYield is how often a held Announced write looks at the allocation backlog.
// On a cold start of thousands of Services the conditions came in between the allocations
// and slowed them by a fifth; addresses matter more, and a Service's condition still comes
// in one write once they are out.
const allocationYield = time.Second

// waitForAllocations holds a worker while allocations are backlogged; the Service's later
// changes merge in the queue meanwhile.
func (l *announcedLoop) waitForAllocations(ctx context.Context) {
	for l.allocating != nil && l.allocating() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(allocationYield):
		}
	}
}

// backlogged reports whether the allocation queue holds more Services than its workers
// take at once.
func backlogged(queued, workers int) bool { return queued > workers }

// newAnnouncedLoop returns the loop for the Services handles accepts; it starts nothing.
func newAnnouncedLoop(handles func(*corev1.Service) bool, services corelisters.ServiceLister, recorder record.EventRecorder, conditions *serviceConditions) *announcedLoop {
	return &announcedLoop{
		handles:    handles,
		services:   services,
		conditions: conditions,
		recorder:   recorder,
		index:      map[cache.ObjectName]map[string]v1alpha1.AnnouncedService{},
		last:       map[cache.ObjectName]announcedSummary{},
		members:    map[string][]string{},
		dead:       map[string]bool{},
		conflicts:  map[string][]v1alpha1.L2Conflict{},
		// Per-item backoff 5 ms → 60 s for failed writes; the bucket spreads retries of a
		// failing burst at 50/s, half the client's QPS, which allocation needs more.
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedMaxOfRateLimiter(
				workqueue.NewTypedItemExponentialFailureRateLimiter[cache.ObjectName](5*time.Millisecond, 60*time.Second),
				&workqueue.TypedBucketRateLimiter[cache.ObjectName]{Limiter: rate.NewLimiter(rate.Limit(50), 200)},
			),
			workqueue.TypedRateLimitingQueueConfig[cache.ObjectName]{Name: "berth-announced"},
		),
	}
}

// wants reports whether the Service gets berth.dev/Announced: a LoadBalancer of berth's,
// with addresses, not being deleted.
func (l *announcedLoop) wants(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.DeletionTimestamp == nil &&
		len(ingressIPs(svc)) > 0 && l.handles(svc)
}

// serviceHandlers queue the Services that get the condition or still carry it.
func (l *announcedLoop) serviceHandlers() cache.ResourceEventHandler {
	concerns := func(svc *corev1.Service) bool {
		return l.wants(svc) || meta.FindStatusCondition(svc.Status.Conditions, ConditionAnnounced) != nil
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if svc := obj.(*corev1.Service); concerns(svc) {
				l.queue.Add(cache.MetaObjectToName(svc))
			}
		},
		UpdateFunc: func(old, cur any) {
			o, c := old.(*corev1.Service), cur.(*corev1.Service)
			if o.ResourceVersion == c.ResourceVersion || !(concerns(o) || concerns(c)) {
				return
			}
			// A Service that just got its addresses waits for the nodes' first reports,
			// rather than saying NotAnnounced for the moment they take.
			if len(o.Status.LoadBalancer.Ingress) == 0 && meta.FindStatusCondition(c.Status.Conditions, ConditionAnnounced) == nil {
				l.queue.AddAfter(cache.MetaObjectToName(c), l.settle())
				return
			}
			l.queue.Add(cache.MetaObjectToName(c))
		},
		// Every deletion, so that the sync drops what is remembered of the Service.
		DeleteFunc: func(obj any) {
			if name, err := cache.DeletionHandlingObjectToName(obj); err == nil {
				l.queue.Add(name)
			}
		},
	}
}

// announcementHandlers keep the index in step with the NodeAnnouncements.
func (l *announcedLoop) announcementHandlers() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { l.nodeChanged(nil, announcementOf(obj)) },
		UpdateFunc: func(old, cur any) {
			o, c := announcementOf(old), announcementOf(cur)
			if o != nil && c != nil && o.ResourceVersion == c.ResourceVersion {
				return
			}
			l.nodeChanged(o, c)
		},
		DeleteFunc: func(obj any) { l.nodeChanged(announcementOf(obj), nil) },
	}
}

func announcementOf(obj any) *v1alpha1.NodeAnnouncement {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	na, _ := obj.(*v1alpha1.NodeAnnouncement)
	return na
}

// nodeChanged applies the change from old to cur (nil: none) of one node's announcement
// to the index, and queues only the Services whose entries changed.
func (l *announcedLoop) nodeChanged(old, cur *v1alpha1.NodeAnnouncement) {
	var node string
	var before, after []v1alpha1.AnnouncedService
	if old != nil {
		node, before = old.Name, old.Status.Services
	}
	if cur != nil {
		node, after = cur.Name, cur.Status.Services
	}
	changed := append(changedEntries(before, after), l.membersChanged(node, old, cur)...)
	changed = append(changed, l.conflictsChanged(node, old, cur)...)
	if len(changed) == 0 {
		return
	}
	now := entriesByService(after)
	l.mu.Lock()
	if l.entries == nil {
		l.entries = map[string]int{}
	}
	if cur == nil {
		delete(l.entries, node)
	} else {
		l.entries[node] = len(after)
	}
	for _, key := range changed {
		e, ok := now[key]
		switch {
		case ok && l.index[key] == nil:
			l.index[key] = map[string]v1alpha1.AnnouncedService{node: e}
		case ok:
			l.index[key][node] = e
		case l.index[key][node].Name == "":
			// Queued by membersChanged only: nothing to remove.
		default:
			delete(l.index[key], node)
			if len(l.index[key]) == 0 {
				delete(l.index, key)
			}
		}
	}
	settle := l.settleLocked()
	l.mu.Unlock()
	for _, key := range changed {
		l.queue.AddAfter(key, settle)
	}
}

// announcedSettle is how long the condition waits after a node's report changed a
// Service's entries before it is written: the nodes report a new Service within about a
// second of each other (--report-interval), and one write then says what all of them do,
// instead of one write per node. A Service that just got its addresses waits as long; a
// change the Service itself makes otherwise is written at once.
const announcedSettle = time.Second

// settleLocked is announcedSettle stretched as the speakers stretch their report interval
// (speaker.reportInterval: one more interval per 1,000 Services listed), so that at 10,000
// Services the nodes' reports, 10 s apart, still make one write. l.mu must be held.
func (l *announcedLoop) settleLocked() time.Duration {
	largest := 0
	for _, n := range l.entries {
		largest = max(largest, n)
	}
	return announcedSettle * time.Duration(max(1, largest/1000))
}

func (l *announcedLoop) settle() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.settleLocked()
}

// membersChanged records a node's view of memberlist and returns the Services with entries
// of the nodes whose liveness this flipped.
func (l *announcedLoop) membersChanged(node string, old, cur *v1alpha1.NodeAnnouncement) []cache.ObjectName {
	var before, after []string
	if old != nil {
		before = old.Status.Members
	}
	if cur != nil {
		after = cur.Status.Members
	}
	if old != nil && cur != nil && slices.Equal(before, after) {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur == nil {
		delete(l.members, node)
	} else {
		l.members[node] = after
	}
	dead := config.DeadNodes(l.members)
	var out []cache.ObjectName
	for key, byNode := range l.index {
		for n := range byNode {
			if dead[n] != l.dead[n] {
				out = append(out, key)
				break
			}
		}
	}
	l.dead = dead
	return out
}

// conflictsChanged records a node's L2 conflicts and returns the Services holding an IP
// whose conflicts changed.
func (l *announcedLoop) conflictsChanged(node string, old, cur *v1alpha1.NodeAnnouncement) []cache.ObjectName {
	var before, after []v1alpha1.L2Conflict
	if old != nil {
		before = old.Status.Conflicts
	}
	if cur != nil {
		after = cur.Status.Conflicts
	}
	if slices.Equal(before, after) {
		return nil
	}
	ips := map[netip.Addr]bool{}
	for _, c := range append(slices.Clone(before), after...) {
		if ip, err := netip.ParseAddr(c.IP); err == nil {
			ips[ip] = true
		}
	}
	l.mu.Lock()
	if len(after) == 0 {
		delete(l.conflicts, node)
	} else {
		l.conflicts[node] = after
	}
	l.mu.Unlock()
	// Conflicts are rare: a scan of the Services is cheaper than an index by IP.
	svcs, _ := l.services.List(labels.Everything())
	var out []cache.ObjectName
	for _, svc := range svcs {
		if slices.ContainsFunc(ingressIPs(svc), func(ip netip.Addr) bool { return ips[ip] }) {
			out = append(out, cache.MetaObjectToName(svc))
		}
	}
	return out
}

// withConflicts adds to a summary the other machines answering for the Service's IPs, as
// nodes reported them (by node name), in IP order.
func withConflicts(sum announcedSummary, ips []netip.Addr, conflicts map[string][]v1alpha1.L2Conflict) announcedSummary {
	var clauses []string
	for node, cs := range conflicts {
		for _, c := range cs {
			ip, err := netip.ParseAddr(c.IP)
			if err != nil || !slices.Contains(ips, ip) {
				continue
			}
			clauses = append(clauses, fmt.Sprintf("%s also answered by %s (seen by %s on %s)", ip, c.MAC, node, c.Interface))
		}
	}
	if len(clauses) == 0 || sum.Status == "" {
		return sum
	}
	slices.Sort(clauses)
	sum.Message += "; L2 conflict: " + strings.Join(clauses, ", ")
	return sum
}

// run works the queue with workers once synced reports the informers delivered what
// they listed (an incomplete index would declare Services unannounced), until ctx ends.
func (l *announcedLoop) run(ctx context.Context, workers int, synced ...cache.InformerSynced) {
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithName("announced"))
	defer l.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for range workers {
		wg.Go(func() {
			for l.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	l.queue.ShutDown()
}

func (l *announcedLoop) next(ctx context.Context) bool {
	key, quit := l.queue.Get()
	if quit {
		return false
	}
	defer l.queue.Done(key)
	if err := l.sync(ctx, key); err != nil {
		klog.FromContext(ctx).Error(err, "Announced condition sync failed", "service", key)
		l.queue.AddRateLimited(key)
		return true
	}
	l.queue.Forget(key)
	return true
}

// sync brings one Service's condition in line with the index, and records the Events the
// change warrants once the condition is written.
func (l *announcedLoop) sync(ctx context.Context, key cache.ObjectName) error {
	l.waitForAllocations(ctx)
	svc, err := l.services.Services(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		l.mu.Lock()
		delete(l.last, key)
		l.mu.Unlock()
		l.conditions.forget(allocator.Key{Namespace: key.Namespace, Name: key.Name}, ConditionAnnounced)
		return nil
	}
	if err != nil {
		return err
	}
	if !l.wants(svc) {
		l.mu.Lock()
		delete(l.last, key)
		l.mu.Unlock()
		return l.conditions.clear(ctx, svc, ConditionAnnounced)
	}

	l.mu.Lock()
	old, seen := l.last[key]
	conflicts := make(map[string][]v1alpha1.L2Conflict, len(l.conflicts))
	for node, cs := range l.conflicts {
		if !l.dead[node] {
			conflicts[node] = cs
		}
	}
	entries := make(map[string]v1alpha1.AnnouncedService, len(l.index[key]))
	for node, e := range l.index[key] {
		if !l.dead[node] {
			entries[node] = e
		}
	}
	l.mu.Unlock()
	if !seen {
		// First sight since this replica took the lease: start from what the Service shows,
		// so that a restart repeats no Event.
		if c, ok := l.conditions.current(svc, ConditionAnnounced); ok {
			old = announcedSummary{Status: c.Status, Reason: c.Reason, Message: c.Message}
		}
	}
	in := announcedService{IPs: ingressIPs(svc), Local: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal}
	cur := withConflicts(summarizeAnnounced(in, entries, old.L2Owner), in.IPs, conflicts)
	wrote, err := l.conditions.set(ctx, svc, cur.condition())
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.last[key] = cur
	l.mu.Unlock()
	if wrote {
		klog.FromContext(ctx).V(2).Info("Announced condition changed", "service", klog.KObj(svc), "status", cur.Status, "message", cur.Message)
	}
	for _, e := range announcedEvents(old, cur) {
		l.recorder.Event(svc, e.Type, e.Reason, e.Message)
	}
	return nil
}
