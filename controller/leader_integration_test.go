//go:build integration

package controller_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestLeaderElection runs two berth-controller binaries: exactly one allocates, the other
// stands by ready; when the leader is SIGKILLed the standby takes the Lease, claims the
// addresses in use without moving any, and allocates. It also reads the health and
// metrics endpoints.
func TestLeaderElection(t *testing.T) {
	env := newScaleEnv(t)
	bins := buildScaleBinaries(t)
	health := map[string]string{"a": freeAddr(t), "b": freeAddr(t)}
	procs := map[string]*process{}
	for _, id := range []string{"a", "b"} {
		procs[id] = env.startBerth(t, bins, "controller-"+id, "--leader-elect=true",
			"--leader-elect-identity="+id, "--health-bind-address="+health[id])
	}
	leader := waitLeaseHolder(t, env, "", 30*time.Second)
	standby := map[string]string{"a": "b", "b": "a"}[leader]
	env.waitClaimed(t, procs[leader])
	t.Logf("leader %s", leader)

	for i := range 6 {
		if _, err := env.kc.CoreV1().Services(scaleNS).Create(t.Context(), scaleService(i), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	before := waitAllAllocated(t, env, 6)
	if data, _ := os.ReadFile(procs[standby].log); strings.Contains(string(data), "Claimed addresses in use") {
		t.Errorf("standby %s allocated while %s led", standby, leader)
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
		for id := range procs {
			if got := httpStatus(t, health[id], path); got != want {
				t.Errorf("%s %s = %d, want %d", id, path, got, want)
			}
		}
	}
	if body := httpBody(t, health[leader], "/metrics"); !strings.Contains(body, `berth_allocator_addresses_in_use{family="ipv4",pool="scale"}`) {
		t.Errorf("leader's /metrics has no pool gauge")
	}

	start := time.Now()
	procs[leader].kill()
	if got := waitLeaseHolder(t, env, leader, 60*time.Second); got != standby {
		t.Fatalf("lease went to %s, want %s", got, standby)
	}
	env.waitClaimed(t, procs[standby])
	t.Logf("standby %s took over and claimed in %s (lease duration 15s)", standby, time.Since(start).Round(time.Millisecond))
	for i := 6; i < 8; i++ {
		if _, err := env.kc.CoreV1().Services(scaleNS).Create(t.Context(), scaleService(i), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	after := waitAllAllocated(t, env, 8)
	for name, ips := range before {
		if after[name] != ips {
			t.Errorf("%s: %s before the failover, %s after", name, ips, after[name])
		}
	}
}

// waitLeaseHolder waits until the berth-controller Lease names a holder other than not.
func waitLeaseHolder(t *testing.T, env *scaleEnv, not string, timeout time.Duration) string {
	t.Helper()
	var holder string
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		l, err := env.kc.CoordinationV1().Leases("default").Get(ctx, "berth-controller", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return false, nil
		}
		holder = *l.Spec.HolderIdentity
		return holder != "" && holder != not, nil
	})
	if err != nil {
		t.Fatalf("lease holder still %q after %s", holder, timeout)
	}
	return holder
}

// waitAllAllocated waits until n Services have addresses and returns them by name.
func waitAllAllocated(t *testing.T, env *scaleEnv, n int) map[string]string {
	t.Helper()
	var got map[string]string
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		got = map[string]string{}
		for _, svc := range env.listServices(t) {
			var ips []netip.Addr
			for _, in := range svc.Status.LoadBalancer.Ingress {
				ips = append(ips, netip.MustParseAddr(in.IP))
			}
			if len(ips) > 0 {
				got[svc.Name] = joinIPs(ips)
			}
		}
		return len(got) == n, nil
	})
	if err != nil {
		t.Fatalf("%d of %d Services allocated", len(got), n)
	}
	return got
}

func httpStatus(t *testing.T, addr, path string) int {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s%s", addr, path))
	if err != nil {
		t.Fatalf("GET %s%s: %v", addr, path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func httpBody(t *testing.T, addr, path string) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s%s", addr, path))
	if err != nil {
		t.Fatalf("GET %s%s: %v", addr, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
