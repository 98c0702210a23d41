// Package membership wraps hashicorp/memberlist for berth-speaker: which speakers are
// alive, and what each publishes (its usable L2 interfaces, its decision version). The
// speaker's loop reacts to OnChange by reading Members once and passing the list on as
// data.
package membership

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"
)

// DefaultPort is memberlist's usual port, used when Config.Bind has none.
const DefaultPort = 7946

// DefaultLabel is the memberlist label every berth packet carries: a node of another
// memberlist cluster (or another product) on the same port is rejected.
const DefaultLabel = "berth"

// metaBroadcastTimeout bounds how long SetMeta waits for memberlist to finish
// broadcasting; normally a few gossip rounds. Push/pull spreads the metadata anyway.
const metaBroadcastTimeout = 2 * time.Second

var (
	// ErrNoKey means there is no primary key. berth has no default key, ever.
	ErrNoKey = errors.New(`memberlist encryption key required: berth-speaker reads it from key "key" ` +
		`of the Secret berth-memberlist that berth-controller creates; there is no default key`)
	// ErrInvalidKey means a key is not an AES-128/192/256 key (16, 24 or 32 bytes).
	ErrInvalidKey = errors.New(`invalid memberlist encryption key (Secret berth-memberlist)`)
	// ErrInvalidConfig means some other Config field is unusable.
	ErrInvalidConfig = errors.New("invalid membership config")
	// ErrShutdown means the List was shut down.
	ErrShutdown = errors.New("membership list shut down")
)

// Member is a live speaker.
type Member struct {
	Name string
	Addr netip.AddrPort
	// Meta is zero when the member's metadata could not be decoded.
	Meta Meta
}

// Timings are memberlist's failure-detection and dissemination knobs.
type Timings struct {
	ProbeInterval, ProbeTimeout, GossipInterval, PushPullInterval, TCPTimeout time.Duration
	SuspicionMult, RetransmitMult, GossipNodes                                int
}

// DefaultTimings aims at failover within about a second of a node dying. memberlist's LAN
// defaults take ~6.7 s to declare a SIGKILLed node dead. Probe 200 ms / timeout 100 ms
// took 0.6–0.9 s with 2 nodes (DESIGN.md) but, until all 3 others of 4 dropped it,
// p50 0.9 s and max 1.4 s, a third of the samples over 1 s; 150 ms / 75 ms gives p50 0.7 s,
// max 0.9 s (TestMembershipInNetns prints the figures). A node is declared dead after about
// 150 + 300 ms of silence (more past 10 nodes); it then refutes and rejoins.
func DefaultTimings() Timings {
	return Timings{
		// Each member probes one peer per interval, so some member probes a dead node
		// about once per interval whatever the cluster size.
		ProbeInterval: 150 * time.Millisecond,
		// LAN round trips are well under a millisecond; 75 ms leaves room for a busy
		// node, and the rest of the interval goes to indirect and TCP probes.
		ProbeTimeout: 75 * time.Millisecond,
		// Suspicion lasts 2 × max(1, log10 N) × ProbeInterval: 300 ms below 10 nodes,
		// 600 ms at 100; with 2, memberlist waits for no confirmations. memberlist's health
		// awareness slows the probing of a member that is itself overloaded.
		SuspicionMult: 2,
		// Dead and metadata messages piggyback on gossip; twice memberlist's rate makes
		// them reach everyone in a few hundred milliseconds.
		GossipInterval: 100 * time.Millisecond,
		GossipNodes:    3,
		// Each message goes out 4 × ceil(log10(N+1)) times, memberlist's default.
		RetransmitMult: 4,
		// Full-state anti-entropy heals lost gossip and partitions; a third of memberlist's
		// 30 s, one small TCP exchange per node per interval (scaled up past 32 nodes).
		PushPullInterval: 10 * time.Second,
		// Bounds a join or push/pull to an unreachable node; memberlist's 10 s would stall
		// Join 10 s per down node. Probing does not use it.
		TCPTimeout: 2 * time.Second,
	}
}

func (t Timings) validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ProbeInterval", t.ProbeInterval}, {"ProbeTimeout", t.ProbeTimeout}, {"GossipInterval", t.GossipInterval},
		{"PushPullInterval", t.PushPullInterval}, {"TCPTimeout", t.TCPTimeout},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("timings: %s %v must be positive", d.name, d.v))
		}
	}
	if t.ProbeTimeout >= t.ProbeInterval {
		errs = append(errs, fmt.Errorf("timings: ProbeTimeout %v leaves no time for indirect probes within ProbeInterval %v",
			t.ProbeTimeout, t.ProbeInterval))
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"SuspicionMult", t.SuspicionMult}, {"RetransmitMult", t.RetransmitMult}, {"GossipNodes", t.GossipNodes}} {
		if n.v < 1 {
			errs = append(errs, fmt.Errorf("timings: %s %d must be at least 1", n.name, n.v))
		}
	}
	return errors.Join(errs...)
}

// Config configures a List.
type Config struct {
	// Name is the Kubernetes node name, memberlist's node name.
	Name string
	// Bind is the node address and port to listen on; port 0 means DefaultPort.
	Bind netip.AddrPort
	// Advertise is the address others reach this node at; zero means Bind, port 0 Bind's.
	Advertise netip.AddrPort
	// Keys are the AES keys (16, 24 or 32 bytes each) of all memberlist traffic: the
	// primary encrypts, every key decrypts. A primary key is required; SetKeys changes them.
	Keys Keys
	// Label tags every packet; nodes with another label are rejected. Empty means
	// DefaultLabel.
	Label string
	// Timings are the failure-detection knobs; zero means DefaultTimings.
	Timings Timings
	// Meta is the initial metadata.
	Meta Meta
	// OnChange is called after joins, leaves, deaths and metadata updates, from the List's
	// own goroutine, once per burst of changes; the caller then reads Members. It must not
	// call Shutdown. Nil means nobody listens.
	OnChange func()
	// Logger receives memberlist's log lines and the List's own; the caller names it.
	Logger klog.Logger
	// OnRefute is called when this node refutes another's claim that it failed (suspected
	// or declared dead): the others may have taken over its work meanwhile. It is called
	// from memberlist's goroutines, with memberlist's lock held: it must not block or call
	// the List. Nil means nobody listens.
	OnRefute func()
}

// List is this node's membership in the speakers' memberlist cluster.
type List struct {
	name     string
	logger   klog.Logger
	ml       *memberlist.Memberlist
	self     []netip.AddrPort // addresses Join skips
	bindPort uint16
	meta     *metaDelegate
	roster   *roster
	metrics  *metrics
	notifier *notifier // nil without OnChange

	metaMu sync.Mutex // serialises SetMeta

	keysMu sync.Mutex          // serialises SetKeys
	ring   *memberlist.Keyring // memberlist's, shared with it: encrypts and decrypts

	stateMu  sync.RWMutex
	shutdown bool

	// accused holds the recent accusations (accuse.go); suspected feeds this node's own
	// from the log bridge to the goroutine that records and sends them, until done.
	accused   *accusations
	suspected chan string
	done      chan struct{}
}

// New validates cfg, creates the memberlist (listening, alone) and starts OnChange's
// goroutine. Call Join next, and Leave and Shutdown when done.
func New(cfg Config) (*List, error) {
	mc, l, err := newConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("membership for node %q: %w", cfg.Name, err)
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("membership for node %q: start memberlist on %s: %w", cfg.Name, l.self[0], err)
	}
	l.ml = ml
	if l.notifier != nil {
		go l.notifier.run(cfg.OnChange)
	}
	go func() {
		for {
			select {
			case name := <-l.suspected:
				l.accuse(name)
			case <-l.done:
				return
			}
		}
	}()
	return l, nil
}

// newConfig checks cfg and builds memberlist's config and the List around it.
func newConfig(cfg Config) (*memberlist.Config, *List, error) {
	keys := cfg.Keys.normalized()
	if err := keys.validate(); err != nil {
		return nil, nil, err
	}
	if cfg.Name == "" {
		return nil, nil, fmt.Errorf("%w: node name required", ErrInvalidConfig)
	}
	bind, adv, err := addresses(cfg.Bind, cfg.Advertise)
	if err != nil {
		return nil, nil, err
	}
	timings := cfg.Timings
	if timings == (Timings{}) {
		timings = DefaultTimings()
	}
	if err := timings.validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	meta, err := encodeMeta(cfg.Meta)
	if err != nil {
		return nil, nil, err
	}
	label := cfg.Label
	if label == "" {
		label = DefaultLabel
	}

	ring, err := memberlist.NewKeyring(keys.Accepted, keys.Primary)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}

	l := &List{name: cfg.Name, logger: cfg.Logger, self: []netip.AddrPort{adv, bind}, bindPort: bind.Port(), ring: ring,
		accused: newAccusations(), suspected: make(chan string, 64), done: make(chan struct{})}
	l.meta = &metaDelegate{meta: meta, onMsg: l.heard}
	l.metrics = newMetrics(func() float64 { return float64(l.roster.len()) }, l.healthScore)
	kick := func() {}
	if cfg.OnChange != nil {
		l.notifier = newNotifier()
		kick = l.notifier.kick
	}
	l.roster = newRoster(cfg.Logger, l.metrics, kick)

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr, mc.BindPort = bind.Addr().String(), int(bind.Port())
	mc.AdvertiseAddr, mc.AdvertisePort = adv.Addr().String(), int(adv.Port())
	l.metrics.setKeys(keys)
	// Every packet and stream is encrypted with the ring's primary key; anything that no
	// key of the ring decrypts, or that comes unencrypted, is dropped.
	mc.Keyring = ring
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.Label = label
	// Pings and acks are a few dozen bytes that LZW does not shrink, and every packet sent
	// compressed allocates a 64 KiB table: at idle, compressing and collecting that
	// garbage was a fifth of an idle speaker's CPU. Peers still read compressed packets.
	mc.EnableCompression = false
	applyTimings(mc, timings)
	mc.Delegate = l.meta
	mc.Events = l.roster
	mc.Logger = newStdLogger(cfg.Logger, logHooks{onRefute: cfg.OnRefute, onSuspect: func(name string) {
		select {
		case l.suspected <- name:
		default: // a burst of accusations; memberlist repeats them
		}
	}})
	return mc, l, nil
}

func applyTimings(mc *memberlist.Config, t Timings) {
	mc.ProbeInterval, mc.ProbeTimeout = t.ProbeInterval, t.ProbeTimeout
	mc.SuspicionMult, mc.RetransmitMult = t.SuspicionMult, t.RetransmitMult
	mc.GossipInterval, mc.GossipNodes = t.GossipInterval, t.GossipNodes
	mc.PushPullInterval, mc.TCPTimeout = t.PushPullInterval, t.TCPTimeout
	// Keep gossiping to a dead node as long as one push/pull round, memberlist's own ratio:
	// a node wrongly declared dead hears about it and refutes.
	mc.GossipToTheDeadTime = t.PushPullInterval
}

// addresses fills in the defaults of the bind and advertise addresses.
func addresses(bind, adv netip.AddrPort) (netip.AddrPort, netip.AddrPort, error) {
	if !bind.Addr().IsValid() {
		return bind, adv, fmt.Errorf("%w: bind address required (the node's InternalIP)", ErrInvalidConfig)
	}
	if bind.Port() == 0 {
		bind = netip.AddrPortFrom(bind.Addr(), DefaultPort)
	}
	bind = netip.AddrPortFrom(bind.Addr().Unmap(), bind.Port())
	if !adv.Addr().IsValid() {
		adv = bind
	}
	if adv.Port() == 0 {
		adv = netip.AddrPortFrom(adv.Addr(), bind.Port())
	}
	adv = netip.AddrPortFrom(adv.Addr().Unmap(), adv.Port())
	if adv.Addr().IsUnspecified() {
		return bind, adv, fmt.Errorf("%w: bind address %s is unspecified: set the advertise address", ErrInvalidConfig, bind)
	}
	return bind, adv, nil
}

// Join contacts other nodes' addresses on this node's port, skipping this node. It
// returns how many answered, and an error only when addrs name another node and none
// answered (a key or label mismatch counts as not answering).
func (l *List) Join(addrs []netip.Addr) (int, error) {
	aps := make([]netip.AddrPort, 0, len(addrs))
	for _, a := range addrs {
		aps = append(aps, netip.AddrPortFrom(a.Unmap(), l.bindPort))
	}
	return l.JoinAddrPorts(aps)
}

// JoinAddrPorts is Join with explicit ports, for nodes listening on different ports.
func (l *List) JoinAddrPorts(addrs []netip.AddrPort) (int, error) {
	l.stateMu.RLock()
	defer l.stateMu.RUnlock()
	if l.shutdown {
		return 0, ErrShutdown
	}
	var targets []string
	for _, a := range addrs {
		a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		if slices.Contains(l.self, a) {
			continue
		}
		targets = append(targets, a.String())
	}
	slices.Sort(targets)
	targets = slices.Compact(targets)
	if len(targets) == 0 {
		return 0, nil // the first node: nobody to join yet
	}
	n, err := l.ml.Join(targets)
	if err != nil {
		return n, fmt.Errorf("join memberlist via %d addresses: %w", len(targets), err)
	}
	return n, nil
}

// SetMeta publishes m (interfaces sorted and deduplicated) to the other members, and does
// nothing when it equals what is published. An error after a valid m means the broadcast
// did not finish in time; the metadata is published and push/pull still spreads it.
func (l *List) SetMeta(m Meta) error {
	b, err := encodeMeta(m)
	if err != nil {
		return err
	}
	l.stateMu.RLock()
	defer l.stateMu.RUnlock()
	if l.shutdown {
		return ErrShutdown
	}
	l.metaMu.Lock()
	defer l.metaMu.Unlock()
	if bytes.Equal(b, l.meta.get()) {
		return nil
	}
	l.meta.set(b)
	if err := l.ml.UpdateNode(metaBroadcastTimeout); err != nil {
		return fmt.Errorf("publish node metadata: %w", err)
	}
	return nil
}

// Members returns the live members, this node included, sorted by name. Suspect members
// are live until memberlist declares them dead, as in memberlist itself.
func (l *List) Members() []Member { return l.roster.list() }

// Suspects returns the names of the members this node's own probes accused of having
// failed (accuse.go), but only while this node's own health is degraded (memberlist's
// awareness: its probes went unanswered without the nacks that would clear it), the sign
// that the trouble is likely this node's, as when it is cut off. A healthy node's passing
// suspicion of one peer is memberlist's business, refuted or confirmed as usual, and
// yields nothing here. They stay in Members until declared dead or they refute it. No
// event tells of suspicion, so callers poll.
func (l *List) Suspects() []string {
	if l.ml.GetHealthScore() == 0 {
		return nil
	}
	return l.liveAmong(l.accused.standing(time.Now(), true))
}

// Accused returns the members some node's probe accused of having failed within the last
// two seconds (accuse.go), with when each was last accused, this node's health aside:
// memberlist then waits for the suspicion to time out or be refuted. Probe them to learn
// more at once. A member stays listed after memberlist declares it dead, until the
// accusation is old: callers learn of the death through OnChange, which may come later.
func (l *List) Accused() map[string]time.Time {
	out := l.accused.standing(time.Now(), false)
	delete(out, l.name)
	return out
}

// Probe pings member name directly, once, and reports whether it answered within the
// probe timeout. A member that is not known, or dead, does not answer.
func (l *List) Probe(name string) bool {
	for _, n := range l.ml.Members() {
		if n.Name == name {
			_, err := l.ml.Ping(name, &net.UDPAddr{IP: n.Addr, Port: int(n.Port)})
			return err == nil
		}
	}
	return false
}

// Leave tells the others this node is going, waiting at most timeout for the broadcast,
// so they drop it at once instead of after failure detection. Shutdown must follow.
func (l *List) Leave(timeout time.Duration) error {
	l.stateMu.RLock()
	defer l.stateMu.RUnlock()
	if l.shutdown {
		return ErrShutdown // memberlist panics on leave after shutdown
	}
	if err := l.ml.Leave(timeout); err != nil {
		return fmt.Errorf("leave memberlist: %w", err)
	}
	return nil
}

// Shutdown stops memberlist's sockets and goroutines, without a leave broadcast (the
// others detect the silence as a death), and waits for OnChange's goroutine. Safe to call
// more than once.
func (l *List) Shutdown() error {
	l.stateMu.Lock()
	if l.shutdown {
		l.stateMu.Unlock()
		return nil
	}
	l.shutdown = true
	close(l.done)
	err := l.ml.Shutdown()
	l.stateMu.Unlock()
	if l.notifier != nil {
		l.notifier.close() // outside stateMu: OnChange may be inside Members or Leave
	}
	if err != nil {
		return fmt.Errorf("shut down memberlist: %w", err)
	}
	return nil
}

// Collector returns the List's metrics, for the caller to register.
func (l *List) Collector() prometheus.Collector { return l.metrics }

func (l *List) healthScore() float64 {
	if l.ml == nil {
		return 0
	}
	return float64(l.ml.GetHealthScore())
}
