package echo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
)

// EnvVar, when set in a process's environment, turns any binary that links this package
// into an echo child: its value is a JSON request (see request) and the process exits
// when that is done, before main or TestMain run.
const EnvVar = "BERTH_LAB_ECHO"

// request is what a child is asked to do: serve (Config) or ask once.
type request struct {
	Serve *Config       `json:"serve,omitempty"`
	Ask   *askRequest   `json:"ask,omitempty"`
	Probe *probeRequest `json:"probe,omitempty"`
	Pull  *pullRequest  `json:"pull,omitempty"`
}

type askRequest struct {
	Network string         `json:"network"`
	Addr    netip.AddrPort `json:"addr"`
	Timeout time.Duration  `json:"timeout"`
}

// init runs the child's work when EnvVar is set. This is the one place the package acts
// on its own: it never touches a process that was not started with EnvVar.
func init() {
	if v, ok := os.LookupEnv(EnvVar); ok {
		os.Exit(childMain(v))
	}
}

func childMain(v string) int {
	var req request
	if err := json.Unmarshal([]byte(v), &req); err != nil {
		fmt.Fprintf(os.Stderr, "echo child: %s=%q: %v\n", EnvVar, v, err)
		return 2
	}
	switch {
	case req.Serve != nil:
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		err := Serve(ctx, *req.Serve, func() {
			fmt.Fprintf(os.Stderr, "echo: pod %s serving TCP (HTTP) and UDP on ports %v\n", req.Serve.Pod, req.Serve.ports())
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case req.Probe != nil:
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := probe(ctx, *req.Probe, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case req.Pull != nil:
		out, err := pull(*req.Pull)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.Stdout.Write(out)
		return 0
	case req.Ask != nil:
		out, err := ask(*req.Ask)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.Stdout.Write(out)
		return 0
	}
	fmt.Fprintf(os.Stderr, "echo child: %s=%q asks for nothing\n", EnvVar, v)
	return 2
}

// Spec returns the process that serves cfg inside ns, for a proc.Runner: the running
// binary re-executed as an echo child. Its PID is the server's own.
func Spec(name string, ns netns.NS, cfg Config) (proc.Spec, error) {
	exe, err := os.Executable()
	if err != nil {
		return proc.Spec{}, fmt.Errorf("echo %s: find the running binary: %w", cfg.Pod, err)
	}
	b, err := json.Marshal(request{Serve: &cfg})
	if err != nil {
		return proc.Spec{}, fmt.Errorf("echo %s: %w", cfg.Pod, err)
	}
	return proc.Spec{Name: name, Path: exe, NetNS: string(ns), Env: []string{EnvVar + "=" + string(b), noExitSleep()}}, nil
}

// noExitSleep is a GORACE setting for children: a binary built with -race (go test -race)
// otherwise sleeps a second on exit, which would make every Ask and pod stop take that long.
func noExitSleep() string {
	return "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")
}

// Listening reports whether the echo server with process id pid has its TCP listener and
// UDP socket open on every port of cfg. It reads /proc/<pid>/net, which shows the sockets
// of the process's namespace, so it works from outside the namespace.
func Listening(pid int, cfg Config) (bool, error) {
	socks := map[string]map[uint16]bool{}
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, proto))
		if errors.Is(err, os.ErrNotExist) && strings.HasSuffix(proto, "6") {
			continue // IPv6 disabled in the namespace
		}
		if err != nil {
			return false, fmt.Errorf("echo pid %d: %w", pid, err)
		}
		family := strings.TrimSuffix(proto, "6")
		if socks[family] == nil {
			socks[family] = map[uint16]bool{}
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 4 {
				continue
			}
			// local_address is HEXADDR:HEXPORT; TCP listeners are state 0A, unconnected
			// UDP sockets state 07.
			_, hexPort, _ := strings.Cut(f[1], ":")
			var port uint16
			if _, err := fmt.Sscanf(hexPort, "%X", &port); err != nil {
				continue
			}
			if (family == "tcp" && f[3] == "0A") || (family == "udp" && f[3] == "07") {
				socks[family][port] = true
			}
		}
	}
	for _, p := range cfg.ports() {
		if !socks["tcp"][p] || !socks["udp"][p] {
			return false, nil
		}
	}
	return true, nil
}

// DefaultAskTimeout bounds Ask when ctx has no earlier deadline.
const DefaultAskTimeout = 3 * time.Second

// Ask sends one request to an echo server at addr from inside ns (the host's namespace
// when empty) and returns the reply: an HTTP GET for network "tcp", one datagram for
// "udp". It runs the running binary as an echo child in ns.
func Ask(ctx context.Context, ns netns.NS, network string, addr netip.AddrPort) (Reply, error) {
	if network != "tcp" && network != "udp" {
		return Reply{}, fmt.Errorf("ask %s %s: network must be tcp or udp", network, addr)
	}
	timeout := DefaultAskTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	out, err := runChild(ctx, ns, request{Ask: &askRequest{Network: network, Addr: addr, Timeout: timeout}})
	if err != nil {
		return Reply{}, fmt.Errorf("ask %s %s from %s: %w", network, addr, nsName(ns), err)
	}
	r, err := ParseReply(string(out))
	if err != nil {
		return Reply{}, fmt.Errorf("ask %s %s from %s: %w", network, addr, nsName(ns), err)
	}
	return r, nil
}

// runChild runs the running binary as an echo child doing req in ns (the host's namespace
// when empty) and returns what it printed.
func runChild(ctx context.Context, ns netns.NS, req request) ([]byte, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the running binary: %w", err)
	}
	var cmd *exec.Cmd
	if ns == "" {
		cmd = exec.CommandContext(ctx, exe)
	} else {
		cmd = ns.Command(ctx, exe)
	}
	cmd.Env = append(os.Environ(), EnvVar+"="+string(b), noExitSleep())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func nsName(ns netns.NS) string {
	if ns == "" {
		return "the host"
	}
	return "netns " + string(ns)
}

// ask is the child's side of Ask.
func ask(r askRequest) ([]byte, error) {
	switch r.Network {
	case "tcp":
		c := &http.Client{Timeout: r.Timeout}
		resp, err := c.Get("http://" + r.Addr.String() + "/")
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", r.Addr, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s: %s", r.Addr, resp.Status, body)
		}
		return body, nil
	case "udp":
		c, err := net.DialTimeout("udp", r.Addr.String(), r.Timeout)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(r.Timeout)); err != nil {
			return nil, err
		}
		if _, err := c.Write([]byte("ask\n")); err != nil {
			return nil, fmt.Errorf("udp %s: %w", r.Addr, err)
		}
		buf := make([]byte, 2048)
		n, err := c.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("udp %s: %w", r.Addr, err)
		}
		return buf[:n], nil
	}
	return nil, fmt.Errorf("ask: unknown network %q", r.Network)
}
