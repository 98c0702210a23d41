package bgp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// Shutdown withdraws gracefully and stops: every path is advertised again with
// GRACEFUL_SHUTDOWN (65535:0, RFC 8326) so peers move traffic away, after
// Config.GracefulShutdownWait every path is withdrawn, and once the withdrawals are on
// the wire the sessions are closed. ctx bounds the waits. The server cannot be started
// again.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped || !s.started {
		s.stopped = true
		s.mu.Unlock()
		return nil
	}
	s.stopped = true // SetPeers and SetPaths refuse from now on
	var errs []error
	prefixes := slices.SortedFunc(maps.Keys(s.rib), comparePrefix)
	for _, p := range prefixes {
		if ctx.Err() != nil { // past the bound: one error, not one per path
			errs = append(errs, fmt.Errorf("graceful shutdown community: %w", ctx.Err()))
			break
		}
		e := s.rib[p]
		e.gshut = true
		if err := s.putPathLocked(ctx, p, e); err != nil {
			errs = append(errs, &PathError{Prefix: p, Err: err})
		}
	}
	s.mu.Unlock()
	s.log.V(2).Info("Graceful shutdown: advertised GRACEFUL_SHUTDOWN", "paths", len(prefixes), "wait", s.cfg.GracefulShutdownWait)

	if len(prefixes) > 0 && s.cfg.GracefulShutdownWait > 0 {
		sleep(ctx, s.cfg.GracefulShutdownWait)
	}

	s.mu.Lock()
	before := s.sentUpdates(ctx)
	for _, p := range prefixes {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("withdraw: %w", ctx.Err()))
			break
		}
		if err := s.withdrawLocked(ctx, p); err != nil {
			errs = append(errs, &PathError{Prefix: p, Err: err})
		}
	}
	s.mu.Unlock()
	if len(prefixes) > 0 {
		s.waitSent(ctx, before)
	}
	s.log.V(2).Info("Graceful shutdown: withdrew every path", "paths", len(prefixes))

	s.watchCancel()
	s.stopLoop()
	<-s.loopDone
	stopped := make(chan error, 1)
	go func() { stopped <- s.bgp.StopBgp(context.WithoutCancel(ctx), &api.StopBgpRequest{}) }()
	select {
	case err := <-stopped:
		if err != nil {
			errs = append(errs, fmt.Errorf("stop GoBGP: %w", err))
		}
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("stop GoBGP: %w", ctx.Err()))
	}
	s.mu.Lock()
	for name := range s.peers {
		s.metrics.set(PeerStatus{Name: name, State: StateIdle}, 0)
	}
	s.mu.Unlock()
	s.statusMu.Lock()
	for i := range s.status {
		s.status[i].State, s.status[i].Advertised, s.status[i].Since = StateIdle, 0, time.Now()
	}
	s.statusMu.Unlock()
	s.log.V(2).Info("Stopped")
	return errors.Join(errs...)
}

// sentUpdates reads how many UPDATEs GoBGP has written to each established peer.
func (s *Server) sentUpdates(ctx context.Context) map[string]uint64 {
	out := map[string]uint64{}
	_ = s.bgp.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if p.GetState().GetSessionState() == api.PeerState_ESTABLISHED {
			out[p.GetConf().GetNeighborAddress()] = p.GetState().GetMessages().GetSent().GetUpdate()
		}
	})
	return out
}

// waitSent waits until the withdrawals are written: the UPDATE counts of the established
// peers have moved past before and then held still for two polls, or 500 ms passed.
// (GoBGP's peer state has no queue length; its counters count written messages.)
func (s *Server) waitSent(ctx context.Context, before map[string]uint64) {
	const poll, limit = 20 * time.Millisecond, 500 * time.Millisecond
	deadline := time.Now().Add(limit)
	prev, still := before, 0
	for time.Now().Before(deadline) && ctx.Err() == nil {
		sleep(ctx, poll)
		cur := s.sentUpdates(ctx)
		moved := len(cur) == 0
		for a, n := range cur {
			if n > before[a] {
				moved = true
			}
		}
		if maps.Equal(cur, prev) {
			still++
		} else {
			still = 0
		}
		prev = cur
		if moved && still >= 2 {
			return
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
