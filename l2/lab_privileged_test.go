//go:build privileged

package l2

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/lab/netns"
)

// The test site: a node and a client namespace joined by a veth pair, both ends named
// eth1, with the addressing of DESIGN.md's L2 service segment. The node's end has selfMAC,
// the client's clientMAC. Every address lives inside these namespaces.
const (
	segDev      = "eth1"
	envNodeNS   = "BERTH_L2_TEST_NODE_NS"
	envClientNS = "BERTH_L2_TEST_CLIENT_NS"
)

var (
	nodeV4   = netip.MustParsePrefix("198.18.2.11/24")
	nodeV6   = netip.MustParsePrefix("2001:db8:18:2::11/64")
	clientV4 = netip.MustParsePrefix("198.18.2.100/24")
	clientV6 = netip.MustParsePrefix("2001:db8:18:2::100/64")
	lb4      = netip.MustParseAddr("198.18.2.200")
	lb4b     = netip.MustParseAddr("198.18.2.201")
	lb6      = netip.MustParseAddr("2001:db8:18:2::1:a")
	lb6b     = netip.MustParseAddr("2001:db8:18:2::1:b")
	lb6c     = netip.MustParseAddr("2001:db8:18:2::1:c")
)

// site is what the child process knows of the namespaces the parent made.
type site struct {
	node, client netns.NS
}

// tools the privileged tests run, with the Debian package of each.
var tools = map[string]string{
	"ip": "iproute2", "arping": "iputils-arping", "ping": "iputils-ping", "ndisc6": "ndisc6", "sysctl": "procps",
}

// inNodeNetns builds a fresh site and runs this very test again inside its node
// namespace, where the Announcer runs; the child drives the client side with `ip netns
// exec`. It returns false in the parent (which fails with the child's output when the
// child fails) and the site and true in the child. The Announcer runs in a process of its
// own because setns moves only one thread (DESIGN.md).
func inNodeNetns(t *testing.T) (site, bool) {
	t.Helper()
	if n := os.Getenv(envNodeNS); n != "" {
		s := site{node: netns.NS(n), client: netns.NS(os.Getenv(envClientNS))}
		requireInNetns(t, s.node)
		return s, true
	}
	if os.Geteuid() != 0 {
		t.Fatalf("privileged test needs root (euid %d)", os.Geteuid()) // fail, never skip, with the tag set
	}
	for bin, pkg := range tools {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("privileged test needs %s: apt-get install %s", bin, pkg)
		}
	}
	ctx := t.Context()
	m, err := netns.New(netns.NewPrefix())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(context.Background()); err != nil {
			t.Errorf("remove test netns: %v", err)
		}
	})
	node, err := m.Create(ctx, "node")
	if err != nil {
		t.Fatal(err)
	}
	client, err := m.Create(ctx, "client")
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Veth(ctx, netns.End{NS: node, Name: segDev, MAC: selfMAC}, netns.End{NS: client, Name: segDev, MAC: clientMAC}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		ns netns.NS
		p  netip.Prefix
	}{{node, nodeV4}, {node, nodeV6}, {client, clientV4}, {client, clientV6}} {
		if err := a.ns.AddAddr(ctx, segDev, a.p); err != nil {
			t.Fatal(err)
		}
	}
	exe, err := os.Executable() // "ip netns exec … /proc/self/exe" would name ip itself
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	// ip netns exec execs the program, so the command's PID is the child test binary's,
	// and the context's end kills exactly it.
	// The child's own timeout comes first, so a hang ends with its goroutines' stacks.
	cmd := node.Command(cctx, exe, "-test.run", "^"+t.Name()+"$", "-test.v", "-test.count=1", "-test.timeout=150s")
	cmd.Env = append(os.Environ(), envNodeNS+"="+node.Name(), envClientNS+"="+client.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child in netns %s: %v; its output:\n%s", node, err, out)
	}
	t.Logf("child in netns %s passed; its output:\n%s", node, out)
	return site{}, false
}

// requireInNetns checks that this process runs in the namespace the parent made, so no
// address the test uses can be the host's.
func requireInNetns(t *testing.T, ns netns.NS) {
	t.Helper()
	var self, want syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &self); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(ns.Path(), &want); err != nil {
		t.Fatal(err)
	}
	if self.Dev != want.Dev || self.Ino != want.Ino {
		t.Fatalf("child runs outside netns %s", ns)
	}
}

// startAnnouncer runs an Announcer until the test ends, and checks that Run returned
// nil.
func startAnnouncer(t *testing.T, cfg Config) *Announcer {
	t.Helper()
	if cfg.Logger.GetSink() == nil {
		cfg.Logger = klog.Background()
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := runAnnouncer(t, a)
	t.Cleanup(stop)
	return a
}

// runAnnouncer starts a.Run and returns a function that stops it and waits for it.
func runAnnouncer(t *testing.T, a *Announcer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run() = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return within 10 s of its context ending")
		}
	})
}

// waitFor polls cond every millisecond until it holds and returns how long that took, or
// fails with what cond last saw.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (seen string, ok bool)) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		seen, ok := cond()
		last = seen
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %v: %v; last seen: %s", what, timeout, err, last)
	}
	return time.Since(start)
}

// waitOwned waits until Owned() is want.
func waitOwned(t *testing.T, a *Announcer, timeout time.Duration, want []Assignment) time.Duration {
	t.Helper()
	return waitFor(t, timeout, fmt.Sprintf("Owned() = %v", want), func() (string, bool) {
		got := a.Owned()
		return fmt.Sprint(got), cmp.Equal(want, got, ipCmp)
	})
}

// on is the assignments of ips on the interfaces, as Owned reports them.
func on(ifs []string, ips ...netip.Addr) []Assignment {
	out := make([]Assignment, 0, len(ips))
	for _, ip := range ips {
		out = append(out, Assignment{IP: ip, Interfaces: ifs})
	}
	return out
}
