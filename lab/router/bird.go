package router

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berthlb/berth/lab/internal/tool"
	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
)

// PreflightBIRD reports whether BIRD 2 is installed and the caller is root.
func PreflightBIRD() error { return tool.Require(tool.IP, tool.BIRD, tool.BIRDC) }

// BIRD is a BIRD 2 router. It installs learned routes in ~1 ms, where zebra batches for
// ~60 ms, which makes it the one to time convergence against.
type BIRD struct {
	base

	run sync.Mutex // serialises Start, Stop and live changes
	p   *proc.Process
}

// NewBIRD returns a BIRD router for namespace ns whose daemon runner starts. It starts
// nothing.
func NewBIRD(ns netns.NS, runner *proc.Runner, cfg Config) (*BIRD, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &BIRD{base: base{ns: ns, runner: runner, cfg: cfg}}, nil
}

func (b *BIRD) path(name string) string { return filepath.Join(b.cfg.Dir, name) }

// Start writes the configuration and starts bird, returning once it answers birdc.
func (b *BIRD) Start(ctx context.Context) error {
	b.run.Lock()
	defer b.run.Unlock()
	if b.running() {
		return fmt.Errorf("router %s: already running", b.Name())
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := os.MkdirAll(b.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("router %s: %w", b.Name(), err)
	}
	if err := b.persist(); err != nil {
		return err
	}
	_ = os.Remove(b.path("bird.ctl"))
	p, err := b.runner.Start(ctx, proc.Spec{
		Name: b.Name() + "-bird", Path: "bird", NetNS: string(b.ns), Dir: b.cfg.Dir,
		Args: []string{"-f", "-c", b.path("bird.conf"), "-s", b.path("bird.ctl"), "-P", b.path("bird.pid")},
	})
	if err != nil {
		return fmt.Errorf("router %s: %w", b.Name(), err)
	}
	b.p = p
	if err := waitFile(ctx, b.path("bird.ctl"), p); err != nil {
		_ = p.Stop(time.Second)
		return fmt.Errorf("router %s: %w", b.Name(), err)
	}
	return nil
}

func (b *BIRD) running() bool { return b.p != nil && !b.p.Exited() }

// Stop stops bird, which removes the routes it installed.
func (b *BIRD) Stop(ctx context.Context) error {
	b.run.Lock()
	defer b.run.Unlock()
	if !b.running() {
		return nil
	}
	err := b.p.Stop(5 * time.Second)
	b.p = nil
	if err != nil {
		return fmt.Errorf("router %s: %w", b.Name(), err)
	}
	return nil
}

// Restart stops and starts bird, with the configuration as changed since.
func (b *BIRD) Restart(ctx context.Context) error {
	if err := b.Stop(ctx); err != nil {
		return err
	}
	return b.Start(ctx)
}

// Processes returns the running daemon, for fault tests that kill or pause it.
func (b *BIRD) Processes() []*proc.Process {
	b.run.Lock()
	defer b.run.Unlock()
	if b.p == nil {
		return nil
	}
	return []*proc.Process{b.p}
}

func (b *BIRD) persist() error {
	body, err := render("bird.conf.tmpl", b.config())
	if err != nil {
		return fmt.Errorf("router %s: %w", b.Name(), err)
	}
	if err := os.WriteFile(b.path("bird.conf"), []byte(body), 0o640); err != nil {
		return fmt.Errorf("router %s: %w", b.Name(), err)
	}
	return nil
}

// AddNeighbor configures a neighbour; a running bird reloads its configuration, which
// touches only the protocols that changed.
func (b *BIRD) AddNeighbor(ctx context.Context, n Neighbor) error {
	b.run.Lock()
	defer b.run.Unlock()
	if err := b.addNeighbor(n); err != nil {
		return err
	}
	return b.reconfigure(ctx)
}

// RemoveNeighbor deletes a neighbour, live if bird runs.
func (b *BIRD) RemoveNeighbor(ctx context.Context, addr netip.Addr) error {
	b.run.Lock()
	defer b.run.Unlock()
	if err := b.removeNeighbor(addr); err != nil {
		return err
	}
	return b.reconfigure(ctx)
}

func (b *BIRD) reconfigure(ctx context.Context) error {
	if err := b.persist(); err != nil {
		return err
	}
	if !b.running() {
		return nil
	}
	out, err := b.birdc(ctx, "configure")
	if err != nil {
		return err
	}
	if !bytes.Contains(out, []byte("Reconfigured")) && !bytes.Contains(out, []byte("Reconfiguration in progress")) {
		return fmt.Errorf("router %s: birdc configure: %s", b.Name(), bytes.TrimSpace(out))
	}
	return nil
}

// Birdc runs one birdc command against this router (about 2 ms) and returns its output.
func (b *BIRD) Birdc(ctx context.Context, command string) ([]byte, error) {
	b.run.Lock()
	defer b.run.Unlock()
	if !b.running() {
		return nil, fmt.Errorf("router %s: %w", b.Name(), ErrNotRunning)
	}
	return b.birdc(ctx, command)
}

func (b *BIRD) birdc(ctx context.Context, command string) ([]byte, error) {
	args := append([]string{"-s", b.path("bird.ctl")}, strings.Fields(command)...)
	out, err := exec.CommandContext(ctx, "birdc", args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("router %s: birdc %s: %w: %s", b.Name(), command, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// BGPRoutes reads the routes BGP learned, for one family.
func (b *BIRD) BGPRoutes(ctx context.Context, fam netns.Family) ([]Route, error) {
	table := "master4"
	if fam == netns.IPv6 {
		table = "master6"
	}
	out, err := b.Birdc(ctx, "show route all table "+table)
	if err != nil {
		return nil, err
	}
	rs, err := parseBIRDRoutes(out, b.protocolAddrs())
	if err != nil {
		return nil, fmt.Errorf("router %s: %w", b.Name(), err)
	}
	return rs, nil
}

// Sessions reads the state of every neighbour's session.
func (b *BIRD) Sessions(ctx context.Context) ([]Session, error) {
	out, err := b.Birdc(ctx, "show protocols")
	if err != nil {
		return nil, err
	}
	return parseBIRDSessions(out, b.protocolAddrs()), nil
}

// WaitEstablished waits until the session with addr is established.
func (b *BIRD) WaitEstablished(ctx context.Context, addr netip.Addr) error {
	return waitSession(ctx, b.Name(), b.Sessions, addr)
}

func (b *BIRD) protocolAddrs() map[string]netip.Addr {
	m := map[string]netip.Addr{}
	for _, n := range b.Neighbors() {
		m[birdProtocol(n.Addr)] = n.Addr
	}
	return m
}

// birdProtocol names the BGP protocol of a neighbour: "n_198_18_0_11", "n_2001_db8_18__11".
func birdProtocol(a netip.Addr) string {
	return "n_" + strings.NewReplacer(".", "_", ":", "_").Replace(a.String())
}

// parseBIRDRoutes parses `birdc show route all`: a line starting at column 0 opens a
// prefix and its first path, an indented line with "[" opens another path of the same
// prefix, and tab-indented lines are attributes of the current path.
func parseBIRDRoutes(out []byte, protocols map[string]netip.Addr) ([]Route, error) {
	var (
		rs     []Route
		prefix netip.Prefix
		cur    *Route
		isBGP  bool
	)
	flush := func() {
		if cur != nil && isBGP {
			rs = append(rs, *cur)
		}
		cur, isBGP = nil, false
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "" || strings.HasPrefix(line, "BIRD ") || strings.HasPrefix(line, "Table "):
			continue
		case strings.HasPrefix(line, "\t"):
			if cur == nil {
				continue
			}
			attr := strings.TrimSpace(line)
			switch {
			case strings.HasPrefix(attr, "via "):
				if f := strings.Fields(attr); len(f) > 1 && !cur.NextHop.IsValid() {
					cur.NextHop, _ = netip.ParseAddr(f[1])
				}
			case strings.HasPrefix(attr, "Type: BGP"):
				isBGP = true
			case strings.HasPrefix(attr, "BGP.as_path:"):
				cur.ASPath = strings.TrimSpace(strings.TrimPrefix(attr, "BGP.as_path:"))
			case strings.HasPrefix(attr, "BGP.community:"):
				cur.Communities = parseBIRDCommunities(strings.TrimPrefix(attr, "BGP.community:"))
			}
		default:
			flush()
			rest := line
			if !strings.HasPrefix(line, " ") {
				f := strings.Fields(line)
				p, err := netip.ParsePrefix(f[0])
				if err != nil {
					return nil, fmt.Errorf("parse BIRD routes: line %q: %w", line, err)
				}
				prefix = p
				rest = strings.TrimPrefix(line, f[0])
			}
			if !prefix.IsValid() {
				return nil, fmt.Errorf("parse BIRD routes: path before any prefix: %q", line)
			}
			r := Route{Prefix: prefix}
			if i, j := strings.Index(rest, "["), strings.Index(rest, "]"); i >= 0 && j > i {
				if f := strings.Fields(rest[i+1 : j]); len(f) > 0 {
					r.Peer = protocols[f[0]]
				}
				r.Best = strings.Contains(rest[j:], "* ")
			}
			cur = &r
		}
	}
	flush()
	sortRoutes(rs)
	return rs, sc.Err()
}

// parseBIRDCommunities turns "(64512,100) (64512,200)" into ["64512:100", "64512:200"].
func parseBIRDCommunities(s string) []string {
	var out []string
	for _, c := range strings.Fields(s) {
		c = strings.Trim(c, "()")
		out = append(out, strings.Replace(c, ",", ":", 1))
	}
	return out
}

// parseBIRDSessions parses `birdc show protocols`: name, protocol, table, state, since
// (one or two words) and info, which for BGP is the session state.
func parseBIRDSessions(out []byte, protocols map[string]netip.Addr) []Session {
	var ss []Session
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[1] != "BGP" {
			continue
		}
		addr, ok := protocols[f[0]]
		if !ok {
			continue
		}
		state := f[3] // "start", "up", "down" when there is no info
		// Skip the since column (a time, or a date and a time); info's first word follows.
		i := 4
		for i < len(f) && f[i][0] >= '0' && f[i][0] <= '9' {
			i++
		}
		if i < len(f) {
			state = f[i]
		}
		ss = append(ss, Session{Neighbor: addr, State: state, Established: state == "Established"})
	}
	sortSessions(ss)
	return ss
}

func sortRoutes(rs []Route) {
	slices.SortFunc(rs, func(a, b Route) int {
		return cmp.Or(a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()),
			a.Peer.Compare(b.Peer))
	})
}

func sortSessions(ss []Session) {
	slices.SortFunc(ss, func(a, b Session) int { return a.Neighbor.Compare(b.Neighbor) })
}
