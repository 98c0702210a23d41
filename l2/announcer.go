package l2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"
)

// Defaults for Config's zero values.
const (
	// DefaultBurst and DefaultBurstInterval: after the first gratuitous ARP / unsolicited
	// NA, three more 250 ms apart. One frame is enough when nothing is lost, but the
	// moment of a takeover is when frames get lost: the switch may still send the old
	// owner's traffic elsewhere, a client busy re-resolving may miss the first broadcast,
	// a link that has just come up may drop its first frames. Repeats spread over 750 ms
	// cover that, and end well before memberlist's ~1 s failover cycle could move the IP
	// again. It stays cheap when a node takes many IPs at once: 4 announcements per IP per
	// interface.
	DefaultBurst         = 3
	DefaultBurstInterval = 250 * time.Millisecond
	// DefaultConflictInterval: at most one OnConflict call (and log line) per IP per 10 s.
	DefaultConflictInterval = 10 * time.Second
	// DefaultResyncInterval: links and lo addresses are read again every 30 s even without
	// events, which also removes marked addresses that appeared behind our back.
	DefaultResyncInterval = 30 * time.Second
)

// retryDelay is how long a failed socket waits before the loop reopens it.
const retryDelay = time.Second

// ErrRunning means Run was called while another Run of the same Announcer is active.
var ErrRunning = errors.New("l2 announcer already running")

// Config configures an Announcer.
type Config struct {
	Logger     klog.Logger
	Registerer prometheus.Registerer // nil: no metrics
	// BerthMAC reports whether a MAC belongs to a berth node: its replies during a planned
	// handover are not conflicts. nil: none does. It is called from the socket readers,
	// concurrently, for each packet claiming an owned IP: it must be fast and safe for
	// concurrent use. This host's own interfaces never count as conflicts anyway.
	BerthMAC func(net.HardwareAddr) bool
	// OnConflict is called when a machine that is neither this host nor a berth node
	// claims an owned IP, at most once per IP per ConflictInterval. It is called from the
	// announcer's socket readers (possibly concurrently) and must not block. The
	// Announcer goes on answering: deciding who owns the IP is the caller's job.
	OnConflict func(Conflict)
	// Withheld reports whether this node must stay silent right now: no answer and no
	// announcement, whatever it owns (it just woke from a freeze, and the others may hold
	// its IPs). nil: never. It is called for every packet the node would answer, from the
	// socket readers, so it must be fast and safe for concurrent use; it must also see a
	// freeze by itself, before any other goroutine of the process has run since waking.
	Withheld func() bool
	// Burst is how many gratuitous announcements follow the first one, BurstInterval
	// apart, after this node takes an IP on an interface (see DefaultBurst for why).
	// 0 means DefaultBurst; negative means none.
	Burst         int
	BurstInterval time.Duration // 0 means DefaultBurstInterval
	// ConflictInterval is the per-IP quiet time between two conflict reports; 0 means
	// DefaultConflictInterval.
	ConflictInterval time.Duration
	// ResyncInterval is how often links and lo addresses are read again without an event;
	// 0 means DefaultResyncInterval.
	ResyncInterval time.Duration
}

// Announcer makes this node answer ARP and NDP for the IPs it is told it owns.
type Announcer struct {
	cfg Config
	log klog.Logger
	h   *handler

	running    atomic.Bool
	kick       chan struct{} // one slot: Set, link events and retries coalesce
	reannounce atomic.Bool   // Reannounce was called since the loop last looked

	mu    sync.Mutex
	want  []Assignment
	owned []Assignment // what the loop last published, for Owned
}

// New validates cfg and returns an Announcer. It starts nothing; Run does.
func New(cfg Config) (*Announcer, error) {
	switch {
	case cfg.BurstInterval < 0:
		return nil, fmt.Errorf("l2: negative BurstInterval %v", cfg.BurstInterval)
	case cfg.ConflictInterval < 0:
		return nil, fmt.Errorf("l2: negative ConflictInterval %v", cfg.ConflictInterval)
	case cfg.ResyncInterval < 0:
		return nil, fmt.Errorf("l2: negative ResyncInterval %v", cfg.ResyncInterval)
	}
	if cfg.Burst == 0 {
		cfg.Burst = DefaultBurst
	} else if cfg.Burst < 0 {
		cfg.Burst = 0
	}
	if cfg.BurstInterval == 0 {
		cfg.BurstInterval = DefaultBurstInterval
	}
	if cfg.ConflictInterval == 0 {
		cfg.ConflictInterval = DefaultConflictInterval
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = DefaultResyncInterval
	}
	log := cfg.Logger
	if log.GetSink() == nil {
		log = klog.Background()
	}
	log = log.WithName("l2")
	m := newMetrics()
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(m); err != nil {
			return nil, fmt.Errorf("l2: register metrics: %w", err)
		}
	}
	a := &Announcer{cfg: cfg, log: log, kick: make(chan struct{}, 1)}
	a.h = &handler{
		log:        log,
		metrics:    m,
		berthMAC:   cfg.BerthMAC,
		onConflict: cfg.OnConflict,
		withheld:   cfg.Withheld,
		limiter:    newConflictLimiter(cfg.ConflictInterval),
		now:        time.Now,
		retry:      func() { time.AfterFunc(retryDelay, a.kickNow) },
	}
	return a, nil
}

// Set replaces the whole desired set and returns at once; the loop applies the
// difference within milliseconds: new IPs are announced, dropped ones stop being answered
// with the next packet. Addresses that cannot be LB IPs are logged and left out. Before
// Run, the set waits for it.
func (a *Announcer) Set(want []Assignment) {
	valid, invalid := normalize(want)
	for _, ip := range invalid {
		a.log.Info("Ignoring an address that cannot be an LB IP", "ip", ip)
	}
	a.mu.Lock()
	a.want = valid
	a.mu.Unlock()
	a.kickNow()
}

// Reannounce sends the gratuitous announcements of a takeover again, repeats included, for
// every IP answered now: another node may have claimed them meanwhile, as when this node
// was suspected of having failed and its runner-up took over until it refuted that. It
// returns at once and may be called from any goroutine.
func (a *Announcer) Reannounce() {
	a.reannounce.Store(true)
	a.kickNow()
}

// Owned returns what this node answers for right now, one Assignment per IP (sorted) with
// the interfaces it is answered on (sorted).
func (a *Announcer) Owned() []Assignment {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Assignment, len(a.owned))
	for i, as := range a.owned {
		out[i] = Assignment{IP: as.IP, Interfaces: append([]string(nil), as.Interfaces...)}
	}
	return out
}

func (a *Announcer) wanted() []Assignment {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.want
}

func (a *Announcer) kickNow() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Run answers until ctx ends, then stops answering, closes every socket and removes the
// addresses it put on lo. At start it removes the marked addresses a previous run left on
// lo. It returns an error only when it cannot start.
func (a *Announcer) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer a.running.Store(false)
	lo, err := loopbackIndex()
	if err != nil {
		return err
	}
	st := &loop{a: a, lo: lo, links: map[string]*link{}, bursts: burstQueue{}}

	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		a.watchLinks(watchCtx)
	}()
	defer func() {
		stopWatch()
		<-watched
	}()

	resync := time.NewTicker(a.cfg.ResyncInterval)
	defer resync.Stop()
	burst := time.NewTimer(time.Hour)
	defer burst.Stop()

	a.log.V(2).Info("Starting")
	st.reconcile()
	for {
		st.arm(burst)
		select {
		case <-ctx.Done():
			st.teardown()
			a.log.V(2).Info("Stopped")
			return nil
		case <-a.kick:
			st.reconcile()
			if a.reannounce.Swap(false) {
				st.reannounce()
			}
		case <-resync.C:
			st.reconcile()
		case <-burst.C:
			st.repeat()
		}
	}
}

// loopbackIndex finds lo, where the IPv6 LB IPs go.
func loopbackIndex() (int, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return 0, fmt.Errorf("l2: list interfaces: %w", err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			return i.Index, nil
		}
	}
	return 0, errors.New("l2: no loopback interface")
}
