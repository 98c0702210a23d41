//go:build privileged

package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
)

// up brings a network up for one test under a temporary base directory and tears it down
// with the test, checking that nothing of the run is left.
func up(t *testing.T, opts Options) *Network {
	t.Helper()
	if err := preflight(!opts.NoRouters); err != nil {
		t.Fatal(err)
	}
	if opts.BaseDir == "" {
		opts.BaseDir = baseDir(t)
	}
	start := time.Now()
	n, err := Up(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("up: %d nodes, routers=%t in %v (prefix %s)", len(n.Nodes), !opts.NoRouters, time.Since(start).Round(time.Millisecond), n.Prefix)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		fp := footprintOf(t, n)
		start := time.Now()
		if err := n.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		t.Logf("teardown in %v", time.Since(start).Round(time.Millisecond))
		fp.assertGone(t)
	})
	return n
}

// baseDir is a per-test base directory that FRR's user can traverse (t.TempDir is 0700).
func baseDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/run", "berth-lab-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// footprint is what a run owns: namespace names and inodes, the PIDs it started, its run
// directory.
type footprint struct {
	prefix string
	dir    string
	inodes map[uint64]string
	pids   []int
}

// footprintOf records the run's footprint now: every namespace named with its prefix (the
// network's and any pod's) and every process recorded in its run directory.
func footprintOf(t *testing.T, n *Network) footprint {
	t.Helper()
	fp := footprint{prefix: n.Prefix, dir: n.Dir, inodes: map[uint64]string{}}
	names, err := netns.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		var st syscall.Stat_t
		if strings.HasPrefix(name, n.Prefix) && syscall.Stat(netns.NS(name).Path(), &st) == nil {
			fp.inodes[st.Ino] = name
		}
	}
	recs, err := proc.ReadPidFiles(n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		fp.pids = append(fp.pids, r.PID)
	}
	return fp
}

// assertGone checks that no namespace, mount, host link or process of the run is left,
// including any process still inside one of its (deleted) namespaces.
func (fp footprint) assertGone(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	names, err := netns.List(ctx)
	if err != nil {
		t.Error(err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, fp.prefix) {
			t.Errorf("namespace %s left", n)
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), "/run/netns/"+fp.prefix) {
		t.Errorf("netns mount of %s left:\n%s", fp.prefix, mounts)
	}
	links, err := netns.HostLinks(ctx, fp.prefix)
	if err != nil || len(links) > 0 {
		t.Errorf("host links %v left (%v)", links, err)
	}
	for _, pid := range fp.pids {
		if err := syscall.Kill(pid, 0); err == nil {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(b), ") Z ") {
				t.Errorf("process %d left: %s", pid, b)
			}
		}
	}
	if fp.dir != "" {
		if _, err := os.Stat(fp.dir); !os.IsNotExist(err) {
			t.Errorf("run directory %s left (%v)", fp.dir, err)
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			continue
		}
		var ino uint64
		if _, err := fmt.Sscanf(link, "net:[%d]", &ino); err == nil && fp.inodes[ino] != "" {
			t.Errorf("process %d still in namespace %s", pid, fp.inodes[ino])
		}
	}
}

// inNS runs a command in ns and returns its combined output.
func inNS(ctx context.Context, ns netns.NS, prog string, args ...string) (string, error) {
	out, err := ns.Command(ctx, prog, args...).CombinedOutput()
	return string(out), err
}

func ping(t *testing.T, from netns.NS, to netip.Addr) {
	t.Helper()
	if out, err := inNS(t.Context(), from, "ping", "-c1", "-W2", to.String()); err != nil {
		t.Errorf("ping %s from %s: %v\n%s", to, from, err, out)
	}
}

func TestUpPingsAndTeardown(t *testing.T) {
	n := up(t, Options{})
	if len(n.Nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(n.Nodes))
	}
	n1, n2 := n.Nodes[0], n.Nodes[1]
	// Node network, L2 segment, pod routes between nodes, routed client through FRR.
	for _, dst := range []netip.Addr{n2.Addr4, n2.Addr6, n.FRRHost.Addr4, n.BIRDHost.Addr6} {
		ping(t, n1.NS, dst)
	}
	for _, dst := range []netip.Addr{n1.L2Addr4, n1.L2Addr6} {
		ping(t, n.L2Client.NS, dst)
	}
	for _, dst := range []netip.Addr{n2.PodGateway4, n2.PodGateway6} {
		ping(t, n1.NS, dst)
	}
	for _, dst := range []netip.Addr{n1.Addr4, n1.Addr6} {
		ping(t, n.Client.NS, dst)
	}
	// Both routers answer route queries.
	for _, f := range []netns.Family{netns.IPv4, netns.IPv6} {
		if _, err := n.FRR.BGPRoutes(t.Context(), f); err != nil {
			t.Errorf("FRR %v RIB: %v", f, err)
		}
		if _, err := n.BIRD.BGPRoutes(t.Context(), f); err != nil {
			t.Errorf("BIRD %v RIB: %v", f, err)
		}
	}
	rs, err := n.FRR.KernelRoutes(t.Context(), netns.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if !hasRoute(rs, netip.MustParsePrefix("198.18.1.0/24")) {
		t.Errorf("FRR kernel routes lack the uplink: %v", rs)
	}
	out, err := inNS(t.Context(), n1.NS, "sysctl", "-n", "net.ipv4.ip_forward")
	if err != nil || strings.TrimSpace(out) != "1" {
		t.Errorf("node1 ip_forward = %q, %v; want 1", out, err)
	}
}

func hasRoute(rs []netns.Route, dst netip.Prefix) bool {
	for _, r := range rs {
		if r.Dst == dst {
			return true
		}
	}
	return false
}

// TestStaticRouteReachesNode: with a static route on FRR to node1's pod CIDR, the routed
// client reaches TCP and UDP listeners on node1's pod gateway address; without it, not.
func TestStaticRouteReachesNode(t *testing.T) {
	n := up(t, Options{Nodes: 2})
	node := n.Nodes[0]
	for _, c := range []struct {
		dst  netip.Prefix
		via  netip.Addr
		addr netip.Addr
	}{
		{node.PodCIDR4, node.Addr4, node.PodGateway4},
		{node.PodCIDR6, node.Addr6, node.PodGateway6},
	} {
		t.Run(netns.FamilyOf(c.addr).String(), func(t *testing.T) {
			startEcho(t, n, node, c.addr)
			if out, err := tcpQuery(t, n.Client.NS, c.addr); err == nil {
				t.Fatalf("client reached %s before any route: %q", c.addr, out)
			}
			if err := n.FRR.AddStaticRoute(t.Context(), c.dst, c.via); err != nil {
				t.Fatal(err)
			}
			if out, err := tcpQuery(t, n.Client.NS, c.addr); err != nil || out != node.Name {
				t.Errorf("TCP to %s: %q, %v; want %q", c.addr, out, err, node.Name)
			}
			if out, err := udpQuery(t, n.Client.NS, c.addr); err != nil || out != node.Name {
				t.Errorf("UDP to %s: %q, %v; want %q", c.addr, out, err, node.Name)
			}
		})
	}
}

const echoPort = 7000

// startEcho runs socat listeners on addr in node that answer with the node's name.
func startEcho(t *testing.T, n *Network, node *Node, addr netip.Addr) {
	t.Helper()
	fam := netns.FamilyOf(addr)
	for _, l := range []string{
		fmt.Sprintf("TCP%d-LISTEN:%d,bind=%s,reuseaddr,fork", fam, echoPort, bracket(addr)),
		fmt.Sprintf("UDP%d-RECVFROM:%d,bind=%s,fork", fam, echoPort, bracket(addr)),
	} {
		name := fmt.Sprintf("echo-%s-%s-%s", node.Name, l[:3], fam)
		p, err := n.Runner().Start(t.Context(), proc.Spec{Name: name, Path: "socat", NetNS: string(node.NS),
			Args: []string{l, "SYSTEM:echo " + node.Name}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Stop(time.Second) })
		if l[:3] == "TCP" {
			if err := waitListen6or4(t.Context(), node.NS, p, addr); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func bracket(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

// waitListen6or4 waits for a TCP listener on addr:echoPort in p's namespace.
func waitListen6or4(ctx context.Context, ns netns.NS, p *proc.Process, addr netip.Addr) error {
	if addr.Is4() {
		return waitListen(ctx, ns, p, netip.AddrPortFrom(addr, echoPort))
	}
	path := fmt.Sprintf("/proc/%d/net/tcp6", p.PID())
	want := fmt.Sprintf(":%04X", echoPort)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) > 3 && strings.HasSuffix(f[1], want) && f[3] == "0A" {
				return nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("no listener on [%s]:%d", addr, echoPort)
}

func tcpQuery(t *testing.T, from netns.NS, addr netip.Addr) (string, error) {
	t.Helper()
	out, err := inNS(t.Context(), from, "socat", "-T2", "-u",
		fmt.Sprintf("TCP%d:%s:%d,connect-timeout=1", netns.FamilyOf(addr), bracket(addr), echoPort), "-")
	return strings.TrimSpace(out), err
}

// udpQuery asks until an answer comes or 10 s pass: the UDP listener's readiness is not
// observable from outside the way a TCP listen is, and a datagram sent before it binds
// is lost.
func udpQuery(t *testing.T, from netns.NS, addr netip.Addr) (string, error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cmd := from.Command(t.Context(), "socat", "-T1", "-",
			fmt.Sprintf("UDP%d:%s:%d", netns.FamilyOf(addr), bracket(addr), echoPort))
		cmd.Stdin = strings.NewReader("hi\n")
		out, err := cmd.CombinedOutput()
		if got := strings.TrimSpace(string(out)); (err == nil && got != "") || time.Now().After(deadline) {
			return got, err
		}
	}
}

// TestForwardHost: a TCP service on the host's loopback is reachable from inside a node.
func TestForwardHost(t *testing.T) {
	n := up(t, Options{Nodes: 1, NoRouters: true})
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hello from the host\n")
			c.Close()
		}
	}()
	host := netip.MustParseAddrPort(l.Addr().String())
	local, err := n.ForwardHost(t.Context(), n.Nodes[0].NS, host, 0)
	if err != nil {
		t.Fatal(err)
	}
	if local.Port() != host.Port() {
		t.Errorf("local port %d, want the host's %d", local.Port(), host.Port())
	}
	for range 2 { // the second connection goes through the forked children again
		out, err := inNS(t.Context(), n.Nodes[0].NS, "socat", "-T2", "-u", "TCP4:"+local.String(), "-")
		if err != nil || strings.TrimSpace(out) != "hello from the host" {
			t.Errorf("through the forward: %q, %v", out, err)
		}
	}
}

// TestCleanupAfterCrash brings a network up in a child process, SIGKILLs the child, and
// checks that Leftovers finds the run and Cleanup removes all of it, including zebra,
// which drops privileges and so outlives its parent.
func TestCleanupAfterCrash(t *testing.T) {
	if err := Preflight(); err != nil {
		t.Fatal(err)
	}
	base := baseDir(t)
	prefix := netns.NewPrefix()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+base+","+prefix)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	buf := make([]byte, 4096)
	var got string
	for !strings.Contains(got, "READY") {
		k, err := stdout.Read(buf)
		if err != nil {
			t.Fatalf("helper: %v; output %q", err, got)
		}
		got += string(buf[:k])
	}
	dir := RunDir(base, prefix)
	recs, err := proc.ReadPidFiles(dir)
	if err != nil || len(recs) < 3 {
		t.Fatalf("pid files of the run: %v, %v; want zebra, bgpd, bird", recs, err)
	}
	fp := footprint{prefix: prefix, inodes: map[uint64]string{}}
	for _, r := range recs {
		fp.pids = append(fp.pids, r.PID)
	}
	names, _ := netns.List(t.Context())
	for _, name := range names {
		var st syscall.Stat_t
		if strings.HasPrefix(name, prefix) && syscall.Stat("/run/netns/"+name, &st) == nil {
			fp.inodes[st.Ino] = name
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	var survivors []string
	for _, r := range recs {
		if r.Alive() {
			survivors = append(survivors, r.Command)
		}
	}
	t.Logf("%d of %d processes outlived the crash: %q", len(survivors), len(recs), survivors)

	left, err := Leftovers(base)
	if err != nil || len(left) != 1 || left[0] != prefix {
		t.Fatalf("Leftovers() = %v, %v; want [%s]", left, err, prefix)
	}
	start := time.Now()
	if err := Cleanup(t.Context(), base, prefix); err != nil {
		t.Fatal(err)
	}
	t.Logf("cleanup after crash in %v", time.Since(start).Round(time.Millisecond))
	fp.assertGone(t)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("run directory %s left: %v", dir, err)
	}
}

const helperEnv = "BERTH_LAB_TEST_HELPER"

// TestMain doubles as the child of TestCleanupAfterCrash: with helperEnv set it brings a
// network up, says READY and waits to be killed.
func TestMain(m *testing.M) {
	v := os.Getenv(helperEnv)
	if v == "" {
		os.Exit(m.Run())
	}
	base, prefix, _ := strings.Cut(v, ",")
	if _, err := Up(context.Background(), Options{Nodes: 1, BaseDir: base, Prefix: prefix}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("READY")
	time.Sleep(time.Hour)
}
