package bgp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// Status returns the state of every configured peer, sorted by name, as of the last
// refresh (after every session event and change, and every second).
func (s *Server) Status() []PeerStatus {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	return slices.Clone(s.status)
}

// loop refreshes the status on events and every refreshInterval until ctx ends.
func (s *Server) loop(ctx context.Context) {
	defer close(s.loopDone)
	t := time.NewTicker(refreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-t.C:
		}
		if err := s.refresh(ctx); err != nil && ctx.Err() == nil {
			s.log.Error(err, "Status refresh failed")
		}
	}
}

// refresh reads GoBGP's neighbours, updates the status, the metrics and the reconnect
// backoff. Advertised is counted from the installed paths (GoBGP's own count, ListPeer
// with EnableAdvertised, runs every path through the export policy and counts an
// End-of-RIB marker when graceful restart was negotiated, which its API does not show).
func (s *Server) refresh(ctx context.Context) error {
	now := time.Now()
	md5Trouble := s.listening() && s.md5Trouble(now)
	// Under the lock, so that GoBGP's neighbours match s.peers.
	s.mu.Lock()
	byAddr := map[netip.Addr]*api.Peer{}
	err := s.bgp.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress()); err == nil {
			byAddr[a.Unmap()] = p
		}
	})
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("list peers: %w", err)
	}
	statuses := make([]PeerStatus, 0, len(s.peers))
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(s.peers)) {
		ps := s.peers[name]
		gp := byAddr[ps.cfg.Address]
		s.rec.stable(ps.cfg.Address, now)
		rec := s.rec.get(ps.cfg.Address)
		st := statusOf(ps.cfg, gp, rec, ps.retry, ps.added, md5Trouble)
		if st.State == StateEstablished {
			st.Advertised = advertised(s.rib, ps.id, ps.cfg.Address.Is4())
		}
		var sent uint64
		if gp != nil {
			sent = gp.GetState().GetMessages().GetSent().GetUpdate()
		}
		delta := sent
		if sent >= ps.sentUpdates {
			delta = sent - ps.sentUpdates
		}
		ps.sentUpdates = sent
		s.metrics.set(st, delta)
		if !s.stopped {
			if err := s.backoffLocked(ctx, ps, st.State, rec.failures(), now); err != nil {
				errs = append(errs, &PeerError{Name: name, Err: err})
			}
		}
		st.ConnectRetry = ps.retry
		statuses = append(statuses, st)
	}
	s.mu.Unlock()

	s.statusMu.Lock()
	s.status = statuses
	s.statusMu.Unlock()
	return errors.Join(errs...)
}

// backoffLocked moves the peer's ConnectRetry towards connectRetry(failures), as
// backoffStep says.
func (s *Server) backoffLocked(ctx context.Context, ps *peerState, state string, failures int, now time.Time) error {
	want := connectRetry(ps.cfg.connectTime(), failures)
	gp := apiPeer(ps.cfg, want)
	inLoop := now.Sub(ps.loopStart)
	step := backoffStep(state, ps.retry, want, inLoop)
	if ps.lost {
		step = backoffRestart
	}
	switch step {
	case backoffWait:
		return nil
	case backoffRestart:
		if !ps.lost {
			// The state is from the listing at the start of this refresh; a dial may
			// have connected since. Ask again right before deleting: a restart must
			// never cut a session that is opening or up.
			if current, err := s.sessionStateOf(ctx, ps.cfg.Address); err != nil || backoffStep(current, ps.retry, want, inLoop) != backoffRestart {
				return err
			}
			if err := s.bgp.DeletePeer(ctx, &api.DeletePeerRequest{Address: ps.cfg.Address.String()}); err != nil {
				return fmt.Errorf("restart connect loop: %w", err)
			}
			ps.lost = true
		}
		if err := s.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: gp}); err != nil {
			return fmt.Errorf("restart connect loop: %w", err)
		}
		ps.lost, ps.loopStart = false, now
	case backoffUpdate:
		if _, err := s.bgp.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: gp}); err != nil {
			return fmt.Errorf("update connect retry: %w", err)
		}
	}
	s.log.V(2).Info("Reconnect interval changed", "peer", ps.cfg.Name, "connectRetry", want, "failures", failures)
	ps.retry = want
	return nil
}

// sessionStateOf asks GoBGP for one neighbour's session state now.
func (s *Server) sessionStateOf(ctx context.Context, a netip.Addr) (string, error) {
	state := StateIdle
	err := s.bgp.ListPeer(ctx, &api.ListPeerRequest{Address: a.String()}, func(p *api.Peer) {
		state = sessionState(p.GetState().GetSessionState())
	})
	if err != nil {
		return "", fmt.Errorf("restart connect loop: %w", err)
	}
	return state, nil
}

// md5Trouble reports whether the namespace's TCP-MD5 drop counters rose in the last
// 10 s (sessions dialled at us with a bad or missing signature).
func (s *Server) md5Trouble(now time.Time) bool {
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return false
	}
	n, err := md5Drops(b)
	if err != nil {
		return false
	}
	if s.md5Read && n > s.md5Last {
		s.md5RoseAt = now
	}
	s.md5Last, s.md5Read = n, true
	return !s.md5RoseAt.IsZero() && now.Sub(s.md5RoseAt) < 10*time.Second
}
