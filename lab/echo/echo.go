// Package echo is the lab's pod workload: a server that answers HTTP on TCP, and single
// datagrams on UDP, with the pod's name and the client address it saw, so tests can tell
// which pod answered and whether the client's source address survived the trip.
//
// The server runs as a child process inside the pod's network namespace (sockets opened
// by a goroutine after setns would land in whichever namespace their OS thread is in).
// The child is the running binary itself, re-executed with EnvVar set: this package's init
// function sees the variable and runs the server instead of the program, so any binary
// that links the package (a go test binary, berthctl) can start pods with no hook of its
// own, and no separate binary has to be built or found. The same mechanism runs Ask, a
// one-shot client, inside any namespace.
package echo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// DefaultPort is the port a pod without container ports listens on.
const DefaultPort = 8080

// Config describes one echo server.
type Config struct {
	// Pod is the name the server answers with.
	Pod string `json:"pod"`
	// Ports are served on TCP (HTTP) and UDP alike; DefaultPort when empty.
	Ports []uint16 `json:"ports,omitempty"`
}

func (c Config) ports() []uint16 {
	if len(c.Ports) == 0 {
		return []uint16{DefaultPort}
	}
	return c.Ports
}

// Reply is what a server answers: "pod=<name> client=<ip>:<port>\n".
type Reply struct {
	Pod string
	// Client is the source address the server saw; IPv4 clients of a dual-stack socket
	// appear as IPv4, not as IPv4-mapped IPv6.
	Client netip.AddrPort
}

// String is the reply's wire form without the trailing newline.
func (r Reply) String() string { return "pod=" + r.Pod + " client=" + r.Client.String() }

// ErrMalformed means a reply is not of the form "pod=<name> client=<ip>:<port>".
var ErrMalformed = errors.New("malformed echo reply")

// ParseReply parses a reply, with or without its trailing newline.
func ParseReply(s string) (Reply, error) {
	line := strings.TrimSuffix(s, "\n")
	pod, client, ok := strings.Cut(line, " ")
	name, okPod := strings.CutPrefix(pod, "pod=")
	addr, okClient := strings.CutPrefix(client, "client=")
	if !ok || !okPod || !okClient || name == "" || strings.ContainsAny(name, " \n") {
		return Reply{}, fmt.Errorf("%w: %q", ErrMalformed, s)
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return Reply{}, fmt.Errorf("%w: %q: %w", ErrMalformed, s, err)
	}
	return Reply{Pod: name, Client: ap}, nil
}

// Serve answers on every address of the current network namespace, on each port of cfg,
// until ctx ends. It calls ready once every socket is open.
func Serve(ctx context.Context, cfg Config, ready func()) error {
	if cfg.Pod == "" || strings.ContainsAny(cfg.Pod, " \n") {
		return fmt.Errorf("echo: invalid pod name %q", cfg.Pod)
	}
	var lc net.ListenConfig
	var (
		tcp []net.Listener
		udp []net.PacketConn
	)
	closeAll := func() {
		for _, l := range tcp {
			l.Close()
		}
		for _, c := range udp {
			c.Close()
		}
	}
	for _, port := range cfg.ports() {
		// ":port" is one dual-stack socket per protocol where IPv6 is enabled.
		addr := fmt.Sprintf(":%d", port)
		l, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("echo %s: listen tcp %s: %w", cfg.Pod, addr, err)
		}
		tcp = append(tcp, l)
		c, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("echo %s: listen udp %s: %w", cfg.Pod, addr, err)
		}
		udp = append(udp, c)
	}
	if ready != nil {
		ready()
	}

	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { answerHTTP(cfg.Pod, w, r) }),
		ReadHeaderTimeout: 5 * time.Second,
	}
	errs := make(chan error, len(tcp)+len(udp))
	var wg sync.WaitGroup
	for _, l := range tcp {
		wg.Go(func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("echo %s: serve %s: %w", cfg.Pod, l.Addr(), err)
			}
		})
	}
	for _, c := range udp {
		wg.Go(func() {
			if err := serveUDP(cfg.Pod, c); err != nil && !errors.Is(err, net.ErrClosed) {
				errs <- fmt.Errorf("echo %s: serve udp %s: %w", cfg.Pod, c.LocalAddr(), err)
			}
		})
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	srv.Close()
	closeAll()
	wg.Wait()
	return err
}

func answerHTTP(pod string, w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == BulkPath {
		serveBulk(w)
		return
	}
	client, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		http.Error(w, "unparsable client address "+r.RemoteAddr, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, Reply{Pod: pod, Client: unmap(client)})
}

// serveUDP answers every datagram with one reply datagram until c is closed.
func serveUDP(pod string, c net.PacketConn) error {
	uc := c.(*net.UDPConn)
	buf := make([]byte, 2048)
	for {
		_, from, err := uc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return err
		}
		msg := Reply{Pod: pod, Client: unmap(from)}.String() + "\n"
		// A failed reply is the client's problem (gone, unreachable); keep serving.
		_, _ = uc.WriteToUDPAddrPort([]byte(msg), from)
	}
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
