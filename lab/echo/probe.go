package echo

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
)

// probeRequest asks a child to send a UDP datagram to Addr every Interval until SIGTERM,
// printing one line per reply: "<unix nanoseconds> <pod>".
type probeRequest struct {
	Addr     netip.AddrPort `json:"addr"`
	Interval time.Duration  `json:"interval"`
}

// ProbeSpec returns a prober running in ns: UDP to addr every interval, a line per reply
// on stdout (the process log). Read the replies with ParseProbeLog; the longest silence
// between two replies is the outage a client saw.
func ProbeSpec(name string, ns netns.NS, addr netip.AddrPort, interval time.Duration) (proc.Spec, error) {
	exe, err := os.Executable()
	if err != nil {
		return proc.Spec{}, fmt.Errorf("probe %s: find the running binary: %w", addr, err)
	}
	b, err := json.Marshal(request{Probe: &probeRequest{Addr: addr, Interval: interval}})
	if err != nil {
		return proc.Spec{}, err
	}
	return proc.Spec{Name: name, Path: exe, NetNS: string(ns), Env: []string{EnvVar + "=" + string(b), noExitSleep()}}, nil
}

// probe runs until ctx ends. Replies are read on their own goroutine, so a slow reply
// never delays the next datagram.
func probe(ctx context.Context, r probeRequest, out io.Writer) error {
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
