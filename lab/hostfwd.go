package lab

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
)

// ForwardHost makes a TCP service on the host's loopback (the kube-apiserver) reachable
// inside ns at 127.0.0.1:port, the host port when port is 0, and returns that address.
// A namespace cannot reach the host's loopback, but it shares the file system: one socat
// on the host listens on a unix socket in the run directory and dials hostAddr; one socat
// per namespace listens on its 127.0.0.1 and dials the socket. Both stop on Close.
func (n *Network) ForwardHost(ctx context.Context, ns netns.NS, hostAddr netip.AddrPort, port uint16) (netip.AddrPort, error) {
	if port == 0 {
		port = hostAddr.Port()
	}
	local := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	sock, err := n.hostSocket(ctx, hostAddr)
	if err != nil {
		return local, err
	}
	name := fmt.Sprintf("fwd-%s-%d", ns, port)
	p, err := n.runner.Start(ctx, proc.Spec{
		Name: name, Path: "socat", NetNS: string(ns),
		Args: []string{fmt.Sprintf("TCP4-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork", port), "UNIX-CONNECT:" + sock},
	})
	if err != nil {
		return local, fmt.Errorf("forward %s into %s: %w", hostAddr, ns, err)
	}
	if err := waitListen(ctx, ns, p, local); err != nil {
		_ = p.Stop(time.Second)
		return local, fmt.Errorf("forward %s into %s: %w", hostAddr, ns, err)
	}
	return local, nil
}

// hostSocket starts (once per address) the host-side socat and returns its socket path.
func (n *Network) hostSocket(ctx context.Context, hostAddr netip.AddrPort) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s, ok := n.forwards[hostAddr.String()]; ok {
		return s, nil
	}
	i := len(n.forwards)
	sock := filepath.Join(n.Dir, fmt.Sprintf("host%d.sock", i))
	_ = os.Remove(sock)
	p, err := n.runner.Start(ctx, proc.Spec{
		Name: fmt.Sprintf("fwd-host%d", i), Path: "socat",
		Args: []string{"UNIX-LISTEN:" + sock + ",fork,mode=600", "TCP:" + hostAddr.String()},
	})
	if err != nil {
		return "", fmt.Errorf("forward %s: %w", hostAddr, err)
	}
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-p.Done():
			return "", fmt.Errorf("forward %s: socat exited: %v\n%s", hostAddr, p.State(), p.Log())
		case <-ctx.Done():
			_ = p.Stop(time.Second)
			return "", fmt.Errorf("forward %s: wait for %s: %w", hostAddr, sock, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	n.forwards[hostAddr.String()] = sock
	return sock, nil
}

// waitListen waits until p listens on addr inside ns, read from /proc/<pid>/net/tcp, which
// shows the sockets of p's namespace without entering it. Until ip has entered ns, that
// file shows the host's sockets, so p's namespace is checked first.
func waitListen(ctx context.Context, ns netns.NS, p *proc.Process, addr netip.AddrPort) error {
	var st syscall.Stat_t
	if err := syscall.Stat(ns.Path(), &st); err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	path := fmt.Sprintf("/proc/%d/net/tcp", p.PID())
	for {
		if cur, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", p.PID())); cur == want {
			if ok, _ := listening(path, addr); ok {
				return nil
			}
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited: %v\n%s", p.Name(), p.State(), p.Log())
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to listen on %s: %w", p.Name(), addr, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// listening reports whether /proc/net/tcp lists a listening socket on addr (IPv4 only:
// the address is little-endian hex, the port big-endian hex).
func listening(path string, addr netip.AddrPort) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	a := addr.Addr().As4()
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], addr.Port())
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// sl local_address rem_address st …; st 0A is LISTEN.
		if len(fields) > 3 && fields[1] == want && fields[3] == "0A" {
			return true, nil
		}
	}
	return false, sc.Err()
}
