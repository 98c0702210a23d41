package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/lab/agent"
	"github.com/berthlb/berth/lab/controlplane"
	"github.com/berthlb/berth/lab/proc"
)

// SiteOptions configure Start.
type SiteOptions struct {
	// Nodes is the number of nodes, 3 when zero.
	Nodes int
	// Prefix starts every namespace name; a fresh random one when empty.
	Prefix string
	// BaseDir holds the run directory; DefaultBaseDir when empty. The control plane keeps
	// its files (PKI, etcd's data, kubeconfigs, audit log) in <run directory>/controlplane,
	// so everything of the run is below one directory, and every process is recorded there.
	BaseDir string
	// FRRASN and BIRDASN are the routers' AS numbers; 64500 and 64501 when zero.
	FRRASN, BIRDASN uint32
	// NoRouters starts neither FRR nor BIRD (their namespaces and links are still built).
	NoRouters bool
	// NoKubeProxy starts no kube-proxy in the nodes.
	NoKubeProxy bool
	// KubeProxyNodes, when above 0, starts kube-proxy only in the first that many nodes
	// (a large site whose other nodes only run speakers).
	KubeProxyNodes int
	// BinDir holds the control-plane binaries; controlplane.BinDir() when empty.
	BinDir string
	// CRDDirs hold CRDs to install before Start returns.
	CRDDirs []string
	// Verbosity is the control-plane components' klog -v level.
	Verbosity int
	// Heartbeat is how often the agents renew their Node's Lease and Ready condition;
	// agent.Config's default when zero.
	Heartbeat time.Duration
}

// Site is a whole bare-metal site: a control plane on the host's loopback, the lab network
// (nodes, FRR and BIRD, clients), and in every node the node agent (lab/agent, playing
// kubelet), a bridge to the apiserver at the same address as on the host, and kube-proxy in
// nftables mode. Every process runs under the Network's runner, so the run directory
// records all of them and Cleanup finds them after a crash.
type Site struct {
	network *Network
	cluster *controlplane.Cluster
	agents  []*agent.Agent // in node order

	// life outlives Start and ends when Close begins: the agents and the supervisors of
	// berth's binaries run under it.
	life       context.Context
	stopAgents context.CancelFunc
	agentsDone sync.WaitGroup

	mu          sync.Mutex
	kubeProxies map[string]*proc.Process // by node name
	agentErrs   []error
	closed      bool
	starts      int // berth processes started, numbering their names
}

// Start brings a site up and returns once every node is registered and Ready with its
// kube-proxy listening. The site runs until Close; ctx only bounds the start (its logger
// stays with the agents). On failure Start removes whatever it made. Missing control-plane
// binaries are an error wrapping controlplane.ErrBinariesMissing that names the make
// target; missing tools name their apt package.
func Start(ctx context.Context, opts SiteOptions) (*Site, error) {
	logger := klog.FromContext(ctx).WithName("site")
	begin := time.Now()
	binDir := opts.BinDir
	if binDir == "" {
		dir, err := controlplane.BinDir()
		if err != nil {
			return nil, fmt.Errorf("lab site: %w", err)
		}
		binDir = dir
	}
	if !opts.NoKubeProxy {
		// controlplane.Up checks its own four; kube-proxy is only looked for later.
		if _, err := os.Stat(filepath.Join(binDir, controlplane.KubeProxy)); err != nil {
			return nil, fmt.Errorf("lab site: %w: %s not found in %s: run `%s`",
				controlplane.ErrBinariesMissing, controlplane.KubeProxy, binDir, controlplane.MakeTarget)
		}
	}
	n, nopts, err := newNetwork(Options{Nodes: opts.Nodes, Prefix: opts.Prefix, BaseDir: opts.BaseDir,
		FRRASN: opts.FRRASN, BIRDASN: opts.BIRDASN, NoRouters: opts.NoRouters})
	if err != nil {
		return nil, err
	}
	s := &Site{network: n, kubeProxies: map[string]*proc.Process{}}

	// The control plane and the network come up at once: neither needs the other until
	// the agents start.
	var (
		wg            sync.WaitGroup
		cpErr, netErr error
		cpUp, netUp   time.Duration
	)
	wg.Go(func() {
		s.cluster, cpErr = controlplane.Up(ctx, controlplane.Options{
			Dir: filepath.Join(n.Dir, "controlplane"), BinDir: binDir, Runner: n.runner,
			CRDDirs: opts.CRDDirs, Verbosity: opts.Verbosity})
		cpUp = time.Since(begin)
	})
	wg.Go(func() {
		netErr = n.build(ctx, nopts)
		netUp = time.Since(begin)
	})
	wg.Wait()
	if err := errors.Join(cpErr, netErr); err != nil {
		return nil, s.abort(ctx, err)
	}

	// The agents outlive ctx, keeping its values (the logger).
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.life, s.stopAgents = actx, cancel
	s.agents = make([]*agent.Agent, len(n.Nodes))
	errs := make([]error, len(n.Nodes))
	for i, node := range n.Nodes {
		wg.Go(func() { s.agents[i], errs[i] = s.startNode(ctx, actx, node, opts) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, s.abort(ctx, err)
	}
	logger.V(2).Info("Site up", "prefix", n.Prefix, "nodes", len(n.Nodes), "server", s.cluster.Server,
		"controlPlane", cpUp, "network", netUp, "duration", time.Since(begin))
	return s, nil
}

// startNode starts node's agent (returned even on error, so that Close stops it), the
// apiserver bridge into the node, and then, with the Node registered, its kube-proxy.
func (s *Site) startNode(ctx, actx context.Context, node *Node, opts SiteOptions) (*agent.Agent, error) {
	a, err := agent.New(agent.Config{
		Client: s.cluster.Client, Runner: s.network.runner, Prefix: s.network.Prefix,
		Node: agent.Node{
			Name: node.Name, NS: node.NS, Bridge: PodBridge,
			Addrs:    []netip.Addr{node.Addr4, node.Addr6},
			PodCIDRs: []netip.Prefix{node.PodCIDR4, node.PodCIDR6},
			Gateways: []netip.Addr{node.PodGateway4, node.PodGateway6},
		},
		Heartbeat: opts.Heartbeat,
	})
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	s.agentsDone.Add(1)
	go func() {
		defer s.agentsDone.Done()
		err := a.Run(actx)
		if err != nil {
			s.mu.Lock()
			s.agentErrs = append(s.agentErrs, err)
			s.mu.Unlock()
		}
		done <- err
	}()
	// Kubeconfigs name the apiserver by its host address; the bridge makes the same
	// address work inside the node.
	if _, err := s.network.ForwardHost(ctx, node.NS, s.cluster.APIServer, 0); err != nil {
		return a, err
	}
	select {
	case <-a.Started():
	case err := <-done:
		return a, fmt.Errorf("agent for node %s stopped before it started: %w", node.Name, err)
	case <-ctx.Done():
		return a, fmt.Errorf("start agent for node %s: %w", node.Name, ctx.Err())
	}
	if opts.NoKubeProxy || (opts.KubeProxyNodes > 0 && node.Index > opts.KubeProxyNodes) {
		return a, nil
	}
	p, err := s.cluster.StartKubeProxy(ctx, controlplane.KubeProxyOptions{
		Node: node.Name, NetNS: node.NS, ClusterCIDRs: s.network.ClusterCIDRs(), Runner: s.network.runner})
	if err != nil {
		return a, err
	}
	s.mu.Lock()
	s.kubeProxies[node.Name] = p
	s.mu.Unlock()
	return a, nil
}

// abort closes a site whose start failed with err, and returns both errors.
func (s *Site) abort(ctx context.Context, err error) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	return errors.Join(fmt.Errorf("lab site %s: start: %w", s.network.Prefix, err), s.Close(cctx))
}

// Close stops the agents (which remove their pods' namespaces and echo servers) and the
// control plane with the kube-proxies, then closes the network: every process the run
// started, every namespace, and the run directory. It returns what went wrong, including
// agents that stopped with an error while the site ran. A second call does nothing.
func (s *Site) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	var (
		wg     sync.WaitGroup
		cpErr  error
		netErr error
	)
	// The agents tear down only what they made in the nodes, so the control plane can
	// stop meanwhile.
	wg.Go(func() {
		if s.stopAgents != nil {
			s.stopAgents()
		}
		s.agentsDone.Wait()
	})
	wg.Go(func() {
		if s.cluster != nil {
			cpErr = s.cluster.Down(ctx)
		}
	})
	wg.Wait()
	netErr = s.network.Close(ctx)
	s.mu.Lock()
	errs := append(slices.Clone(s.agentErrs), cpErr, netErr)
	s.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab site %s: close: %w", s.network.Prefix, err)
	}
	return nil
}

// Prefix starts the name of every namespace of the site.
func (s *Site) Prefix() string { return s.network.Prefix }

// Dir is the run directory.
func (s *Site) Dir() string { return s.network.Dir }

// Network is the site's network: nodes, routers, clients, and the process runner.
func (s *Site) Network() *Network { return s.network }

// Cluster is the control plane.
func (s *Site) Cluster() *controlplane.Cluster { return s.cluster }

// Client is an admin (system:masters) client of the apiserver.
func (s *Site) Client() kubernetes.Interface { return s.cluster.Client }

// Config is the admin client's configuration.
func (s *Site) Config() *rest.Config { return s.cluster.Config }

// AdminKubeconfig is a kubeconfig file for the admin, usable from the host's shell.
func (s *Site) AdminKubeconfig() string { return s.cluster.AdminKubeconfig }

// Nodes are the site's nodes, in order.
func (s *Site) Nodes() []*Node { return s.network.Nodes }

// Agents are the nodes' agents, in node order.
func (s *Site) Agents() []*agent.Agent { return s.agents }

// Agent returns the agent of the node named node, or nil.
func (s *Site) Agent(node string) *agent.Agent {
	for _, a := range s.agents {
		if a != nil && a.Node().Name == node {
			return a
		}
	}
	return nil
}

// KubeProxy returns the kube-proxy process of the node named node, or nil (NoKubeProxy).
func (s *Site) KubeProxy(node string) *proc.Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kubeProxies[node]
}
