package speaker

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/bgp"
	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

// BGPExecutor carries out BGP decisions: the bgp package's Server. Both setters take the
// whole desired state and change only the difference.
type BGPExecutor interface {
	// SetPeers makes the sessions exactly peers.
	SetPeers(ctx context.Context, peers []bgp.Peer) error
	// SetPaths makes the advertised paths exactly paths.
	SetPaths(ctx context.Context, paths []bgp.Path) error
	// Status reports the sessions.
	Status() []bgp.PeerStatus
}

// ebgpMultihopTTL is the TTL of an eBGP session whose peer sets ebgpMultiHop, as the
// BGPPeer API documents it (255: any number of hops).
const ebgpMultihopTTL = 255

// Event reasons of the BGP follower.
const (
	// EventBGPPasswordMissing: a peer's TCP-MD5 password cannot be read, so this node
	// holds no session with it.
	EventBGPPasswordMissing = "BGPPasswordMissing"
	// EventBGPPasswordFound: the password is readable again and the session configured.
	EventBGPPasswordFound = "BGPPasswordFound"
)

// BGPPeers lists the sessions this node holds: one per accepted peer whose nodeSelector
// selects self. A peer with a password is left out when passwords cannot resolve it
// (the caller learns why from its function). The router ID is the Server's, one per
// node (GoBGP v3 has a single router ID), so a peer's RouterID is not applied here. A
// hold time of 0 ("no keepalives" in the API) becomes the bgp package's default, 90 s:
// berth always runs a hold timer, or a dead router would go unnoticed.
func BGPPeers(snap *config.Snapshot, self Node, passwords func(*v1alpha1.SecretKeyRef) (string, error)) []bgp.Peer {
	if snap == nil {
		return nil
	}
	var out []bgp.Peer
	for _, p := range snap.Peers {
		if !selects(p.NodeSelector, self.Labels) {
			continue
		}
		bp := bgp.Peer{
			Name: p.Name, Address: p.Address, Port: p.Port, MyASN: p.MyASN, PeerASN: p.PeerASN,
			SourceAddress: p.SourceAddress,
			HoldTime:      p.HoldTime, KeepaliveTime: p.KeepaliveTime, ConnectTime: p.ConnectTime,
			GracefulRestart: p.GracefulRestart, RestartTime: p.RestartTime,
		}
		if p.HoldTime == 0 {
			bp.KeepaliveTime = 0
		}
		if p.EBGPMultiHop && !p.IBGP() {
			bp.EBGPMultihop = ebgpMultihopTTL
		}
		if p.Password != nil {
			pw, err := passwords(p.Password)
			if err != nil {
				continue
			}
			bp.Password = pw
		}
		out = append(out, bp)
	}
	return out
}

// BGPPaths lists the paths this node advertises, in the decisions' order: per announced
// IP and advertisement, the IP's /32 or /128 (or the advertisement's aggregation length,
// masked) with the advertisement's communities, large communities and LOCAL_PREF, to the
// route's peers. A path that two IPs or two Services produce alike appears once.
func BGPPaths(d Decisions) []bgp.Path {
	// Sized for an IP per Service: this runs on every change, at 10,000 Services too.
	out := make([]bgp.Path, 0, len(d.Services))
	type key struct {
		prefix netip.Prefix
		ad     *config.BGPAdvertisement
	}
	seen := make(map[key]bool, len(d.Services))
	large := map[*config.BGPAdvertisement][][3]uint32{} // shared by the paths of an advertisement
	for _, sd := range d.Services {
		for _, ip := range sd.IPs {
			if !ip.BGP.Announce {
				continue
			}
			for _, r := range ip.BGP.Routes {
				a := r.Advertisement
				prefix, err := ip.IP.Prefix(a.AggregationFor(config.FamilyOf(ip.IP)))
				if err != nil || seen[key{prefix, a}] {
					continue
				}
				seen[key{prefix, a}] = true
				lcs, ok := large[a]
				if !ok {
					for _, lc := range a.LargeCommunities {
						lcs = append(lcs, [3]uint32{lc.Global, lc.Local1, lc.Local2})
					}
					large[a] = lcs
				}
				p := bgp.Path{Prefix: prefix, Peers: r.Peers, Communities: a.Communities, LargeCommunities: lcs}
				if a.LocalPref != nil {
					p.LocalPref = *a.LocalPref
				}
				out = append(out, p)
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// bgpRetry is how soon a failed reconcile is tried again.
const bgpRetry = 10 * time.Second

// followBGP hands the BGP executor the peers and paths on every change of the decisions,
// the config, this Node or a Secret in berth's namespace, once the decisions are synced:
// SetPeers, then SetPaths, so that a path finds its new peer. A reconcile that failed is
// tried again after bgpRetry. On ctx's end it returns and leaves the executor as it is:
// the caller shuts it down gracefully (cmd/berth-speaker).
func (s *Speaker) followBGP(ctx context.Context) {
	logger := klog.FromContext(ctx).WithName("bgp")
	sub := s.Subscribe()
	pw := newPasswordReader(s)
	var (
		lastSnap      *config.Snapshot
		lastSelf      Node
		lastSecretGen uint64
		read          bool
		lastPeers     []bgp.Peer
		peersOK       bool
		lastPaths     []bgp.Path
		pathsOK       bool
	)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	armed := false
	if s.opts.FrontDoor != nil {
		select {
		case <-ctx.Done():
			return
		case <-s.doorTried:
		}
	}
	pace := pacer{ratio: executorPaceRatio}
	for {
		start := time.Now()
		snap, self, ok := s.state.ConfigAndSelf()
		d := s.state.Decisions()
		failed := false
		// No session before the first full decision: a router that keeps this node's
		// routes over a restart (graceful restart) drops whatever the End-of-RIB, sent
		// right after the session's first UPDATEs, did not repeat.
		if ok && d.Synced {
			if gen := s.secretGen.Load(); !read || snap != lastSnap || !sameLabels(self, lastSelf) || gen != lastSecretGen {
				pw.read(ctx, snap, self)
				read, lastSnap, lastSelf, lastSecretGen = true, snap, self, gen
			}
			peers := BGPPeers(snap, self, pw.lookup)
			paths := BGPPaths(d)
			if !s.bgpConfigured.Load() {
				// The paths first: a graceful-restart router keeps this node's routes
				// over a restart and drops, at the End-of-RIB that follows a session's
				// first UPDATEs, whatever is not in the RIB by then.
				err := s.opts.BGP.SetPaths(ctx, paths)
				if err != nil {
					logger.Error(err, "Set BGP paths", "paths", len(paths))
				}
				lastPaths, pathsOK = paths, err == nil
				failed = failed || err != nil
			}
			if !peersOK || !slices.Equal(peers, lastPeers) {
				err := s.opts.BGP.SetPeers(ctx, peers)
				if err != nil {
					logger.Error(err, "Set BGP peers", "peers", len(peers))
				}
				lastPeers, peersOK = peers, err == nil
				failed = failed || err != nil
				s.bgpConfigured.Store(true)
			}
			if !pathsOK || !slices.EqualFunc(paths, lastPaths, samePath) {
				err := s.opts.BGP.SetPaths(ctx, paths)
				if err != nil {
					logger.Error(err, "Set BGP paths", "paths", len(paths))
				} else {
					logger.V(2).Info("BGP paths set", "paths", len(paths), "peers", len(peers))
				}
				lastPaths, pathsOK = paths, err == nil
				failed = failed || err != nil
			}
		}
		if failed && !armed { // armed: a later change must not push the retry back
			retry.Reset(bgpRetry)
			armed = true
		}
		pace.done(start)
		select {
		case <-ctx.Done():
			return
		case <-sub:
		case <-s.bgpKick:
		case <-retry.C:
			armed = false
		}
		if !pace.wait(ctx) {
			return
		}
	}
}

func sameLabels(a, b Node) bool { return maps.Equal(a.Labels, b.Labels) }

func samePath(a, b bgp.Path) bool {
	return a.Prefix == b.Prefix && a.LocalPref == b.LocalPref && slices.Equal(a.Peers, b.Peers) &&
		slices.Equal(a.Communities, b.Communities) && slices.Equal(a.LargeCommunities, b.LargeCommunities)
}

// passwordReader reads the peers' TCP-MD5 passwords from their Secrets in the informer's
// cache of berth's namespace, keeps what it read until the next read, and reports a peer
// whose password is missing once per change, in the log and as an Event on the BGPPeer.
type passwordReader struct {
	s      *Speaker
	values map[v1alpha1.SecretKeyRef]string
	errs   map[v1alpha1.SecretKeyRef]error
	told   map[string]string // peer → the problem last reported, "" when none
}

func newPasswordReader(s *Speaker) *passwordReader {
	return &passwordReader{s: s, told: map[string]string{}}
}

func (r *passwordReader) lookup(ref *v1alpha1.SecretKeyRef) (string, error) {
	if err, ok := r.errs[*ref]; ok {
		return "", err
	}
	if v, ok := r.values[*ref]; ok {
		return v, nil
	}
	return "", fmt.Errorf("secret %s: not read", ref.Name)
}

// read reads the passwords of the snapshot's peers that select self.
func (r *passwordReader) read(ctx context.Context, snap *config.Snapshot, self Node) {
	logger := klog.FromContext(ctx).WithName("bgp")
	r.values, r.errs = map[v1alpha1.SecretKeyRef]string{}, map[v1alpha1.SecretKeyRef]error{}
	ns := r.s.opts.Namespace
	for _, p := range snap.Peers {
		ref := p.Password
		if ref == nil || !selects(p.NodeSelector, self.Labels) {
			continue
		}
		if _, done := r.values[*ref]; !done && r.errs[*ref] == nil {
			o, found, err := r.s.secrets.GetByKey(ns + "/" + ref.Name)
			sec, _ := o.(*corev1.Secret)
			switch {
			case err != nil:
				r.errs[*ref] = fmt.Errorf("read secret %s/%s: %w", ns, ref.Name, err)
			case !found || sec == nil:
				r.errs[*ref] = fmt.Errorf("secret %s/%s not found", ns, ref.Name)
			case len(sec.Data[ref.Key]) == 0:
				r.errs[*ref] = fmt.Errorf("secret %s/%s has no key %q", ns, ref.Name, ref.Key)
			default:
				r.values[*ref] = strings.TrimRight(string(sec.Data[ref.Key]), "\r\n")
			}
		}
		problem := ""
		if err := r.errs[*ref]; err != nil {
			problem = err.Error()
		}
		if r.told[p.Name] == problem {
			continue
		}
		r.told[p.Name] = problem
		ev := &corev1.ObjectReference{Kind: "BGPPeer", APIVersion: v1alpha1.GroupVersion.String(), Name: p.Name}
		if problem != "" {
			logger.Error(r.errs[*ref], "BGP peer left out: its TCP-MD5 password cannot be read", "peer", p.Name, "node", r.s.opts.Node)
			if r.s.opts.Recorder != nil {
				r.s.opts.Recorder.Eventf(ev, corev1.EventTypeWarning, EventBGPPasswordMissing,
					"Node %s holds no session with this peer: TCP-MD5 password: %s", r.s.opts.Node, problem)
			}
		} else {
			logger.Info("BGP peer password read", "peer", p.Name, "node", r.s.opts.Node)
			if r.s.opts.Recorder != nil {
				r.s.opts.Recorder.Eventf(ev, corev1.EventTypeNormal, EventBGPPasswordFound,
					"Node %s read the TCP-MD5 password and configured its session", r.s.opts.Node)
			}
		}
	}
}
