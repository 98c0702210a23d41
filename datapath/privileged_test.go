//go:build privileged

package datapath

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berthlb/berth/lab/echo"
	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/netns/netnstest"
)

// The front door test's addresses, all inside the namespaces it makes: the node (this
// process, after Reexec) and a client behind a veth pair.
var (
	nodeAddr4, clientAddr4 = netip.MustParseAddr("198.18.77.1"), netip.MustParseAddr("198.18.77.2")
	nodeAddr6, clientAddr6 = netip.MustParseAddr("2001:db8:77::1"), netip.MustParseAddr("2001:db8:77::2")
	lb4                    = netip.MustParseAddr("203.0.113.7")     // on the node's lo
	lb6                    = netip.MustParseAddr("2001:db8:113::7") // on its veth: the client resolves it with NDP
)

// frontDoorLab runs this process's namespace as a node with an echo server on ports 80 and
// 22 of every address, and returns a client namespace that routes lb4 through the node
// and reaches lb6 on-link.
func frontDoorLab(t *testing.T) netns.NS {
	t.Helper()
	ctx := t.Context()
	m, err := netns.New(netns.NewPrefix())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	client, err := m.Create(ctx, "client")
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Batch(ctx,
		fmt.Sprintf("link add eth0 type veth peer name n0 netns %d", os.Getpid()),
		"addr add "+clientAddr4.String()+"/24 dev eth0",
		"addr add "+clientAddr6.String()+"/64 dev eth0 nodad",
		"link set eth0 up",
		"route add 203.0.113.0/24 via "+nodeAddr4.String(),
		"route add 2001:db8:113::/64 dev eth0",
	); err != nil {
		t.Fatal(err)
	}
	if err := client.Sysctl(ctx, map[string]string{"net.ipv6.neigh.eth0.delay_first_probe_time": "1"}); err != nil {
		t.Fatal(err)
	}
	for _, args := range []string{
		"addr add " + nodeAddr4.String() + "/24 dev n0",
		"addr add " + nodeAddr6.String() + "/64 dev n0 nodad",
		"addr add " + lb6.String() + "/128 dev n0 nodad",
		"addr add " + lb4.String() + "/32 dev lo",
		"link set n0 up",
	} {
		if out, err := exec.CommandContext(ctx, "ip", strings.Fields(args)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", args, err, out)
		}
	}
	sctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		served <- echo.Serve(sctx, echo.Config{Pod: "node", Ports: []uint16{80, 22}}, func() { close(ready) })
	}()
	t.Cleanup(func() { cancel(); <-served })
	select {
	case <-ready:
	case err := <-served:
		t.Fatalf("echo server: %v", err)
	}
	return client
}

// reachable says whether the client gets an echo reply from addr.
func reachable(t *testing.T, client netns.NS, network string, addr netip.AddrPort) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	_, err := echo.Ask(ctx, client, network, addr)
	return err == nil
}

// TestFrontDoor applies a table in a node namespace and sends real traffic from a client:
// Service ports of the LB IPs pass, other ports of them are dropped (a listener on 22
// included) while the node's own address stays open, IPv6 neighbour re-validation of an
// LB IP works, a rule deleted by hand comes back, and Remove opens the door again.
func TestFrontDoor(t *testing.T) {
	if !netnstest.Reexec(t) {
		return
	}
	client := frontDoorLab(t)
	ctx := t.Context()
	tbl := NewTable()
	t.Cleanup(func() { _ = tbl.Remove(context.Background()) })
	desired := Desired{Open: []Frontend{
		{IP: lb4, Protocol: TCP, Port: 80}, {IP: lb4, Protocol: UDP, Port: 80}, {IP: lb6, Protocol: TCP, Port: 80},
	}}
	for _, c := range []struct {
		network string
		addr    netip.AddrPort
	}{{"tcp", netip.AddrPortFrom(lb4, 22)}, {"tcp", netip.AddrPortFrom(lb6, 22)}} {
		if !reachable(t, client, c.network, c.addr) {
			t.Fatalf("before any table: %s %s unreachable; the lab is broken", c.network, c.addr)
		}
	}
	st, err := tbl.Apply(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	want := Status{Present: true, IPs: 2, Open: 3, Chains: 5, Rules: 26}
	if st != want {
		t.Errorf("Apply: status %+v, want %+v", st, want)
	}
	if read, err := tbl.Status(); err != nil || read != want {
		t.Errorf("read back: %+v, %v; want %+v", read, err, want)
	}

	check := func(t *testing.T) {
		t.Helper()
		for _, c := range []struct {
			network string
			addr    netip.AddrPort
			want    bool
		}{
			{"tcp", netip.AddrPortFrom(lb4, 80), true},
			{"tcp", netip.AddrPortFrom(lb6, 80), true},
			{"tcp", netip.AddrPortFrom(lb4, 22), false},
			{"tcp", netip.AddrPortFrom(lb6, 22), false},
			{"tcp", netip.AddrPortFrom(nodeAddr4, 22), true}, // not an LB IP
			{"tcp", netip.AddrPortFrom(nodeAddr6, 22), true},
		} {
			if got := reachable(t, client, c.network, c.addr); got != c.want {
				t.Errorf("%s %s reachable: %t, want %t", c.network, c.addr, got, c.want)
			}
		}
		// The echo server answers UDP from the node's address, not the LB IP, so the
		// client never takes the reply: the door's drop counters tell instead.
		for _, c := range []struct {
			addr    netip.AddrPort
			chain   string
			dropped bool
		}{
			{netip.AddrPortFrom(lb4, 80), chainDoor4, false},
			{netip.AddrPortFrom(lb4, 22), chainDoor4, true},
			{netip.AddrPortFrom(lb6, 80), chainDoor6, true},
		} {
			before := dropCount(t, c.chain)
			reachable(t, client, "udp", c.addr)
			if got := dropCount(t, c.chain) > before; got != c.dropped {
				t.Errorf("udp %s dropped: %t, want %t", c.addr, got, c.dropped)
			}
		}
	}
	t.Run("only Service ports pass", check)

	t.Run("replies to a connection the node opened from an LB IP pass", func(t *testing.T) {
		// A hostNetwork process (or IPVS) talking from the LB IP: its replies arrive at an
		// ephemeral port of the LB IP, established.
		srv := client.Command(ctx, "socat", "TCP-LISTEN:9000,reuseaddr", "SYSTEM:echo hello")
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(lb4, 0)), Timeout: time.Second}
		var conn net.Conn
		var err error
		for range 20 { // until socat listens
			if conn, err = d.DialContext(ctx, "tcp", netip.AddrPortFrom(clientAddr4, 9000).String()); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("dial the client from %s: %v", lb4, err)
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if b, err := io.ReadAll(conn); err != nil || strings.TrimSpace(string(b)) != "hello" {
			t.Errorf("read from the client over a connection from %s: %q, %v", lb4, b, err)
		}
	})

	t.Run("IPv6 neighbour re-validation of an LB IP", func(t *testing.T) {
		// A stale entry that sees traffic is re-validated by a unicast solicitation to the
		// LB IP itself: the door must let it in, and the answer makes the entry reachable.
		// UDP, which no answer confirms: a TCP exchange would confirm the entry itself.
		mac, err := exec.CommandContext(ctx, "cat", "/sys/class/net/n0/address").Output()
		if err != nil {
			t.Fatal(err)
		}
		if err := client.Batch(ctx, fmt.Sprintf("neigh replace %s lladdr %s dev eth0 nud stale", lb6, strings.TrimSpace(string(mac)))); err != nil {
			t.Fatal(err)
		}
		reachable(t, client, "udp", netip.AddrPortFrom(lb6, 80))
		var state string
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			out, _ := client.IP(ctx, "-6", "neigh", "show", lb6.String(), "dev", "eth0")
			state = strings.TrimSpace(string(out))
			if strings.HasSuffix(state, "REACHABLE") {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.HasSuffix(state, "REACHABLE") {
			t.Errorf("client's entry for %s: %q, want REACHABLE after a unicast probe", lb6, state)
		}
	})

	t.Run("a rule deleted by hand comes back", func(t *testing.T) {
		flushRepaired(t, tbl, chainDoor4)
		if st, err := tbl.Status(); err != nil || st != expected(mustNormalize(t, desired)) {
			t.Errorf("after the repair: %+v, %v", st, err)
		}
		check(t)
	})

	t.Run("Remove opens the door", func(t *testing.T) {
		if err := tbl.Remove(ctx); err != nil {
			t.Fatal(err)
		}
		if st, err := tbl.Status(); err != nil || st.Present {
			t.Errorf("after Remove: %+v, %v", st, err)
		}
		if !reachable(t, client, "tcp", netip.AddrPortFrom(lb4, 22)) {
			t.Error("lb4:22 unreachable without berth's table")
		}
		if err := tbl.Remove(ctx); err != nil {
			t.Errorf("Remove of a missing table: %v", err)
		}
	})
}

// flushRepaired runs tbl.Run with a 200 ms interval, flushes chain by hand with nft(8),
// and waits up to 3 s for the repair.
func flushRepaired(t *testing.T, tbl *Table, chain string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	repairs := make(chan string, 8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tbl.Run(ctx, 200*time.Millisecond, func(found, want Status, err error) {
			repairs <- fmt.Sprintf("found %+v, want %+v, re-apply error %v", found, want, err)
		})
	}()
	defer func() { cancel(); <-done }()
	if out, err := exec.CommandContext(ctx, "nft", "flush", "chain", "inet", TableName, chain).CombinedOutput(); err != nil {
		t.Fatalf("nft flush chain %s: %v: %s", chain, err, out)
	}
	select {
	case r := <-repairs:
		t.Logf("repaired: %s", r)
	case <-time.After(3 * time.Second):
		t.Fatal("no repair within 3 s")
	}
}

// dropCount reads the packets counted by a door's drop rule.
func dropCount(t *testing.T, chain string) uint64 {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "nft", "list", "chain", "inet", TableName, chain).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list chain %s: %v: %s", chain, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "counter" && f[1] == "packets" && strings.Contains(line, "drop") {
			var n uint64
			fmt.Sscan(f[2], &n)
			return n
		}
	}
	t.Fatalf("no drop counter in chain %s:\n%s", chain, out)
	return 0
}

func mustNormalize(t *testing.T, d Desired) normalized {
	t.Helper()
	n, err := normalize(d)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
