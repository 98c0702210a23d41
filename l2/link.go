package l2

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"
)

// link is one interface the Announcer answers on, with its sockets. The loop opens and
// closes the sockets and publishes the owned set; the readers only read the set.
type link struct {
	name  string
	index int
	mac   net.HardwareAddr
	ifi   *net.Interface

	set atomic.Pointer[ipSet]
	// broken is set by a reader whose socket failed; the loop then reopens the link.
	broken atomic.Bool

	arp *arpConn // open while IPv4 IPs are owned here; the loop's alone
	ndp *ndpConn // open while IPv6 IPs are owned here; the loop's alone
}

func newLink(info linkInfo) (*link, error) {
	ifi, err := net.InterfaceByIndex(info.Index)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", info.Name, err)
	}
	if ifi.Name != info.Name {
		return nil, fmt.Errorf("interface %s: index %d is now %s", info.Name, info.Index, ifi.Name)
	}
	l := &link{name: info.Name, index: info.Index, mac: slices.Clone(info.MAC), ifi: ifi}
	l.publish(ipSet{})
	return l, nil
}

// owned is the set of IPs answered here; never changed after publishing.
func (l *link) owned() ipSet { return *l.set.Load() }

// publish makes s the set answered from the next packet on.
func (l *link) publish(s ipSet) { l.set.Store(&s) }

// closeConns stops answering at once and hands the sockets to closer.
func (l *link) closeConns(closer func(func())) {
	l.publish(ipSet{})
	if c := l.arp; c != nil {
		closer(c.close)
		l.arp = nil
	}
	if c := l.ndp; c != nil {
		closer(c.close)
		l.ndp = nil
	}
}

// handler is what the socket readers share: how to log, count, tell friends from
// strangers, and report conflicts and broken sockets.
type handler struct {
	log        klog.Logger
	metrics    *metrics
	berthMAC   func(net.HardwareAddr) bool
	onConflict func(Conflict)
	withheld   func() bool
	limiter    *conflictLimiter
	now        func() time.Time
	// retry asks the loop to reconcile again soon, after a socket broke.
	retry func()

	local atomic.Pointer[map[string]bool] // MACs of this host's interfaces
}

// setLocal records the MACs of this host's interfaces: a frame from any of them (another
// interface of this node on the same segment) is not a conflict.
func (h *handler) setLocal(links []linkInfo) {
	m := make(map[string]bool, len(links))
	for _, l := range links {
		if len(l.MAC) > 0 {
			m[string(l.MAC)] = true
		}
	}
	h.local.Store(&m)
}

// friendly reports whether mac is this host's or a berth node's.
func (h *handler) friendly(mac net.HardwareAddr) bool {
	if m := h.local.Load(); m != nil && (*m)[string(mac)] {
		return true
	}
	return h.berthMAC != nil && h.berthMAC(mac)
}

// conflict counts a conflicting packet and reports it, at most once per IP per
// interval.
func (h *handler) conflict(ip netip.Addr, ifname string, mac net.HardwareAddr) {
	ip = ip.WithZone("")
	h.metrics.conflicts.WithLabelValues(family(ip)).Inc()
	now := h.now()
	if !h.limiter.allow(ip, now) {
		return
	}
	h.log.Info("Another machine claims an LB IP this node answers for", "ip", ip, "interface", ifname, "mac", mac.String())
	if h.onConflict != nil {
		h.onConflict(Conflict{IP: ip, Interface: ifname, MAC: slices.Clone(mac), Seen: now})
	}
}

// silent reports whether the node must not answer or announce now (Config.Withheld).
func (h *handler) silent() bool { return h.withheld != nil && h.withheld() }

// broken marks the link for reopening.
func (h *handler) broken(l *link, err error) {
	l.broken.Store(true)
	h.log.Error(err, "Socket failed; reopening", "interface", l.name)
	h.retry()
}
