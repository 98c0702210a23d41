package controlplane

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
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
	// /proc/<pid>/net/tcp lists the sockets of the process's namespace, so the host can
	// see the listener without entering the namespace.
	tcp := fmt.Sprintf("/proc/%d/net/tcp", p.PID())
	if err := waitFor(ctx, "listening", p, func(context.Context) error {
		return listeningOn(tcp, netip.MustParseAddrPort("0.0.0.0:"+strconv.Itoa(kubeProxyHealthz)))
	}); err != nil {
		_ = p.Stop(time.Second)
		return nil, fmt.Errorf("kube-proxy for %s: %w", o.Node, err)
	}
	return p, nil
}

// listeningOn checks that a /proc/net/tcp file lists a listening IPv4 socket on addr
// (address in little-endian hex, port big-endian hex, state 0A).
func listeningOn(path string, addr netip.AddrPort) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	a := addr.Addr().As4()
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], addr.Port())
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 3 && f[1] == want && f[3] == "0A" {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("no listener on %s in %s", addr, path)
}
