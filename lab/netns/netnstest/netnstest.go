// Package netnstest runs a test inside a network namespace it creates, so that every
// address the test binds (127.0.0.2, a veth, a port) belongs to the test and never to the
// host. The test binary re-executes itself there: setns from Go moves one thread only,
// while GoBGP and memberlist open sockets from others (DESIGN.md).
package netnstest

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/berthlb/berth/lab/netns"
)

// childEnv names the netns a re-executed test binary runs in; set only in the child.
const childEnv = "BERTH_TEST_NETNS"

// ChildTimeout bounds a child's run.
const ChildTimeout = 5 * time.Minute

// Reexec runs the calling test again in a child process inside a namespace made for it
// (lo up), after running the ip setup commands there, and fails with the child's output
// when the child fails. It returns false in the parent, which should return, and true in
// the child, which carries on with the test body. Call it first in a top-level test; its
// subtests run in the child. Without root it fails: a privileged test never skips.
func Reexec(t *testing.T, setup ...string) bool {
	t.Helper()
	if ns := os.Getenv(childEnv); ns != "" {
		RequireIn(t, netns.NS(ns))
		return true
	}
	if err := netns.Preflight(); err != nil {
		t.Fatalf("privileged test needs root and iproute2: %v", err)
	}
	m, err := netns.New(netns.NewPrefix())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(context.Background()); err != nil {
			t.Errorf("remove test netns: %v", err)
		}
	})
	ns, err := m.Create(t.Context(), "t")
	if err != nil {
		t.Fatal(err)
	}
	if len(setup) > 0 {
		if err := ns.Batch(t.Context(), setup...); err != nil {
			t.Fatal(err)
		}
	}
	// The binary by path: "ip netns exec … /proc/self/exe" would name ip itself.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), ChildTimeout)
	defer cancel()
	cmd := ns.Command(ctx, exe, "-test.run", "^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+ns.Name())
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child in netns %s: %v; its output:\n%s", ns, err, out)
	}
	t.Logf("child in netns %s passed in %v; its output:\n%s", ns, time.Since(start).Round(time.Millisecond), out)
	return false
}

// RequireIn fails unless this process runs in ns, so no address the test uses can be the
// host's.
func RequireIn(t testing.TB, ns netns.NS) {
	t.Helper()
	var self, want syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &self); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(ns.Path(), &want); err != nil {
		t.Fatal(err)
	}
	if self.Dev != want.Dev || self.Ino != want.Ino {
		t.Fatalf("test process runs outside netns %s", ns)
	}
}
