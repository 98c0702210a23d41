package speaker

import (
	"context"
	"net"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

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
	seen := map[string]bool{}
	for _, sd := range d.Services {
		for _, ip := range sd.IPs {
			if !ip.L2.Announce || seen[ip.IP.String()] {
				continue
			}
			seen[ip.IP.String()] = true
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

func (s *Speaker) heldUntil() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.holdUntil
}

// watchFreeze notices that the process did not run for FreezeThreshold or more (SIGSTOP, a
// paused VM, a stalled host) and holds L2 announcements for FreezeHold from waking.
func (s *Speaker) watchFreeze(ctx context.Context) {
	logger := klog.FromContext(ctx)
	const tick = 100 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if gap := now.Sub(last); gap >= s.opts.FreezeThreshold {
				logger.Info("Woke from a freeze; L2 announcements held until membership settles", "frozen", gap.Round(time.Millisecond), "hold", s.opts.FreezeHold)
				s.mu.Lock()
				s.holdUntil = time.Now().Add(s.opts.FreezeHold)
				s.mu.Unlock()
				wake(s.frozen)
			}
			last = now
		}
	}
}

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

// L2Conflict reports that another machine answers for an IP this node owns: a Warning
// Event on every Service holding the IP, and a log line.
func (s *Speaker) L2Conflict(c l2.Conflict) {
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
