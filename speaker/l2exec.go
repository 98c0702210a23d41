package speaker

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/l2"
)

// L2Executor carries out L2 decisions: the l2 package's Announcer.
type L2Executor interface {
	// Set replaces the IPs this node answers for.
	Set([]l2.Assignment)
}

// L2Assignments lists the IPs this node answers ARP/NDP for, with their interfaces, in
// the decisions' order; an IP two Services share appears once.
func L2Assignments(d Decisions) []l2.Assignment {
	var out []l2.Assignment
	seen := map[netip.Addr]bool{}
	for _, sd := range d.Services {
		for _, ip := range sd.IPs {
			if !ip.L2.Announce || seen[ip.IP] {
				continue
			}
			seen[ip.IP] = true
			out = append(out, l2.Assignment{IP: ip.IP, Interfaces: ip.L2.Interfaces})
		}
	}
	return out
}

// followL2 hands the L2 executor every change of the decisions. After a freeze it hands it
// nothing until the hold ends: what the decisions say was true before the freeze, and the
// other nodes took this node's IPs meanwhile; memberlist must first confirm this node is
// alive to them, or both would answer.
func (s *Speaker) followL2(ctx context.Context) {
	sub := s.Subscribe()
	var hold *time.Timer
	for {
		if until := s.heldUntil(); time.Now().Before(until) {
			s.opts.L2.Set(nil)
			if hold == nil {
				hold = time.NewTimer(time.Until(until))
			} else {
				hold.Reset(time.Until(until))
			}
		} else {
			s.opts.L2.Set(L2Assignments(s.state.Decisions()))
		}
		var held <-chan time.Time
		if hold != nil {
			held = hold.C
		}
		select {
		case <-ctx.Done():
			// Keep answering: the caller leaves memberlist first, so that the others
			// take the IPs before this node stops (cmd/berth-speaker).
			return
		case <-sub:
		case <-s.frozen:
		case <-held:
		}
	}
}

func (s *Speaker) heldUntil() time.Time { return s.freeze.heldUntil() }

// watchFreeze notices that the process did not run for FreezeThreshold or more (SIGSTOP, a
// paused VM, a stalled host) and holds L2 announcements for FreezeHold from waking.
func (s *Speaker) watchFreeze(ctx context.Context) {
	logger := klog.FromContext(ctx)
	t := time.NewTicker(s.opts.FreezeThreshold / 4)
	defer t.Stop()
	s.freeze.start(time.Now())
	defer s.freeze.stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if gap, froze := s.freeze.tick(time.Now()); froze {
				logger.Info("Woke from a freeze; L2 announcements held until membership settles", "frozen", gap.Round(time.Millisecond), "hold", s.opts.FreezeHold)
				wake(s.frozen)
			}
		}
	}
}

// L2Withheld reports whether L2 must stay silent now, after a freeze: l2.Config.Withheld.
// The socket readers call it for every packet they would answer, so a request that waited
// in a socket during the freeze is not answered before the hold starts.
func (s *Speaker) L2Withheld() bool { return s.freeze.silent(time.Now()) }

// BerthMAC reports whether mac is an L2 interface of another berth node, live or gone
// within formerMemberMemory: a node that just left keeps answering while the new owner
// takes over, and that is a handover, not a conflict.
func (s *Speaker) BerthMAC(mac net.HardwareAddr) bool {
	want := mac.String()
	for _, m := range s.state.Members() {
		if m.Name != s.opts.Node && slices.Contains(m.MACs, want) {
			return true
		}
	}
	return s.state.FormerMAC(want, time.Now())
}

// conflictMemory is how long a conflict stays in the NodeAnnouncement after it was last
// seen; the l2 announcer reports an ongoing one every 10 s.
const conflictMemory = time.Minute

// seenConflict is a conflict as the NodeAnnouncement lists it.
type seenConflict struct {
	v1alpha1.L2Conflict
	last time.Time
}

// Conflicts returns the conflicts seen within conflictMemory of now, sorted by IP, and
// forgets older ones.
func (s *Speaker) Conflicts(now time.Time) []v1alpha1.L2Conflict {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []v1alpha1.L2Conflict
	for ip, c := range s.conflicts {
		if now.Sub(c.last) > conflictMemory {
			delete(s.conflicts, ip)
			continue
		}
		out = append(out, c.L2Conflict)
	}
	slices.SortFunc(out, func(a, b v1alpha1.L2Conflict) int { return strings.Compare(a.IP, b.IP) })
	return out
}

// L2Conflict reports that another machine answers for an IP this node owns: a Warning
// Event on every Service holding the IP, a log line, and an entry in the NodeAnnouncement,
// which the controller shows in the Services' berth.dev/Announced condition.
func (s *Speaker) L2Conflict(c l2.Conflict) {
	s.mu.Lock()
	seen, ok := s.conflicts[c.IP]
	if !ok || seen.MAC != c.MAC.String() {
		seen = seenConflict{L2Conflict: v1alpha1.L2Conflict{IP: c.IP.String(), MAC: c.MAC.String(), Interface: c.Interface, Since: metav1.NewTime(c.Seen)}}
	}
	seen.last = c.Seen
	s.conflicts[c.IP] = seen
	s.mu.Unlock()
	wake(s.changed)
	klog.Background().Info("Another machine answers for an owned IP", "ip", c.IP, "interface", c.Interface, "mac", c.MAC, "node", s.opts.Node)
	if s.opts.Recorder == nil {
		return
	}
	for _, sd := range s.state.Decisions().Services {
		for _, ip := range sd.IPs {
			if ip.IP != c.IP {
				continue
			}
			ref := &corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: sd.Namespace, Name: sd.Name}
			s.opts.Recorder.Eventf(ref, corev1.EventTypeWarning, "L2Conflict",
				"%s is also answered by %s on %s's %s: another machine uses this address", c.IP, c.MAC, s.opts.Node, c.Interface)
		}
	}
}
