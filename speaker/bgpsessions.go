package speaker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

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

// Reasons of a session that is not established, in BGPPeer.status.nodes.
const (
	PeerReasonConnecting         = "Connecting"
	PeerReasonConnectFailed      = "ConnectFailed"
	PeerReasonAuthMismatchLikely = "AuthMismatchLikely"
)

var sessionStates = map[string]v1alpha1.SessionState{
	bgp.StateIdle: v1alpha1.SessionIdle, bgp.StateConnect: v1alpha1.SessionConnect,
	bgp.StateActive: v1alpha1.SessionActive, bgp.StateOpenSent: v1alpha1.SessionOpenSent,
	bgp.StateOpenConfirm: v1alpha1.SessionOpenConfirm, bgp.StateEstablished: v1alpha1.SessionEstablished,
}

// peerNodeStatus is this node's entry in the BGPPeer's status for the session st. Times
// are whole seconds, as the apiserver stores them, so that an entry read back compares
// equal.
func peerNodeStatus(node string, st bgp.PeerStatus) v1alpha1.PeerNodeStatus {
	e := v1alpha1.PeerNodeStatus{Node: node, State: sessionStates[st.State],
		Failures: int32(st.ConsecutiveFailures), PrefixesSent: int32(st.Advertised)}
	if e.State == "" {
		e.State = v1alpha1.SessionUnknown
	}
	if !st.Since.IsZero() {
		since := metav1.NewTime(st.Since.Truncate(time.Second))
		e.Since = &since
	}
	if e.State == v1alpha1.SessionEstablished {
		return e
	}
	if st.ConnectRetry > 0 {
		e.RetryInterval = &metav1.Duration{Duration: st.ConnectRetry}
	}
	switch {
	case st.AuthMismatchLikely:
		e.Reason = PeerReasonAuthMismatchLikely
		e.Message = "fails as a TCP-MD5 password mismatch does (or the peer is down)"
		if st.LastError != "" {
			e.Message += ": " + st.LastError
		}
	case st.ConsecutiveFailures > 0 || st.LastError != "":
		e.Reason, e.Message = PeerReasonConnectFailed, st.LastError
	default:
		e.Reason = PeerReasonConnecting
	}
	return e
}

// sessionPoll is how often watchBGPSessions reads the executor's status, and so the least
// time between two writes of one BGPPeer's entry.
const sessionPoll = time.Second

// prefixCountInterval is the least time between two writes of a peer's entry that differ
// only in prefixesSent: while thousands of Services come and go, the count changes every
// poll, and each write is a server-side apply every watcher of BGPPeers receives. A change
// of the session itself is written at the next poll.
const prefixCountInterval = 10 * time.Second

// onlyCountChanged reports whether written and now differ in prefixesSent alone.
func onlyCountChanged(written, now v1alpha1.PeerNodeStatus) bool {
	written.PrefixesSent = now.PrefixesSent
	return equality.Semantic.DeepEqual(written, now)
}

// watchBGPSessions logs and records an Event on the BGPPeer for every session of this node
// that comes up, goes down or looks like a password mismatch, and keeps this node's entry
// in each BGPPeer's status in step: written when it changed, removed when the peer no
// longer selects this node. A failed write is tried again on the next poll.
func (s *Speaker) watchBGPSessions(ctx context.Context) {
	logger := klog.FromContext(ctx).WithName("bgp")
	t := time.NewTicker(sessionPoll)
	defer t.Stop()
	var last []bgp.PeerStatus
	written := map[string]v1alpha1.PeerNodeStatus{}
	countWritten := map[string]time.Time{} // when each peer's entry was last written
	stale := s.peersListingSelf(ctx)       // entries a previous run left
	failing := false
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
		if !s.bgpConfigured.Load() {
			continue // the entries of a previous run stay until this one knows its peers
		}

		var errs []error
		held := map[string]bool{}
		for _, st := range now {
			held[st.Name] = true
			e := peerNodeStatus(s.opts.Node, st)
			w, ok := written[st.Name]
			if ok && (equality.Semantic.DeepEqual(w, e) || onlyCountChanged(w, e) && time.Since(countWritten[st.Name]) < prefixCountInterval) {
				continue
			}
			if err := ApplyPeerNodeStatus(ctx, s.opts.CRClient, s.opts.Node, st.Name, &e); err != nil {
				errs = append(errs, err)
				continue
			}
			written[st.Name] = e
			countWritten[st.Name] = time.Now()
		}
		for peer := range written {
			stale[peer] = true
		}
		for peer := range stale {
			if held[peer] { // its entry is this run's
				delete(stale, peer)
				continue
			}
			if err := ApplyPeerNodeStatus(ctx, s.opts.CRClient, s.opts.Node, peer, nil); err != nil {
				errs = append(errs, err)
				continue
			}
			delete(written, peer)
			delete(countWritten, peer)
			delete(stale, peer)
		}
		if err := errors.Join(errs...); err != nil && !failing {
			logger.Error(err, "Write BGPPeer status; retrying every second", "node", s.opts.Node)
		} else if err == nil && failing {
			logger.Info("BGPPeer status written again", "node", s.opts.Node)
		}
		failing = len(errs) > 0
	}
}

// peersListingSelf names the BGPPeers whose status has an entry for this node.
func (s *Speaker) peersListingSelf(ctx context.Context) map[string]bool {
	out := map[string]bool{}
	var peers v1alpha1.BGPPeerList
	if err := s.opts.Cache.List(ctx, &peers); err != nil {
		klog.FromContext(ctx).Error(err, "List BGPPeers for entries of an earlier run", "node", s.opts.Node)
		return out
	}
	for _, p := range peers.Items {
		if slices.ContainsFunc(p.Status.Nodes, func(n v1alpha1.PeerNodeStatus) bool { return n.Node == s.opts.Node }) {
			out[p.Name] = true
		}
	}
	return out
}

// peerStatusManager is the server-side-apply field manager of this node's entries: each
// speaker owns its own entry, so speakers never overwrite each other, and applying none
// removes it.
func peerStatusManager(node string) string { return "berth-speaker-" + node }

// ApplyPeerNodeStatus applies node's entry in peer's status with server-side apply, as
// that node's field manager; nil removes it. A peer that is gone needs nothing.
func ApplyPeerNodeStatus(ctx context.Context, c client.Client, node, peer string, e *v1alpha1.PeerNodeStatus) error {
	nodes := []v1alpha1.PeerNodeStatus{}
	if e != nil {
		nodes = append(nodes, *e)
	}
	patch, err := json.Marshal(map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "BGPPeer",
		"metadata": map[string]any{"name": peer},
		"status":   map[string]any{"nodes": nodes},
	})
	if err != nil {
		return err
	}
	obj := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: peer}}
	err = c.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, patch),
		client.FieldOwner(peerStatusManager(node)), client.ForceOwnership)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bgppeer %s: apply status of node %s: %w", peer, node, err)
	}
	return nil
}
