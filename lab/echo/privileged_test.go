//go:build privileged

package echo_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/berthlb/berth/lab/echo"
	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
)

// TestPodNamespace runs the echo server as a child process in one namespace and asks it
// from another over a veth pair, checking that it saw the client's own address.
func TestPodNamespace(t *testing.T) {
	if err := netns.Preflight(); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	mgr, err := netns.New(netns.NewPrefix())
	if err != nil {
		t.Fatal(err)
	}
	runner, err := proc.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := runner.Close(); err != nil {
			t.Error(err)
		}
		if err := mgr.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	pod, err := mgr.Create(ctx, "pod")
	if err != nil {
		t.Fatal(err)
	}
	client, err := mgr.Create(ctx, "client")
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Veth(ctx, netns.End{NS: pod, Name: "eth0"}, netns.End{NS: client, Name: "eth0"}); err != nil {
		t.Fatal(err)
	}
	podAddrs := []netip.Prefix{netip.MustParsePrefix("198.19.1.2/24"), netip.MustParsePrefix("2001:db8:19:1::2/64")}
	clientAddrs := []netip.Prefix{netip.MustParsePrefix("198.19.1.9/24"), netip.MustParsePrefix("2001:db8:19:1::9/64")}
	for i := range podAddrs {
		if err := pod.AddAddr(ctx, "eth0", podAddrs[i]); err != nil {
			t.Fatal(err)
		}
		if err := client.AddAddr(ctx, "eth0", clientAddrs[i]); err != nil {
			t.Fatal(err)
		}
	}

	cfg := echo.Config{Pod: "web-1", Ports: []uint16{8080, 9090}}
	spec, err := echo.Spec("echo-web-1", pod, cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p, err := runner.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	for {
		ok, err := echo.Listening(p.PID(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		select {
		case <-p.Done():
			t.Fatalf("echo exited: %v\n%s", p.State(), p.Log())
		case <-time.After(5 * time.Millisecond):
		}
	}
	t.Logf("echo child listening %v after start (pid %d)", time.Since(start).Round(time.Millisecond), p.PID())

	for i, pa := range podAddrs {
		for _, port := range cfg.Ports {
			for _, network := range []string{"tcp", "udp"} {
				addr := netip.AddrPortFrom(pa.Addr(), port)
				r, err := echo.Ask(ctx, client, network, addr)
				if err != nil {
					t.Errorf("ask %s %s: %v", network, addr, err)
					continue
				}
				if r.Pod != "web-1" || r.Client.Addr() != clientAddrs[i].Addr() {
					t.Errorf("ask %s %s = %v; want pod web-1, client %s", network, addr, r, clientAddrs[i].Addr())
				}
			}
		}
	}
	// Bulk: the client pulls zeros for a while and gets a throughput.
	bps, err := echo.Pull(ctx, client, netip.AddrPortFrom(podAddrs[0].Addr(), 8080), 200*time.Millisecond)
	if err != nil || bps < 1<<20 {
		t.Errorf("pull from web-1: %.0f B/s, %v; want at least 1 MiB/s over a veth", bps, err)
	}
	t.Logf("pull over a veth pair: %.1f Gbit/s", bps*8/1e9)
	if err := p.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	if st := p.State(); !st.Success() {
		t.Errorf("echo exit on SIGTERM: %v\n%s", st, p.Log())
	}
}
