package speaker

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/bgp"
	"github.com/berthlb/berth/config/v1alpha1"
)

// Event reasons of BGP sessions, recorded on the BGPPeer.
const (
	EventBGPSessionEstablished        = "BGPSessionEstablished"
	EventBGPSessionDown               = "BGPSessionDown"
	EventBGPSessionAuthMismatchLikely = "BGPSessionAuthMismatchLikely"
)

// sessionEvent is one Event about a session of this node.
type sessionEvent struct {
	Peer, Type, Reason, Message string
}

// sessionEvents compares two readings of the executor's status and returns one Event per
// change worth telling: a session that came up, one that went down, and one that started
// to fail the way a TCP-MD5 mismatch does. A peer that left the config says nothing.
func sessionEvents(node string, before, after []bgp.PeerStatus) []sessionEvent {
	was := make(map[string]bgp.PeerStatus, len(before))
	for _, st := range before {
		was[st.Name] = st
	}
	var out []sessionEvent
	for _, st := range after {
		old, known := was[st.Name]
		up, wasUp := st.State == bgp.StateEstablished, known && old.State == bgp.StateEstablished
		switch {
		case up && !wasUp:
			out = append(out, sessionEvent{st.Name, corev1.EventTypeNormal, EventBGPSessionEstablished,
				fmt.Sprintf("Node %s: session with %s established, hold time %v", node, st.Address, st.HoldTime)})
		case !up && wasUp:
			why := st.LastError
			if why == "" {
				why = "state " + st.State
			}
			out = append(out, sessionEvent{st.Name, corev1.EventTypeWarning, EventBGPSessionDown,
				fmt.Sprintf("Node %s: session with %s down: %s", node, st.Address, why)})
		}
		if st.AuthMismatchLikely && !old.AuthMismatchLikely {
			out = append(out, sessionEvent{st.Name, corev1.EventTypeWarning, EventBGPSessionAuthMismatchLikely,
				fmt.Sprintf("Node %s: session with %s fails as a TCP-MD5 password mismatch does (or the peer is down)", node, st.Address)})
		}
	}
	return out
}

// sessionPoll is how often watchBGPSessions reads the executor's status.
const sessionPoll = time.Second

// watchBGPSessions logs and records an Event on the BGPPeer for every session of this node
// that comes up, goes down or looks like a password mismatch.
func (s *Speaker) watchBGPSessions(ctx context.Context) {
	logger := klog.FromContext(ctx).WithName("bgp")
	t := time.NewTicker(sessionPoll)
	defer t.Stop()
	var last []bgp.PeerStatus
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.opts.BGP.Status()
		for _, e := range sessionEvents(s.opts.Node, last, now) {
			logger.V(2).Info("BGP session", "peer", e.Peer, "change", e.Reason, "message", e.Message)
			if s.opts.Recorder != nil {
				ref := &corev1.ObjectReference{Kind: "BGPPeer", APIVersion: v1alpha1.GroupVersion.String(), Name: e.Peer}
				s.opts.Recorder.Event(ref, e.Type, e.Reason, e.Message)
			}
		}
		last = now
	}
}
