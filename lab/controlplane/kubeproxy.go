package controlplane

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berthlb/berth/lab/internal/tool"
	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
)

// KubeProxyOptions configure StartKubeProxy.
type KubeProxyOptions struct {
	// Node is the Node's name (--hostname-override); kube-proxy takes the node's IPs from
	// its InternalIP addresses, so the Node must carry them.
	Node string
	// NetNS is the node's namespace. The apiserver must be reachable in it at APIServer,
	// e.g. through lab.Network.ForwardHost(ctx, ns, c.APIServer, 0).
	NetNS netns.NS
	// Mode is the proxy mode, "nftables" when empty.
	Mode string
	// ClusterCIDRs are all the Pod CIDRs of the site, so kube-proxy tells pod traffic from
	// outside traffic (masquerading only the latter for Services with eTP=Cluster).
	ClusterCIDRs []netip.Prefix
	// Runner starts the process; the cluster's when nil. Down stops it either way.
	Runner *proc.Runner
	// Args are extra flags.
	Args []string
}

// kube-proxy's listeners inside the node's namespace, the same ports on every node: its
// health check on every address (as kube-proxy's default), where the other nodes'
// speakers check it before sending it Proxy-mode traffic, as a cloud load balancer does;
// its metrics on its own loopback.
const (
	kubeProxyHealthz = 10256
	kubeProxyMetrics = 10249
)

// KubeProxyMinSyncPeriod is kube-proxy's min-sync-period in the lab: the least time
// between two rule syncs, which bounds how soon a new LB IP is programmed. It is the
// nftables mode's default (nftables.minSyncPeriod; no flag sets it and the lab passes
// no configuration file).
const KubeProxyMinSyncPeriod = time.Second

// StartKubeProxy runs kube-proxy for one node inside its namespace, as system:kube-proxy,
// and returns once its health server listens (it then programs rules within a second).
func (c *Cluster) StartKubeProxy(ctx context.Context, o KubeProxyOptions) (*proc.Process, error) {
	if o.Node == "" || o.NetNS == "" {
		return nil, fmt.Errorf("kube-proxy: node %q and namespace %q are both required", o.Node, o.NetNS)
	}
	bin := filepath.Join(c.BinDir, KubeProxy)
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("kube-proxy for %s: %w: %s not found: run `%s`", o.Node, ErrBinariesMissing, bin, MakeTarget)
	}
	if o.Mode == "" {
		o.Mode = "nftables"
	}
	// nftables mode shells out to nft; ip runs it in the namespace.
	if err := tool.Require(tool.IP, tool.NFT); err != nil {
		return nil, fmt.Errorf("kube-proxy for %s: %w", o.Node, err)
	}
	runner := o.Runner
	if runner == nil {
		runner = c.runner
	}
	kubeconfig, err := c.ClientKubeconfig(KubeProxy+"-"+o.Node, KubeProxyUser)
	if err != nil {
		return nil, fmt.Errorf("kube-proxy for %s: %w", o.Node, err)
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--hostname-override=" + o.Node,
		"--proxy-mode=" + o.Mode,
		"--nodeport-addresses=primary",
		// The conntrack sysctls are global, not per namespace: leave them alone.
		"--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=0",
		"--conntrack-tcp-timeout-close-wait=0",
		fmt.Sprintf("--healthz-bind-address=0.0.0.0:%d", kubeProxyHealthz),
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", kubeProxyMetrics),
	}
	if len(o.ClusterCIDRs) > 0 {
		args = append(args, "--cluster-cidr="+joinPrefixes(o.ClusterCIDRs))
	}
	args = append(args, o.Args...)
	p, err := runner.Start(ctx, proc.Spec{Name: KubeProxy + "-" + o.Node, Path: bin, NetNS: string(o.NetNS), Args: args})
	if err != nil {
		return nil, fmt.Errorf("kube-proxy for %s: %w", o.Node, err)
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	// /proc/<pid>/net lists the sockets of the process's namespace, so the host can see
	// the listener without entering the namespace.
	// Bounded: a kube-proxy that never listens must fail the start, not hang it.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := waitFor(wctx, "listening", p, func(context.Context) error {
		return listeningOn(p.PID(), kubeProxyHealthz)
	}); err != nil {
		_ = p.Stop(time.Second)
		return nil, fmt.Errorf("kube-proxy for %s: %w", o.Node, err)
	}
	return p, nil
}

// listeningOn checks that /proc/<pid>/net/tcp or tcp6 lists a listening socket on port,
// whatever its address: Go listens on "0.0.0.0:port" with a dual-stack IPv6 socket.
func listeningOn(pid int, port uint16) error {
	suffix := fmt.Sprintf(":%04X", port)
	for _, file := range []string{"tcp", "tcp6"} {
		path := fmt.Sprintf("/proc/%d/net/%s", pid, file)
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fs := strings.Fields(sc.Text()); len(fs) > 3 && strings.HasSuffix(fs[1], suffix) && fs[3] == "0A" {
				f.Close()
				return nil
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return err
		}
	}
	return fmt.Errorf("pid %d: no listener on port %d", pid, port)
}
