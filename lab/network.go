// Package lab builds a bare-metal site in network namespaces: nodes on a node network
// and an L2 service segment, FRR and BIRD top-of-rack routers, a client on the segment and
// a routed client behind FRR (DESIGN.md, addressing table). Up builds that network alone;
// Start builds a whole Site on it: the control plane (lab/controlplane), and in every node
// the node agent (lab/agent), a bridge to the apiserver and kube-proxy. Everything runs
// through the Network's process runner, so Cleanup finds it after a crash.
package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
	"github.com/berthlb/berth/lab/router"
)

// DefaultBaseDir holds one run directory per lab run: logs, pid files, router state and
// sockets. It is on tmpfs (a reboot clears it along with the processes and namespaces),
// and readable by FRR's user.
const DefaultBaseDir = "/run/berth-lab"

// MaxNodes keeps node addresses (.11 …) below the L2 pool (198.18.2.192/26).
const MaxNodes = 180

// The site's pod ranges (DESIGN.md, addressing): node N's pod CIDRs are 198.19.N.0/24 and
// 2001:db8:19:N::/64 inside them. Network.ClusterCIDRs returns them as prefixes.
const (
	clusterCIDR4 = "198.19.0.0/16"
	clusterCIDR6 = "2001:db8:19::/48"
)

// Device names inside the namespaces.
const (
	NodeDev   = "eth0" // node network, on nodes, routers and clients
	L2Dev     = "eth1" // L2 service segment, on nodes
	PodBridge = "pods" // each node's pod bridge
	UplinkDev = "eth1" // FRR's side of the routed client's uplink
)

// Options configure Up.
type Options struct {
	// Nodes is the number of nodes, 3 when zero.
	Nodes int
	// Prefix starts every namespace name; a fresh random one when empty.
	Prefix string
	// BaseDir holds the run directory; DefaultBaseDir when empty.
	BaseDir string
	// FRRASN and BIRDASN are the routers' AS numbers; 64500 and 64501 when zero.
	FRRASN, BIRDASN uint32
	// NoRouters builds the namespaces and links but starts neither FRR nor BIRD.
	NoRouters bool
}

// Host is a namespace with one interface of interest.
type Host struct {
	Name string
	NS   netns.NS
	Dev  string
	MAC  net.HardwareAddr
	// Addr4 and Addr6 are the addresses on Dev; Gateway4 and Gateway6 its default routes.
	Addr4, Addr6       netip.Addr
	Gateway4, Gateway6 netip.Addr
}

// Node is a node namespace.
type Node struct {
	Name  string // node1, node2, …
	Index int    // 1-based
	NS    netns.NS
	// Node network (NodeDev): API, memberlist, BGP.
	Addr4, Addr6 netip.Addr
	MAC          net.HardwareAddr
	// L2 service segment (L2Dev).
	L2Addr4, L2Addr6 netip.Addr
	L2MAC            net.HardwareAddr
	// Pod CIDRs, with the gateway addresses on PodBridge.
	PodCIDR4, PodCIDR6       netip.Prefix
	PodGateway4, PodGateway6 netip.Addr
}

// Network is a running lab network.
type Network struct {
	Prefix string
	// Dir is the run directory.
	Dir string
	// Switch holds the node-network bridge (BridgeNode) and the L2 bridge (BridgeL2).
	Switch netns.NS
	Nodes  []*Node
	// FRR is the default router of the nodes (.1) and routes to Client; BIRD is at .2.
	// Both are nil with Options.NoRouters.
	FRR      *router.FRR
	BIRD     *router.BIRD
	FRRHost  Host // FRR's node-network side
	BIRDHost Host
	// L2Client sits on the L2 service segment; Client is routed behind FRR.
	L2Client Host
	Client   Host

	runner     *proc.Runner
	namespaces *netns.Manager

	mu       sync.Mutex
	forwards map[string]string // host address → unix socket of its host-side socat
	closed   bool
}

// Bridge names in the switch namespace.
const (
	BridgeNode = "br-node"
	BridgeL2   = "br-l2"
)

func addr(s string) netip.Addr       { return netip.MustParseAddr(s) }
func pfx(s string) netip.Prefix      { return netip.MustParsePrefix(s) }
func mac(b ...byte) net.HardwareAddr { return net.HardwareAddr(b) }

// Up builds the network and starts the routers. On failure it removes what it built.
func Up(ctx context.Context, opts Options) (*Network, error) {
	n, opts, err := newNetwork(opts)
	if err != nil {
		return nil, err
	}
	if err := n.build(ctx, opts); err != nil {
		return nil, n.abort(ctx, err)
	}
	return n, nil
}

// newNetwork fills in opts' defaults, checks the tools, creates the run directory with its
// owner record, and returns a Network with nothing built yet. Build it with build; on
// failure, abort removes what was built.
func newNetwork(opts Options) (*Network, Options, error) {
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Nodes < 1 || opts.Nodes > MaxNodes {
		return nil, opts, fmt.Errorf("lab: %d nodes: want 1 to %d", opts.Nodes, MaxNodes)
	}
	if opts.Prefix == "" {
		opts.Prefix = netns.NewPrefix()
	}
	if opts.BaseDir == "" {
		opts.BaseDir = DefaultBaseDir
	}
	if !filepath.IsAbs(opts.BaseDir) {
		return nil, opts, fmt.Errorf("lab: base directory %q is not absolute", opts.BaseDir)
	}
	if opts.FRRASN == 0 {
		opts.FRRASN = 64500
	}
	if opts.BIRDASN == 0 {
		opts.BIRDASN = 64501
	}
	if err := preflight(!opts.NoRouters); err != nil {
		return nil, opts, err
	}
	mgr, err := netns.New(opts.Prefix)
	if err != nil {
		return nil, opts, err
	}
	dir := RunDir(opts.BaseDir, opts.Prefix)
	if _, err := os.Stat(dir); err == nil {
		return nil, opts, fmt.Errorf("lab %s: run directory %s exists; another run uses this prefix, or run Cleanup", opts.Prefix, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, opts, fmt.Errorf("lab %s: %w", opts.Prefix, err)
	}
	// The base directory must let FRR's user reach its own directory below it.
	if err := os.Chmod(opts.BaseDir, 0o755); err != nil {
		return nil, opts, fmt.Errorf("lab %s: %w", opts.Prefix, err)
	}
	if err := proc.WriteRecord(filepath.Join(dir, ownerFile), os.Getpid(), os.Args); err != nil {
		return nil, opts, fmt.Errorf("lab %s: %w", opts.Prefix, err)
	}
	runner, err := proc.New(dir)
	if err != nil {
		return nil, opts, err
	}
	return &Network{Prefix: opts.Prefix, Dir: dir, runner: runner, namespaces: mgr, forwards: map[string]string{}}, opts, nil
}

// abort closes a Network whose build failed with err, and returns both errors.
func (n *Network) abort(ctx context.Context, err error) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return errors.Join(fmt.Errorf("lab %s: up: %w", n.Prefix, err), n.Close(cctx))
}

// RunDir is the run directory of prefix under baseDir.
func RunDir(baseDir, prefix string) string {
	return filepath.Join(baseDir, strings.TrimSuffix(prefix, "-"))
}

func (n *Network) build(ctx context.Context, opts Options) error {
	var err error
	create := func(name string) netns.NS {
		if err != nil {
			return ""
		}
		var ns netns.NS
		ns, err = n.namespaces.Create(ctx, name)
		return ns
	}
	n.Switch = create("sw")
	frrNS, birdNS := create("frr"), create("bird")
	for i := 1; i <= opts.Nodes; i++ {
		n.Nodes = append(n.Nodes, newNode(i, create(fmt.Sprintf("node%d", i))))
	}
	l2NS, clientNS := create("l2client"), create("client")
	if err != nil {
		return err
	}
	for _, br := range []string{BridgeNode, BridgeL2} {
		if err := n.Switch.AddBridge(ctx, br); err != nil {
			return err
		}
	}

	n.FRRHost = Host{Name: "frr", NS: frrNS, Dev: NodeDev, MAC: mac(2, 0x18, 0, 0, 0, 1),
		Addr4: addr("198.18.0.1"), Addr6: addr("2001:db8:18::1")}
	n.BIRDHost = Host{Name: "bird", NS: birdNS, Dev: NodeDev, MAC: mac(2, 0x18, 0, 0, 0, 2),
		Addr4: addr("198.18.0.2"), Addr6: addr("2001:db8:18::2")}
	n.L2Client = Host{Name: "l2client", NS: l2NS, Dev: NodeDev, MAC: mac(2, 0x18, 2, 0, 0, 2),
		Addr4: addr("198.18.2.2"), Addr6: addr("2001:db8:18:2::2")}
	n.Client = Host{Name: "client", NS: clientNS, Dev: NodeDev, MAC: mac(2, 0x18, 1, 0, 0, 2),
		Addr4: addr("198.18.1.2"), Addr6: addr("2001:db8:18:1::2"),
		Gateway4: addr("198.18.1.1"), Gateway6: addr("2001:db8:18:1::1")}

	for _, h := range []Host{n.FRRHost, n.BIRDHost} {
		if err := attach(ctx, h.NS, NodeDev, h.MAC, n.Switch, h.Name, BridgeNode,
			pfx(h.Addr4.String()+"/24"), pfx(h.Addr6.String()+"/64")); err != nil {
			return err
		}
		if err := h.NS.EnableForwarding(ctx); err != nil {
			return err
		}
	}
	if err := attach(ctx, l2NS, NodeDev, n.L2Client.MAC, n.Switch, "l2client", BridgeL2,
		pfx("198.18.2.2/24"), pfx("2001:db8:18:2::2/64")); err != nil {
		return err
	}
	if err := n.buildUplink(ctx); err != nil {
		return err
	}
	for _, node := range n.Nodes {
		if err := n.buildNode(ctx, node); err != nil {
			return err
		}
	}
	if opts.NoRouters {
		return nil
	}
	return n.startRouters(ctx, opts)
}

// newNode addresses node i; its pod CIDRs lie inside clusterCIDR4 and clusterCIDR6
// (TestNodeAddressing checks every index up to MaxNodes).
func newNode(i int, ns netns.NS) *Node {
	host := 10 + i
	return &Node{
		Name: fmt.Sprintf("node%d", i), Index: i, NS: ns,
		Addr4: addr(fmt.Sprintf("198.18.0.%d", host)), Addr6: addr(fmt.Sprintf("2001:db8:18::%d", host)),
		MAC:     mac(2, 0x18, 0, 0, 0, byte(host)),
		L2Addr4: addr(fmt.Sprintf("198.18.2.%d", host)), L2Addr6: addr(fmt.Sprintf("2001:db8:18:2::%d", host)),
		L2MAC:    mac(2, 0x18, 2, 0, 0, byte(host)),
		PodCIDR4: pfx(fmt.Sprintf("198.19.%d.0/24", i)), PodCIDR6: pfx(fmt.Sprintf("2001:db8:19:%d::/64", i)),
		PodGateway4: addr(fmt.Sprintf("198.19.%d.1", i)), PodGateway6: addr(fmt.Sprintf("2001:db8:19:%d::1", i)),
	}
}

// attach connects dev in ns to bridge br in sw through a veth pair whose switch end is
// port, and gives dev its addresses.
func attach(ctx context.Context, ns netns.NS, dev string, m net.HardwareAddr, sw netns.NS, port, br string, addrs ...netip.Prefix) error {
	if err := netns.Veth(ctx, netns.End{NS: ns, Name: dev, MAC: m}, netns.End{NS: sw, Name: port}); err != nil {
		return err
	}
	if err := sw.AttachToBridge(ctx, port, br); err != nil {
		return err
	}
	for _, a := range addrs {
		if err := ns.AddAddr(ctx, dev, a); err != nil {
			return fmt.Errorf("netns %s: %w", ns, err)
		}
	}
	return nil
}

// buildUplink links the routed client straight to FRR.
func (n *Network) buildUplink(ctx context.Context) error {
	frr, c := n.FRRHost.NS, n.Client
	err := netns.Veth(ctx,
		netns.End{NS: frr, Name: UplinkDev, MAC: mac(2, 0x18, 1, 0, 0, 1)},
		netns.End{NS: c.NS, Name: c.Dev, MAC: c.MAC})
	if err != nil {
		return err
	}
	for _, a := range []struct {
		ns  netns.NS
		dev string
		p   string
	}{
		{frr, UplinkDev, "198.18.1.1/24"}, {frr, UplinkDev, "2001:db8:18:1::1/64"},
		{c.NS, c.Dev, "198.18.1.2/24"}, {c.NS, c.Dev, "2001:db8:18:1::2/64"},
	} {
		if err := a.ns.AddAddr(ctx, a.dev, pfx(a.p)); err != nil {
			return fmt.Errorf("netns %s: %w", a.ns, err)
		}
	}
	for _, gw := range []netip.Addr{c.Gateway4, c.Gateway6} {
		if err := c.NS.AddDefaultRoute(ctx, gw); err != nil {
			return fmt.Errorf("netns %s: %w", c.NS, err)
		}
	}
	return nil
}

func (n *Network) buildNode(ctx context.Context, node *Node) error {
	ns := node.NS
	if err := attach(ctx, ns, NodeDev, node.MAC, n.Switch, fmt.Sprintf("n%d-e0", node.Index), BridgeNode,
		netip.PrefixFrom(node.Addr4, 24), netip.PrefixFrom(node.Addr6, 64)); err != nil {
		return err
	}
	if err := attach(ctx, ns, L2Dev, node.L2MAC, n.Switch, fmt.Sprintf("n%d-e1", node.Index), BridgeL2,
		netip.PrefixFrom(node.L2Addr4, 24), netip.PrefixFrom(node.L2Addr6, 64)); err != nil {
		return err
	}
	if err := ns.AddBridge(ctx, PodBridge); err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	for _, a := range []netip.Prefix{netip.PrefixFrom(node.PodGateway4, 24), netip.PrefixFrom(node.PodGateway6, 64)} {
		if err := ns.AddAddr(ctx, PodBridge, a); err != nil {
			return fmt.Errorf("netns %s: %w", ns, err)
		}
	}
	if err := ns.EnableForwarding(ctx); err != nil {
		return err
	}
	var cmds []string
	// ip infers each command's family from its addresses (-batch takes no -4/-6).
	cmds = append(cmds, "route replace default via "+n.FRRHost.Addr4.String(),
		"route replace default via "+n.FRRHost.Addr6.String())
	for _, other := range n.Nodes {
		if other != node {
			cmds = append(cmds,
				fmt.Sprintf("route replace %s via %s", other.PodCIDR4, other.Addr4),
				fmt.Sprintf("route replace %s via %s", other.PodCIDR6, other.Addr6))
		}
	}
	if err := ns.Batch(ctx, cmds...); err != nil {
		return fmt.Errorf("routes of %s: %w", node.Name, err)
	}
	return nil
}

func (n *Network) startRouters(ctx context.Context, opts Options) error {
	frr, err := router.NewFRR(n.FRRHost.NS, n.runner, router.Config{
		Name: "frr", Dir: filepath.Join(n.Dir, "frr"), ASN: opts.FRRASN, RouterID: n.FRRHost.Addr4})
	if err != nil {
		return err
	}
	bird, err := router.NewBIRD(n.BIRDHost.NS, n.runner, router.Config{
		Name: "bird", Dir: filepath.Join(n.Dir, "bird"), ASN: opts.BIRDASN, RouterID: n.BIRDHost.Addr4})
	if err != nil {
		return err
	}
	n.FRR, n.BIRD = frr, bird
	// FRR takes a few hundred milliseconds; start both at once.
	errs := make(chan error, 2)
	go func() { errs <- frr.Start(ctx) }()
	go func() { errs <- bird.Start(ctx) }()
	return errors.Join(<-errs, <-errs)
}

// ClusterCIDRs are the pod ranges of the whole site, IPv4 first: every node's PodCIDR4 and
// PodCIDR6 lie inside them (kube-proxy's --cluster-cidr).
func (n *Network) ClusterCIDRs() []netip.Prefix {
	return []netip.Prefix{pfx(clusterCIDR4), pfx(clusterCIDR6)}
}

// Runner starts processes that the Network stops on Close (speakers, kube-proxy, pods).
func (n *Network) Runner() *proc.Runner { return n.runner }

// Namespaces lists every namespace of the run.
func (n *Network) Namespaces() []netns.NS { return n.namespaces.Namespaces() }

// Node returns the node named name, or nil.
func (n *Network) Node(name string) *Node {
	for _, node := range n.Nodes {
		if node.Name == name {
			return node
		}
	}
	return nil
}

// Close stops every process the run started, deletes its namespaces and removes the run
// directory. A second call does nothing.
func (n *Network) Close(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	var errs []error
	// Processes first: a process keeps a deleted namespace alive.
	if err := n.runner.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := n.namespaces.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(n.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab %s: close: %w", n.Prefix, err)
	}
	return nil
}
