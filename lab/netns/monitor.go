package netns

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// RouteMonitor timestamps the kernel's route changes in one namespace (`ip -tshort
// monitor route`): polling a router's CLI costs tens of milliseconds a call, the monitor
// is exact to the microsecond.
type RouteMonitor struct {
	ns      NS
	cancel  context.CancelFunc
	cmd     *exec.Cmd
	done    chan struct{}
	mu      sync.Mutex
	added   map[netip.Prefix]time.Time // first addition
	deleted map[netip.Prefix]time.Time // first deletion
}

// monitorProbe is a route the monitor adds and removes to prove it listens.
var monitorProbe = netip.MustParsePrefix("100.64.255.254/32")

// MonitorRoutes starts a monitor and returns once it sees route changes. Stop it.
func (ns NS) MonitorRoutes(ctx context.Context) (*RouteMonitor, error) {
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m := &RouteMonitor{ns: ns, cancel: cancel, done: make(chan struct{}),
		added: map[netip.Prefix]time.Time{}, deleted: map[netip.Prefix]time.Time{}}
	m.cmd = exec.CommandContext(mctx, "ip", "-n", string(ns), "-tshort", "monitor", "route")
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := m.cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("route monitor in %s: %w", ns, err)
	}
	go func() {
		defer close(m.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			m.parse(sc.Text())
		}
	}()
	probe := func(verb string) {
		_ = exec.Command("ip", "-n", string(ns), "route", verb, "unreachable", monitorProbe.String()).Run()
	}
	defer probe("del")
	deadline := time.Now().Add(5 * time.Second)
	for {
		// Not listening yet when the probe went in: add it again (replacing an identical
		// route may send no event).
		probe("del")
		probe("add")
		if _, ok := m.AddedAt(monitorProbe); ok {
			return m, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			m.Stop()
			return nil, fmt.Errorf("route monitor in %s: saw no probe route in 5 s", ns)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// NS is the namespace watched.
func (m *RouteMonitor) NS() NS { return m.ns }

// Stop ends the monitor.
func (m *RouteMonitor) Stop() {
	m.cancel()
	_ = m.cmd.Wait()
	<-m.done
}

func (m *RouteMonitor) parse(line string) {
	if !strings.HasPrefix(line, "[") {
		return
	}
	end := strings.Index(line, "]")
	if end < 0 {
		return
	}
	at, err := time.ParseInLocation("2006-01-02T15:04:05.000000", line[1:end], time.Local)
	if err != nil {
		return
	}
	f := strings.Fields(line[end+1:])
	deleted := false
	if len(f) > 0 && f[0] == "Deleted" {
		deleted, f = true, f[1:]
	}
	if len(f) > 0 && (f[0] == "unreachable" || f[0] == "blackhole") {
		f = f[1:]
	}
	if len(f) == 0 {
		return
	}
	p, err := netip.ParsePrefix(f[0])
	if err != nil {
		a, err := netip.ParseAddr(f[0])
		if err != nil {
			return
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := m.added
	if deleted {
		seen = m.deleted
	}
	if _, ok := seen[p]; !ok {
		seen[p] = at
	}
}

// AddedAt is when p was first added.
func (m *RouteMonitor) AddedAt(p netip.Prefix) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok := m.added[p]
	return at, ok
}

// DeletedAt is when p was first deleted.
func (m *RouteMonitor) DeletedAt(p netip.Prefix) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok := m.deleted[p]
	return at, ok
}
