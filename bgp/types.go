package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"
)

// Peer is one BGP session this node holds.
type Peer struct {
	// Name identifies the peer (the BGPPeer's name); unique.
	Name    string
	Address netip.Addr
	// Port is the peer's port, 179 when 0.
	Port           uint16
	MyASN, PeerASN uint32
	// SourceAddress, when valid, is the local address of the session (and so the next hop
	// of its paths).
	SourceAddress netip.Addr
	// HoldTime is 90 s when 0; KeepaliveTime is a third of it when 0. ConnectTime is the
	// first reconnect interval, DefaultConnectTime when 0; it grows while the peer fails.
	HoldTime, KeepaliveTime, ConnectTime time.Duration
	// EBGPMultihop is the TTL of an eBGP session's packets; 0 is off (TTL 1).
	EBGPMultihop uint8
	// Password turns on TCP-MD5 (RFC 2385); the caller resolves it from a Secret.
	Password string
	// GracefulRestart advertises the graceful restart capability (RFC 4724) with
	// RestartTime (120 s when 0) for the session's family: the peer keeps this node's
	// routes that long when the session drops without a withdrawal.
	GracefulRestart bool
	RestartTime     time.Duration
	// Passive waits for the peer to connect; it needs Config.ListenPort.
	Passive bool
}

// Path is one prefix to advertise.
type Path struct {
	// Prefix is a /32, a /128 or an aggregate, in canonical (masked) form.
	Prefix netip.Prefix
	// Peers names the peers to send it to. A peer not configured (yet) gets it once it
	// is; a peer of the other address family never does.
	Peers            []string
	Communities      []uint32
	LargeCommunities [][3]uint32
	// LocalPref is sent to iBGP peers only; 0 leaves GoBGP's default (100).
	LocalPref uint32
}

// PeerStatus is the state of one configured peer.
type PeerStatus struct {
	Name    string
	Address netip.Addr
	// State is idle, connect, active, opensent, openconfirm or established.
	State string
	// Since is when the session entered State (or the peer was configured).
	Since time.Time
	// Advertised is the number of prefixes the session carries to the peer.
	Advertised int
	// LastError is the last reason the session failed or went down.
	LastError string
	// AuthMismatchLikely says the session fails the way a TCP-MD5 mismatch makes it fail:
	// dials with a password time out without an answer, or (listening) the kernel drops
	// segments for a bad or missing MD5 signature. A dead peer behind a password looks
	// the same, hence "likely".
	AuthMismatchLikely bool
	// Flaps counts how often the session left Established.
	Flaps int
	// HoldTime is the negotiated hold time while established.
	HoldTime time.Duration
	// ConnectRetry is the reconnect interval in use; it doubles while the peer keeps
	// failing (ConsecutiveFailures), up to MaxConnectRetry.
	ConnectRetry        time.Duration
	ConsecutiveFailures int
}

// Session states, as PeerStatus.State shows them.
const (
	StateIdle        = "idle"
	StateConnect     = "connect"
	StateActive      = "active"
	StateOpenSent    = "opensent"
	StateOpenConfirm = "openconfirm"
	StateEstablished = "established"
)

// Config configures a Server.
type Config struct {
	// RouterID is this node's BGP identifier; see RouterIDFor.
	RouterID netip.Addr
	// ListenPort is the port to accept sessions on; 0 or -1: do not listen (the default).
	ListenPort int32
	Logger     klog.Logger
	// Registerer takes the metrics; nil: not registered.
	Registerer prometheus.Registerer
	// GracefulShutdownWait is how long Shutdown lets peers act on the GRACEFUL_SHUTDOWN
	// community before it withdraws; DefaultGracefulShutdownWait when 0, none when
	// negative.
	GracefulShutdownWait time.Duration
}

// Defaults and limits.
const (
	DefaultHoldTime             = 90 * time.Second
	DefaultConnectTime          = 5 * time.Second
	MaxConnectRetry             = 2 * time.Minute
	DefaultRestartTime          = 120 * time.Second
	DefaultGracefulShutdownWait = 500 * time.Millisecond
	// maxRestartTime is the largest restart time the capability's 12 bits carry.
	maxRestartTime = 4095 * time.Second
	// maxPasswordLen is TCP_MD5SIG_MAXKEYLEN.
	maxPasswordLen = 80
)

// ErrShutdown is returned by a Server after Shutdown.
var ErrShutdown = errors.New("bgp: server shut down")

// ErrNotStarted is returned by SetPeers and SetPaths before Start.
var ErrNotStarted = errors.New("bgp: server not started")

// PeerError is a peer SetPeers could not take; the others were applied.
type PeerError struct {
	Name string
	Err  error
}

func (e *PeerError) Error() string { return fmt.Sprintf("bgp peer %q: %v", e.Name, e.Err) }
func (e *PeerError) Unwrap() error { return e.Err }

// PathError is a path SetPaths could not take; the others were applied.
type PathError struct {
	Prefix netip.Prefix
	Err    error
}

func (e *PathError) Error() string { return fmt.Sprintf("bgp path %s: %v", e.Prefix, e.Err) }
func (e *PathError) Unwrap() error { return e.Err }

// validate checks one peer for the given listen port.
func (p Peer) validate(listening bool) error {
	switch {
	case p.Name == "":
		return errors.New("name missing")
	case !p.Address.IsValid() || p.Address.IsUnspecified():
		return fmt.Errorf("address %v: want a unicast address", p.Address)
	case p.Address.Zone() != "" || p.Address.Is4In6():
		return fmt.Errorf("address %v: want a plain IPv4 or IPv6 address (no zone, not IPv4-mapped)", p.Address)
	case p.MyASN == 0 || p.PeerASN == 0:
		return fmt.Errorf("ASNs %d and %d: both needed", p.MyASN, p.PeerASN)
	case p.SourceAddress.IsValid() && (p.SourceAddress.Is4() != p.Address.Is4() || p.SourceAddress.Zone() != "" || p.SourceAddress.IsUnspecified()):
		return fmt.Errorf("source address %v: want an address of the peer's family", p.SourceAddress)
	case p.HoldTime < 0 || (p.HoldTime > 0 && p.HoldTime < 3*time.Second) || p.HoldTime > 65535*time.Second:
		return fmt.Errorf("hold time %v: want 0 (default) or 3 s to 65535 s", p.HoldTime)
	case p.KeepaliveTime < 0 || (p.KeepaliveTime > 0 && p.KeepaliveTime < time.Second):
		return fmt.Errorf("keepalive time %v: want 0 (default) or at least 1 s", p.KeepaliveTime)
	case p.KeepaliveTime > 0 && p.KeepaliveTime >= p.holdTime():
		return fmt.Errorf("keepalive time %v: want less than the hold time %v", p.KeepaliveTime, p.holdTime())
	case p.ConnectTime < 0 || p.ConnectTime > MaxConnectRetry:
		return fmt.Errorf("connect time %v: want 0 (default) to %v", p.ConnectTime, MaxConnectRetry)
	case p.RestartTime < 0 || p.RestartTime > maxRestartTime:
		return fmt.Errorf("restart time %v: want 0 (default) to %v", p.RestartTime, maxRestartTime)
	case len(p.Password) > maxPasswordLen:
		return fmt.Errorf("password: %d bytes, TCP-MD5 takes at most %d", len(p.Password), maxPasswordLen)
	case p.Passive && !listening:
		return errors.New("passive, but the server does not listen (Config.ListenPort)")
	}
	return nil
}

func (p Peer) holdTime() time.Duration {
	if p.HoldTime == 0 {
		return DefaultHoldTime
	}
	return p.HoldTime
}

func (p Peer) keepaliveTime() time.Duration {
	if p.KeepaliveTime == 0 {
		return p.holdTime() / 3
	}
	return p.KeepaliveTime
}

func (p Peer) connectTime() time.Duration {
	if p.ConnectTime == 0 {
		return DefaultConnectTime
	}
	return p.ConnectTime
}

func (p Peer) restartTime() time.Duration {
	if p.RestartTime == 0 {
		return DefaultRestartTime
	}
	return p.RestartTime
}

func (p Peer) port() uint16 {
	if p.Port == 0 {
		return 179
	}
	return p.Port
}

func (p Peer) ibgp() bool { return p.MyASN == p.PeerASN }

// validate checks one path.
func (p Path) validate() error {
	switch {
	case !p.Prefix.IsValid():
		return errors.New("invalid prefix")
	case p.Prefix.Addr().Zone() != "" || p.Prefix.Addr().Is4In6():
		return errors.New("want a plain IPv4 or IPv6 prefix")
	case p.Prefix.Masked() != p.Prefix:
		return fmt.Errorf("host bits set; want %s", p.Prefix.Masked())
	case slices.Contains(p.Peers, ""):
		return errors.New("empty peer name")
	}
	return nil
}
