package membership

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"

	"github.com/hashicorp/memberlist"
	"k8s.io/klog/v2"
)

// roster is berth's copy of memberlist's live members, kept by memberlist's event
// callbacks. memberlist calls them under its node lock, so copying the node there is
// race-free, whereas the *Node values memberlist.Members returns are updated in place
// after that lock is released. Suspect members stay: memberlist raises no event until it
// declares them dead, and counts them as live until then.
type roster struct {
	logger  klog.Logger
	metrics *metrics
	kick    func() // non-blocking; memberlist waits for every callback

	mu      sync.Mutex
	members map[string]Member
	badMeta map[string]string // node → the undecodable metadata already logged
}

var _ memberlist.EventDelegate = (*roster)(nil)

func newRoster(logger klog.Logger, m *metrics, kick func()) *roster {
	return &roster{
		logger:  logger,
		metrics: m,
		kick:    kick,
		members: map[string]Member{},
		badMeta: map[string]string{},
	}
}

// NotifyJoin records a node that joined or came back from the dead.
func (r *roster) NotifyJoin(n *memberlist.Node) { r.put(n, eventJoin) }

// NotifyUpdate records a node whose metadata changed.
func (r *roster) NotifyUpdate(n *memberlist.Node) { r.put(n, eventUpdate) }

// NotifyLeave drops a node that left or was declared dead.
func (r *roster) NotifyLeave(n *memberlist.Node) {
	r.mu.Lock()
	delete(r.members, n.Name)
	r.mu.Unlock()
	r.metrics.events.WithLabelValues(eventLeave).Inc()
	r.kick()
}

func (r *roster) put(n *memberlist.Node, event string) {
	m := Member{Name: n.Name, Addr: nodeAddr(n)}
	meta, err := decodeMeta(n.Meta)
	r.mu.Lock()
	if err == nil {
		m.Meta = meta
		delete(r.badMeta, n.Name)
	} else if r.badMeta[n.Name] != string(n.Meta) {
		// Logged once per distinct metadata: it may come back on every rejoin.
		r.badMeta[n.Name] = string(n.Meta)
		r.logger.Error(err, "Ignoring member metadata; the member counts with none", "node", n.Name, "bytes", len(n.Meta))
	}
	r.members[n.Name] = m
	r.mu.Unlock()
	if err != nil {
		r.metrics.metaErrors.Inc()
	}
	r.metrics.events.WithLabelValues(event).Inc()
	r.kick()
}

// list returns the members sorted by name, deep-copied.
func (r *roster) list() []Member {
	r.mu.Lock()
	out := make([]Member, 0, len(r.members))
	for _, m := range r.members {
		m.Meta.L2Interfaces = slices.Clone(m.Meta.L2Interfaces)
		out = append(out, m)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func (r *roster) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.members)
}

func nodeAddr(n *memberlist.Node) netip.AddrPort {
	a, _ := netip.AddrFromSlice(n.Addr)
	return netip.AddrPortFrom(a.Unmap(), n.Port)
}

// metaDelegate hands memberlist this node's encoded metadata, and berth's user messages
// (accusations) to onMsg.
type metaDelegate struct {
	mu    sync.Mutex
	meta  []byte
	onMsg func([]byte)
}

var _ memberlist.Delegate = (*metaDelegate)(nil)

func (d *metaDelegate) get() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.meta
}

func (d *metaDelegate) set(b []byte) {
	d.mu.Lock()
	d.meta = b
	d.mu.Unlock()
}

// NodeMeta returns the encoded metadata; encodeMeta already kept it within limit.
func (d *metaDelegate) NodeMeta(limit int) []byte { return d.get() }

// NotifyMsg hands a user message to onMsg, which must copy what it keeps.
func (d *metaDelegate) NotifyMsg(b []byte) {
	if d.onMsg != nil {
		d.onMsg(b)
	}
}

// berth broadcasts nothing through gossip and keeps no state beyond node metadata.
func (d *metaDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d *metaDelegate) LocalState(bool) []byte          { return nil }
func (d *metaDelegate) MergeRemoteState([]byte, bool)   {}

// notifier calls a function from its own goroutine after one or more kicks, so memberlist
// never waits for the caller's reaction and bursts of events collapse into one call.
type notifier struct {
	kicks chan struct{}
	stop  chan struct{}
	done  chan struct{}
}

func newNotifier() *notifier {
	return &notifier{kicks: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

func (n *notifier) kick() {
	select {
	case n.kicks <- struct{}{}:
	default: // a call is already pending; it will see this change too
	}
}

// run calls f once per batch of kicks until close.
func (n *notifier) run(f func()) {
	defer close(n.done)
	for {
		select {
		case <-n.stop:
			return
		case <-n.kicks:
			f()
		}
	}
}

// close stops run and waits for it, including a call of f in progress.
func (n *notifier) close() {
	close(n.stop)
	<-n.done
}
