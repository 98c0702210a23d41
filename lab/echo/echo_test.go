package echo

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Reply
		err  bool
	}{
		{in: "pod=web-1 client=198.18.0.11:40000\n", want: Reply{"web-1", netip.MustParseAddrPort("198.18.0.11:40000")}},
		{in: "pod=web-1 client=[2001:db8:18::11]:40000", want: Reply{"web-1", netip.MustParseAddrPort("[2001:db8:18::11]:40000")}},
		{in: "pod= client=198.18.0.11:1", err: true},
		{in: "pod=a b client=198.18.0.11:1", err: true},
		{in: "pod=a client=198.18.0.11", err: true},
		{in: "client=198.18.0.11:1 pod=a", err: true},
		{in: "", err: true},
	} {
		got, err := ParseReply(tc.in)
		if tc.err {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseReply(%q) = %v, %v; want ErrMalformed", tc.in, got, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseReply(%q): %v", tc.in, err)
			continue
		}
		if d := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
			t.Errorf("ParseReply(%q) (-want +got):\n%s", tc.in, d)
		}
	}
}

// FuzzParseReply: whatever parses prints back to a line that parses to the same reply.
func FuzzParseReply(f *testing.F) {
	f.Add("pod=web-1 client=198.18.0.11:40000\n")
	f.Add("pod=x client=[2001:db8::1%eth0]:1")
	f.Add("pod=x client=[::ffff:1.2.3.4]:80")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReply(s)
		if err != nil {
			return
		}
		again, err := ParseReply(r.String() + "\n")
		if err != nil || again != r {
			t.Fatalf("ParseReply(%q) = %v; its String %q parses to %v, %v", s, r, r.String(), again, err)
		}
	})
}

// TestServe runs the server in this process on loopback and asks it over TCP and UDP,
// both directly and through an echo child (Ask on the host).
func TestServe(t *testing.T) {
	port := freePort(t)
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, Config{Pod: "web-1", Ports: []uint16{port}}, func() { close(ready) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	}
	for _, server := range []string{"127.0.0.1", "::1"} {
		addr := netip.AddrPortFrom(netip.MustParseAddr(server), port)
		for _, network := range []string{"tcp", "udp"} {
			t.Run(network+"/"+server, func(t *testing.T) {
				r, err := Ask(t.Context(), "", network, addr)
				if err != nil {
					t.Fatal(err)
				}
				if r.Pod != "web-1" || r.Client.Addr() != addr.Addr() || r.Client.Port() == 0 {
					t.Errorf("Ask(%s %s) = %v; want pod web-1 and a client on %s", network, addr, r, addr.Addr())
				}
			})
		}
	}
	c, err := net.DialTimeout("udp", "127.0.0.1:"+strconv.Itoa(int(port)), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	c.Write([]byte("x"))
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseReply(string(buf[:n]))
	if err != nil || r.Client.String() != c.LocalAddr().String() {
		t.Errorf("UDP reply %q (%v); want the client %s", buf[:n], err, c.LocalAddr())
	}
}

func TestListening(t *testing.T) {
	port := freePort(t)
	cfg := Config{Pod: "p", Ports: []uint16{port}}
	if ok, err := Listening(os.Getpid(), cfg); ok || err != nil {
		t.Fatalf("Listening before Serve = %t, %v", ok, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, func() { close(ready) }) }()
	<-ready
	if ok, err := Listening(os.Getpid(), cfg); !ok || err != nil {
		t.Errorf("Listening while serving = %t, %v", ok, err)
	}
	cancel()
	<-done
}

func TestSpec(t *testing.T) {
	s, err := Spec("pod-a", "bl0000-pod", Config{Pod: "a"})
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	if s.Path != exe || s.NetNS != "bl0000-pod" || len(s.Env) != 2 || filepath.Base(s.Name) != "pod-a" {
		t.Errorf("Spec = %+v", s)
	}
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	// A port free on TCP and UDP, v4 and v6 alike (asked from the TCP side).
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}
