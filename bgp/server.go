package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"k8s.io/klog/v2"
)

// globalASN is GoBGP's global AS number. Every session sets its own local AS (Peer.MyASN),
// so this one only satisfies GoBGP, which refuses to start without it.
const globalASN = 64512

// refreshInterval paces the status refresh when no event asks for one: it keeps the
// counters (updates sent) fresh and ages the failure streaks.
const refreshInterval = time.Second

// Server runs one embedded GoBGP speaker. Create it with New, then Start; SetPeers and
// SetPaths reconcile, Status reports, Shutdown withdraws and stops. It is safe for
// concurrent use.
type Server struct {
	cfg     Config
	log     klog.Logger
	bgp     *server.BgpServer
	metrics *metrics
	rec     *recorder

	kick chan struct{} // one slot: a status refresh is wanted

	mu       sync.Mutex
	started  bool
	stopped  bool
	peers    map[string]*peerState
	nextID   uint32
	peerIDs  map[string]uint32 // peer name → id in markers and set names
	groupIDs map[string]uint32 // attrs key → group id
	keyBuf   []byte            // groupIDLocked's scratch
	groups   map[uint32]attrs
	peerSets map[uint32]netip.Prefix // what each peer id's neighbour set holds
	stmts    map[marker]bool         // export statements installed
	rib      map[netip.Prefix]ribEntry

	statusMu sync.Mutex
	status   []PeerStatus

	stopLoop    context.CancelFunc
	loopDone    chan struct{}
	watchCancel context.CancelFunc
	md5Read     bool      // refresh loop only: md5Last holds a reading
	md5Last     uint64    // refresh loop only
	md5RoseAt   time.Time // refresh loop only
}

// peerState is a configured peer.
type peerState struct {
	cfg   Peer
	id    uint32
	added time.Time
	// retry is GoBGP's ConnectRetry for the peer; loopStart is when GoBGP's connect loop
	// last started with it (the neighbour was added).
	retry       time.Duration
	loopStart   time.Time
	sentUpdates uint64 // GoBGP's count when last read
	// lost says GoBGP lacks the neighbour: a connect loop restart deleted it and could
	// not add it back. The refresh retries; removal skips GoBGP.
	lost bool
}

// New validates cfg and returns a Server that runs nothing yet.
func New(cfg Config) (*Server, error) {
	id := cfg.RouterID
	if !id.Is4() || id.IsUnspecified() {
		return nil, fmt.Errorf("bgp: router ID %v: want a non-zero IPv4 address (see RouterIDFor)", id)
	}
	if cfg.ListenPort > 65535 || cfg.ListenPort < -1 {
		return nil, fmt.Errorf("bgp: listen port %d: want -1, 0 (neither listens) or a port", cfg.ListenPort)
	}
	if cfg.GracefulShutdownWait == 0 {
		cfg.GracefulShutdownWait = DefaultGracefulShutdownWait
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger.WithName("bgp"),
		metrics:  m,
		kick:     make(chan struct{}, 1),
		peers:    map[string]*peerState{},
		peerIDs:  map[string]uint32{},
		groupIDs: map[string]uint32{},
		groups:   map[uint32]attrs{},
		peerSets: map[uint32]netip.Prefix{},
		stmts:    map[marker]bool{},
		rib:      map[netip.Prefix]ribEntry{},
	}
	s.rec = newRecorder(time.Now, s.kickRefresh)
	s.bgp = server.NewBgpServer(server.LoggerOption(gobgpLogger{log: s.log.WithName("gobgp"), rec: s.rec}))
	return s, nil
}

func (s *Server) listening() bool { return s.cfg.ListenPort > 0 }

func (s *Server) kickRefresh() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Start starts GoBGP with berth's import and export policies, and the status refresh.
// ctx bounds the start; the server runs until Shutdown.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.stopped {
		return errors.New("bgp: Start called twice")
	}
	go s.bgp.Serve() // never returns in GoBGP v3
	port := s.cfg.ListenPort
	if port <= 0 {
		port = -1
	}
	if err := s.bgp.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: globalASN, RouterId: s.cfg.RouterID.String(), ListenPort: port,
	}}); err != nil {
		s.stopped = true
		return fmt.Errorf("bgp: start GoBGP: %w", err)
	}
	err := s.installPolicies(ctx)
	if err == nil {
		// Watch before any peer exists, so no state change is missed.
		wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		s.watchCancel = cancel
		err = s.bgp.WatchEvent(wctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, s.onWatchEvent)
	}
	if err != nil {
		if s.watchCancel != nil {
			s.watchCancel()
		}
		_ = s.bgp.StopBgp(ctx, &api.StopBgpRequest{})
		s.stopped = true
		return fmt.Errorf("bgp: start: %w", err)
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stopLoop, s.loopDone = cancel, make(chan struct{})
	go s.loop(lctx)
	s.started = true
	s.log.V(2).Info("Started", "routerID", s.cfg.RouterID, "listenPort", port)
	return nil
}

// installPolicies installs the global import policy (accept local paths only) and the
// empty export policy that SetPaths fills; both reject by default.
func (s *Server) installPolicies(ctx context.Context) error {
	if err := s.bgp.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{
		Name: importPolicy, Statements: []*api.Statement{importStatement()}}}); err != nil {
		return fmt.Errorf("policy %s: %w", importPolicy, err)
	}
	if err := s.bgp.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: exportPolicy}}); err != nil {
		return fmt.Errorf("policy %s: %w", exportPolicy, err)
	}
	for _, a := range []*api.PolicyAssignment{
		{Name: globalTable, Direction: api.PolicyDirection_IMPORT, DefaultAction: api.RouteAction_REJECT,
			Policies: []*api.Policy{{Name: importPolicy}}},
		{Name: globalTable, Direction: api.PolicyDirection_EXPORT, DefaultAction: api.RouteAction_REJECT,
			Policies: []*api.Policy{{Name: exportPolicy}}},
	} {
		if err := s.bgp.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: a}); err != nil {
			return fmt.Errorf("assign %v policy: %w", a.Direction, err)
		}
	}
	return nil
}

// onWatchEvent runs on GoBGP's watcher goroutine: record and kick, nothing else.
func (s *Server) onWatchEvent(r *api.WatchEventResponse) {
	pe := r.GetPeer()
	if pe == nil || pe.Type != api.WatchEventResponse_PeerEvent_STATE || pe.Peer.GetState() == nil {
		return
	}
	a, err := netip.ParseAddr(pe.Peer.State.NeighborAddress)
	if err != nil {
		return
	}
	st := sessionState(pe.Peer.State.SessionState)
	s.rec.stateChange(a.Unmap(), st, time.Now())
}

func (s *Server) usable() error {
	switch {
	case s.stopped:
		return ErrShutdown
	case !s.started:
		return ErrNotStarted
	}
	return nil
}

// SetPeers makes the configured peers exactly peers: new ones are added, missing ones
// removed (their sessions closed), changed ones removed and added again; the sessions of
// unchanged peers are not touched. Invalid peers are reported with *PeerError and left
// out; an invalid peer whose name is configured keeps its running configuration.
func (s *Server) SetPeers(ctx context.Context, peers []Peer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	current := make(map[string]Peer, len(s.peers))
	for name, ps := range s.peers {
		current[name] = ps.cfg
	}
	d, verr := diffPeers(current, peers, s.listening())
	errs := []error{verr}
	for _, name := range d.remove {
		if err := s.removePeerLocked(ctx, name, true); err != nil {
			errs = append(errs, &PeerError{Name: name, Err: err})
		}
	}
	var readd []Peer
	for _, p := range d.change {
		if err := s.removePeerLocked(ctx, p.Name, false); err != nil {
			errs = append(errs, &PeerError{Name: p.Name, Err: err})
			continue
		}
		readd = append(readd, p)
	}
	for _, p := range slices.Concat(readd, d.add) {
		if err := s.addPeerLocked(ctx, p); err != nil {
			errs = append(errs, &PeerError{Name: p.Name, Err: err})
		}
	}
	if err := s.gcLocked(ctx); err != nil {
		errs = append(errs, err)
	}
	if len(d.add)+len(d.change)+len(d.remove) > 0 {
		s.log.V(2).Info("Peers reconciled", "added", len(d.add), "changed", len(d.change), "removed", len(d.remove))
		s.kickRefresh()
	}
	return errors.Join(errs...)
}

func (s *Server) addPeerLocked(ctx context.Context, p Peer) error {
	id := s.peerIDLocked(p.Name)
	if err := s.setPeerSetLocked(ctx, id, netip.PrefixFrom(p.Address, p.Address.BitLen())); err != nil {
		return err
	}
	s.rec.reset(p.Address)
	retry := p.connectTime()
	if err := s.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p, retry)}); err != nil {
		return errors.Join(fmt.Errorf("add neighbor %s: %w", p.Address, err), s.setPeerSetLocked(ctx, id, noPeer))
	}
	now := time.Now()
	if _, ok := s.peers[p.Name]; !ok {
		s.metrics.addPeer(p.Name)
	}
	s.peers[p.Name] = &peerState{cfg: p, id: id, added: now, retry: retry, loopStart: now}
	s.log.V(2).Info("Peer added", "peer", p.Name, "address", p.Address, "myASN", p.MyASN, "peerASN", p.PeerASN)
	return nil
}

// removePeerLocked deletes the peer's neighbour; final also drops its metrics (a changed
// peer keeps them).
func (s *Server) removePeerLocked(ctx context.Context, name string, final bool) error {
	ps := s.peers[name]
	if !ps.lost {
		if err := s.bgp.DeletePeer(ctx, &api.DeletePeerRequest{Address: ps.cfg.Address.String()}); err != nil {
			return fmt.Errorf("delete neighbor %s: %w", ps.cfg.Address, err)
		}
	}
	delete(s.peers, name)
	s.rec.reset(ps.cfg.Address)
	if final {
		s.metrics.removePeer(name)
	}
	s.log.V(2).Info("Peer removed", "peer", name, "address", ps.cfg.Address)
	return s.setPeerSetLocked(ctx, ps.id, noPeer)
}

func (s *Server) peerIDLocked(name string) uint32 {
	if id, ok := s.peerIDs[name]; ok {
		return id
	}
	s.nextID++
	s.peerIDs[name] = s.nextID
	return s.nextID
}

func (s *Server) groupIDLocked(a attrs) uint32 {
	s.keyBuf = a.appendKey(s.keyBuf[:0])
	if id, ok := s.groupIDs[string(s.keyBuf)]; ok {
		return id
	}
	s.nextID++
	s.groupIDs[string(s.keyBuf)] = s.nextID
	s.groups[s.nextID] = a
	return s.nextID
}

// setPeerSetLocked makes peer id's neighbour set hold exactly want. A set changes in
// place (add, then remove): GoBGP's statements keep a pointer to the set, so a replaced
// set would leave them matching the old one, and an empty set matches every peer.
func (s *Server) setPeerSetLocked(ctx context.Context, id uint32, want netip.Prefix) error {
	cur, ok := s.peerSets[id]
	if ok && cur == want {
		return nil
	}
	if err := s.bgp.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: neighborSet(id, want)}); err != nil {
		return fmt.Errorf("neighbor set %s: %w", peerSetName(id), err)
	}
	s.peerSets[id] = want
	if !ok {
		return nil
	}
	if err := s.bgp.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: neighborSet(id, cur)}); err != nil {
		return fmt.Errorf("neighbor set %s: remove %s: %w", peerSetName(id), cur, err)
	}
	return nil
}

// SetPaths makes the advertised paths exactly paths. Only the difference is sent: new
// and changed prefixes are (re-)advertised, missing ones withdrawn; a prefix that stops
// going to a peer is withdrawn from that peer alone. Invalid paths are reported with
// *PathError and left out.
func (s *Server) SetPaths(ctx context.Context, paths []Path) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	w, verr := mergePaths(paths)
	desired := ribOf(w, s.peerIDLocked, s.groupIDLocked)
	errs := []error{verr}
	// Statements first: a path must find its statement when GoBGP exports it.
	if err := s.addStatementsLocked(ctx, markersOf(desired)); err != nil {
		errs = append(errs, err)
		desired = s.installable(desired)
	}
	d := diffRIB(s.rib, desired)
	for _, p := range d.put {
		if err := s.putPathLocked(ctx, p, desired[p]); err != nil {
			errs = append(errs, &PathError{Prefix: p, Err: err})
		}
	}
	for _, p := range d.withdraw {
		if err := s.withdrawLocked(ctx, p); err != nil {
			errs = append(errs, &PathError{Prefix: p, Err: err})
		}
	}
	// Statements last: GoBGP checks whether the old path went to a peer with the policy
	// as it is now, so a peer's statement must outlive the last path that went to it.
	if err := s.removeStatementsLocked(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := s.gcLocked(ctx); err != nil {
		errs = append(errs, err)
	}
	if len(d.put)+len(d.withdraw) > 0 {
		s.log.V(2).Info("Paths reconciled", "advertised", len(d.put), "withdrawn", len(d.withdraw), "total", len(s.rib))
		s.kickRefresh()
	}
	return errors.Join(errs...)
}

// installable keeps the entries whose markers all have statements.
func (s *Server) installable(rib map[netip.Prefix]ribEntry) map[netip.Prefix]ribEntry {
	out := map[netip.Prefix]ribEntry{}
	for p, e := range rib {
		if !slices.ContainsFunc(e.markers, func(m marker) bool { return !s.stmts[m] }) {
			out[p] = e
		}
	}
	return out
}

func (s *Server) putPathLocked(ctx context.Context, p netip.Prefix, e ribEntry) error {
	path, err := apiPath(p, e)
	if err != nil {
		return err
	}
	if _, err := s.bgp.AddPath(ctx, &api.AddPathRequest{Path: path}); err != nil {
		return fmt.Errorf("add path: %w", err)
	}
	s.rib[p] = e
	return nil
}

func (s *Server) withdrawLocked(ctx context.Context, p netip.Prefix) error {
	// By path rather than by UUID: GoBGP finds a UUID by walking the whole RIB.
	path, err := apiPath(p, s.rib[p])
	if err != nil {
		return err
	}
	if err := s.bgp.DeletePath(ctx, &api.DeletePathRequest{Path: path}); err != nil {
		return fmt.Errorf("delete path: %w", err)
	}
	delete(s.rib, p)
	return nil
}

// addStatementsLocked installs the export statements of the markers that have none.
func (s *Server) addStatementsLocked(ctx context.Context, markers []marker) error {
	var stmts []*api.Statement
	for _, m := range markers {
		if s.stmts[m] {
			continue
		}
		if _, ok := s.peerSets[m.peer]; !ok {
			if err := s.setPeerSetLocked(ctx, m.peer, noPeer); err != nil {
				return err
			}
		}
		if err := s.bgp.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: markerSet(m)}); err != nil {
			return fmt.Errorf("large community set %s: %w", markerSetName(m), err)
		}
		stmts = append(stmts, exportStatement(m, s.groups[m.group]))
	}
	if len(stmts) == 0 {
		return nil
	}
	if err := s.bgp.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: exportPolicy, Statements: stmts}}); err != nil {
		return fmt.Errorf("policy %s: add %d statements: %w", exportPolicy, len(stmts), err)
	}
	for _, m := range markers {
		s.stmts[m] = true
	}
	return nil
}

// removeStatementsLocked removes the export statements no installed path uses.
func (s *Server) removeStatementsLocked(ctx context.Context) error {
	inUse := map[marker]bool{}
	for _, m := range markersOf(s.rib) {
		inUse[m] = true
	}
	var stale []marker
	for m := range s.stmts {
		if !inUse[m] {
			stale = append(stale, m)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	slices.SortFunc(stale, compareMarker)
	refs := make([]*api.Statement, len(stale))
	for i, m := range stale {
		refs[i] = &api.Statement{Name: statementName(m)}
	}
	// PreserveStatements, then delete them one by one: GoBGP's partial DeletePolicy only
	// cleans up the statements that stay, so the removed ones would linger and block a
	// later statement of the same name.
	if err := s.bgp.DeletePolicy(ctx, &api.DeletePolicyRequest{
		Policy: &api.Policy{Name: exportPolicy, Statements: refs}, PreserveStatements: true}); err != nil {
		return fmt.Errorf("policy %s: remove %d statements: %w", exportPolicy, len(stale), err)
	}
	var errs []error
	for _, m := range stale {
		delete(s.stmts, m)
		if err := s.bgp.DeleteStatement(ctx, &api.DeleteStatementRequest{Statement: &api.Statement{Name: statementName(m)}, All: true}); err != nil {
			errs = append(errs, fmt.Errorf("statement %s: %w", statementName(m), err))
		}
		if err := s.bgp.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: markerSet(m), All: true}); err != nil {
			errs = append(errs, fmt.Errorf("large community set %s: %w", markerSetName(m), err))
		}
	}
	return errors.Join(errs...)
}

// gcLocked forgets peer ids and groups no statement and no configured peer uses, with
// their neighbour sets.
func (s *Server) gcLocked(ctx context.Context) error {
	usedPeer, usedGroup := map[uint32]bool{}, map[uint32]bool{}
	for m := range s.stmts {
		usedPeer[m.peer], usedGroup[m.group] = true, true
	}
	for _, ps := range s.peers {
		usedPeer[ps.id] = true
	}
	var errs []error
	for name, id := range s.peerIDs {
		if usedPeer[id] {
			continue
		}
		if _, ok := s.peerSets[id]; ok {
			if err := s.bgp.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{
				DefinedSet: neighborSet(id, s.peerSets[id]), All: true}); err != nil {
				errs = append(errs, fmt.Errorf("neighbor set %s: %w", peerSetName(id), err))
				continue
			}
			delete(s.peerSets, id)
		}
		delete(s.peerIDs, name)
	}
	for k, id := range s.groupIDs {
		if !usedGroup[id] {
			delete(s.groupIDs, k)
			delete(s.groups, id)
		}
	}
	return errors.Join(errs...)
}
