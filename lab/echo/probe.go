package echo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
)

// probeRequest asks a child to send a UDP datagram to Addr every Interval until SIGTERM,
// printing one line per reply: "<unix nanoseconds> <pod>". Fresh sends each datagram
// from a new socket (a new source port, so a new conntrack entry on the way).
type probeRequest struct {
	Addr     netip.AddrPort `json:"addr"`
	Interval time.Duration  `json:"interval"`
	Fresh    bool           `json:"fresh,omitempty"`
}

// ProbeSpec returns a prober running in ns: UDP to addr every interval, a line per reply
// on stdout (the process log). Read the replies with ParseProbeLog; the longest silence
// between two replies is the outage a client saw.
func ProbeSpec(name string, ns netns.NS, addr netip.AddrPort, interval time.Duration) (proc.Spec, error) {
	return probeSpec(name, ns, probeRequest{Addr: addr, Interval: interval})
}

// FreshProbeSpec is ProbeSpec with a new source port per datagram, as new clients
// would: a flow the network saw before the address worked (and conntrack remembered,
// un-NATed) cannot hide that it works now. For timing when an address starts to answer.
func FreshProbeSpec(name string, ns netns.NS, addr netip.AddrPort, interval time.Duration) (proc.Spec, error) {
	return probeSpec(name, ns, probeRequest{Addr: addr, Interval: interval, Fresh: true})
}

func probeSpec(name string, ns netns.NS, r probeRequest) (proc.Spec, error) {
	exe, err := os.Executable()
	if err != nil {
		return proc.Spec{}, fmt.Errorf("probe %s: find the running binary: %w", r.Addr, err)
	}
	b, err := json.Marshal(request{Probe: &r})
	if err != nil {
		return proc.Spec{}, err
	}
	return proc.Spec{Name: name, Path: exe, NetNS: string(ns), Env: []string{EnvVar + "=" + string(b), noExitSleep()}}, nil
}

// probe runs until ctx ends. Replies are read on their own goroutine, so a slow reply
// never delays the next datagram.
func probe(ctx context.Context, r probeRequest, out io.Writer) error {
	if r.Fresh {
		return probeFresh(ctx, r, out)
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(r.Addr))
	if err != nil {
		return err
	}
	defer c.Close()
	go func() {
		w := bufio.NewWriter(out)
		buf := make([]byte, 2048)
		for {
			n, err := c.Read(buf)
			if err != nil {
				if ctx.Err() != nil {
					w.Flush()
					return
				}
				continue // ICMP unreachable while the IP has no owner: keep listening
			}
			rep, err := ParseReply(string(buf[:n]))
			if err != nil {
				continue
			}
			fmt.Fprintf(w, "%d %s\n", time.Now().UnixNano(), rep.Pod)
			w.Flush()
		}
	}()
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for seq := 0; ; seq++ {
		_, _ = c.Write([]byte(strconv.Itoa(seq)))
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// probeFresh sends every datagram from its own socket and waits up to a second for its
// reply on its own goroutine; it returns once every one of them has.
func probeFresh(ctx context.Context, r probeRequest, out io.Writer) error {
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	w := bufio.NewWriter(out)
	defer func() {
		wg.Wait()
		w.Flush()
	}()
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for seq := 0; ; seq++ {
		if c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(r.Addr)); err == nil {
			wg.Go(func() {
				defer c.Close()
				_, _ = c.Write([]byte(strconv.Itoa(seq)))
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				buf := make([]byte, 2048)
				for {
					n, err := c.Read(buf)
					if unreachable(err) {
						continue // ICMP while the address has no owner: wait for the deadline
					}
					if err != nil {
						return
					}
					if rep, err := ParseReply(string(buf[:n])); err == nil {
						mu.Lock()
						fmt.Fprintf(w, "%d %s\n", time.Now().UnixNano(), rep.Pod)
						w.Flush()
						mu.Unlock()
						return
					}
				}
			})
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// unreachable reports an ICMP error a connected UDP socket returns on a read.
func unreachable(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// ProbeReply is one reply a prober received.
type ProbeReply struct {
	At  time.Time
	Pod string
}

// ParseProbeLog reads a prober's log; lines that are not replies are skipped.
func ParseProbeLog(log string) []ProbeReply {
	var out []ProbeReply
	for _, line := range strings.Split(log, "\n") {
		ts, pod, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, ProbeReply{At: time.Unix(0, n), Pod: pod})
	}
	slices.SortFunc(out, func(a, b ProbeReply) int { return a.At.Compare(b.At) })
	return out
}

// LongestSilence returns the longest time without a reply within [from, to], counting
// from from to the first reply and from the last reply to to.
func LongestSilence(replies []ProbeReply, from, to time.Time) time.Duration {
	last, longest := from, time.Duration(0)
	for _, r := range replies {
		if r.At.Before(from) || r.At.After(to) {
			continue
		}
		longest = max(longest, r.At.Sub(last))
		last = r.At
	}
	return max(longest, to.Sub(last))
}
