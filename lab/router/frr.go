package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berthlb/berth/lab/internal/tool"
	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
)

const (
	zebraPath = "/usr/lib/frr/zebra"
	bgpdPath  = "/usr/lib/frr/bgpd"
	frrUser   = "frr"
)

// PreflightFRR reports whether FRR is installed and the caller is root.
func PreflightFRR() error { return tool.Require(tool.IP, tool.Zebra, tool.BGPD, tool.VTYSH) }

// FRR is an FRR 8 router: zebra (the kernel interface) and bgpd.
type FRR struct {
	base

	run          sync.Mutex // serialises Start, Stop and live changes
	zebra, bgpd  *proc.Process
	frrUID, gid  int
	startTimeout time.Duration
}

// NewFRR returns an FRR router for namespace ns whose daemons runner starts. It starts
// nothing.
func NewFRR(ns netns.NS, runner *proc.Runner, cfg Config) (*FRR, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	u, err := user.Lookup(frrUser)
	if err != nil {
		return nil, fmt.Errorf("router %s: FRR's user: %w (apt-get install frr)", cfg.Name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	f := &FRR{base: base{ns: ns, runner: runner, cfg: cfg}, frrUID: uid, gid: gid, startTimeout: 20 * time.Second}
	return f, nil
}

// Start writes the configuration and starts zebra, then bgpd, returning once bgpd answers.
//
// zebra refuses `-u root`, so it is started as root and drops to user frr by itself,
// keeping the capabilities it needs (started as frr it would have none); hence the
// directory belongs to frr. bgpd runs as root (-S) so it can bind port 179 and set TCP-MD5.
func (f *FRR) Start(ctx context.Context) error {
	f.run.Lock()
	defer f.run.Unlock()
	if f.bgpd != nil && !f.bgpd.Exited() {
		return fmt.Errorf("router %s: already running", f.Name())
	}
	ctx, cancel := context.WithTimeout(ctx, f.startTimeout)
	defer cancel()
	cfg := f.config()
	if err := f.writeConfig(cfg); err != nil {
		return err
	}
	zebra, err := f.runner.Start(ctx, proc.Spec{
		Name: cfg.Name + "-zebra", Path: zebraPath, NetNS: string(f.ns), Dir: cfg.Dir,
		Args: []string{"-P", "0", "-f", f.path("zebra.conf"), "-i", f.path("zebra.pid"),
			"-z", f.path("zserv.api"), "--vty_socket", cfg.Dir, "--log", "stdout"},
	})
	if err != nil {
		return fmt.Errorf("router %s: %w", cfg.Name, err)
	}
	f.zebra = zebra
	if err := waitFile(ctx, f.path("zserv.api"), zebra); err != nil {
		f.stopLocked()
		return fmt.Errorf("router %s: %w", cfg.Name, err)
	}
	bgpd, err := f.runner.Start(ctx, proc.Spec{
		Name: cfg.Name + "-bgpd", Path: bgpdPath, NetNS: string(f.ns), Dir: cfg.Dir,
		Args: []string{"-S", "-P", "0", "-f", f.path("bgpd.conf"), "-i", f.path("bgpd.pid"),
			"-z", f.path("zserv.api"), "--vty_socket", cfg.Dir, "--log", "stdout"},
	})
	if err != nil {
		f.stopLocked()
		return fmt.Errorf("router %s: %w", cfg.Name, err)
	}
	f.bgpd = bgpd
	if err := waitFile(ctx, f.path("bgpd.vty"), bgpd); err != nil {
		f.stopLocked()
		return fmt.Errorf("router %s: %w", cfg.Name, err)
	}
	return nil
}

func (f *FRR) path(name string) string { return filepath.Join(f.cfg.Dir, name) }

// writeConfig renders the configuration files into a directory that frr owns, removing
// the sockets and pid files of a previous run.
func (f *FRR) writeConfig(cfg Config) error {
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("router %s: %w", cfg.Name, err)
	}
	// zebra runs as frr, which must be able to walk down to its directory.
	for p := filepath.Dir(cfg.Dir); p != "/"; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("router %s: %w", cfg.Name, err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("router %s: %s (mode %v) is not searchable by user %s, which zebra runs as",
				cfg.Name, p, st.Mode().Perm(), frrUser)
		}
	}
	bgpd, err := render("bgpd.conf.tmpl", cfg)
	if err != nil {
		return fmt.Errorf("router %s: %w", cfg.Name, err)
	}
	files := map[string]string{"zebra.conf": "hostname " + cfg.Name + "\n", "bgpd.conf": bgpd}
	for name, body := range files {
		if err := os.WriteFile(f.path(name), []byte(body), 0o640); err != nil {
			return fmt.Errorf("router %s: %w", cfg.Name, err)
		}
	}
	for _, stale := range []string{"zserv.api", "zebra.vty", "bgpd.vty", "zebra.pid", "bgpd.pid"} {
		_ = os.Remove(f.path(stale))
	}
	return filepath.WalkDir(cfg.Dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, f.frrUID, f.gid); err != nil {
			return fmt.Errorf("router %s: %w", cfg.Name, err)
		}
		return nil
	})
}

// Stop stops bgpd, then zebra, which removes the routes it installed.
func (f *FRR) Stop(ctx context.Context) error {
	f.run.Lock()
	defer f.run.Unlock()
	return f.stopLocked()
}

func (f *FRR) stopLocked() error {
	var errs []error
	for _, p := range []*proc.Process{f.bgpd, f.zebra} {
		if p != nil && !p.Exited() {
			if err := p.Stop(5 * time.Second); err != nil {
				errs = append(errs, fmt.Errorf("router %s: %w", f.Name(), err))
			}
		}
	}
	f.bgpd, f.zebra = nil, nil
	return errors.Join(errs...)
}

// Restart stops and starts the daemons, with the configuration as changed since.
func (f *FRR) Restart(ctx context.Context) error {
	if err := f.Stop(ctx); err != nil {
		return err
	}
	return f.Start(ctx)
}

// Processes returns the running daemons (zebra, bgpd), for fault tests that kill or pause
// them.
func (f *FRR) Processes() []*proc.Process {
	f.run.Lock()
	defer f.run.Unlock()
	var out []*proc.Process
	for _, p := range []*proc.Process{f.zebra, f.bgpd} {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

func (f *FRR) running() bool { return f.bgpd != nil && !f.bgpd.Exited() }

// AddNeighbor configures a neighbour, live if the router runs.
func (f *FRR) AddNeighbor(ctx context.Context, n Neighbor) error {
	f.run.Lock()
	defer f.run.Unlock()
	if err := f.addNeighbor(n); err != nil {
		return err
	}
	if err := f.persist(); err != nil {
		return err
	}
	if !f.running() {
		return nil
	}
	neighbor, err := render("neighbor", n)
	if err != nil {
		return err
	}
	activate, err := render("activate", n)
	if err != nil {
		return err
	}
	// vtysh applies one line at a time: a neighbour that connects between "remote-as" and
	// "activate" gets an OPEN error (no common family), after which BIRD backs off for tens
	// of seconds. So the neighbour stays shut down until it is complete.
	addr := n.Addr.String()
	cmds := []string{"configure terminal", fmt.Sprintf("router bgp %d", f.cfg.ASN)}
	lines := configLines(neighbor)
	cmds = append(cmds, lines[0], "neighbor "+addr+" shutdown")
	cmds = append(cmds, lines[1:]...)
	cmds = append(cmds, "address-family "+familyOf(n.Addr).AFI+" unicast")
	cmds = append(cmds, configLines(activate)...)
	cmds = append(cmds, "exit-address-family", "no neighbor "+addr+" shutdown")
	if _, err := f.vtysh(ctx, cmds...); err != nil {
		return fmt.Errorf("router %s: add neighbor %s: %w", f.Name(), n.Addr, err)
	}
	return nil
}

// RemoveNeighbor deletes a neighbour, live if the router runs.
func (f *FRR) RemoveNeighbor(ctx context.Context, addr netip.Addr) error {
	f.run.Lock()
	defer f.run.Unlock()
	if err := f.removeNeighbor(addr); err != nil {
		return err
	}
	if err := f.persist(); err != nil {
		return err
	}
	if !f.running() {
		return nil
	}
	if _, err := f.vtysh(ctx, "configure terminal", fmt.Sprintf("router bgp %d", f.cfg.ASN), "no neighbor "+addr.String()); err != nil {
		return fmt.Errorf("router %s: remove neighbor %s: %w", f.Name(), addr, err)
	}
	return nil
}

// persist rewrites bgpd.conf so that a restart keeps live changes.
func (f *FRR) persist() error {
	body, err := render("bgpd.conf.tmpl", f.config())
	if err != nil {
		return fmt.Errorf("router %s: %w", f.Name(), err)
	}
	if err := os.WriteFile(f.path("bgpd.conf"), []byte(body), 0o640); err != nil {
		return fmt.Errorf("router %s: %w", f.Name(), err)
	}
	return os.Lchown(f.path("bgpd.conf"), f.frrUID, f.gid)
}

func configLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// VTYSH runs vtysh commands against this router and returns the output (about 80 ms a
// call); a command FRR rejects is an error.
func (f *FRR) VTYSH(ctx context.Context, cmds ...string) ([]byte, error) {
	f.run.Lock()
	defer f.run.Unlock()
	if !f.running() {
		return nil, fmt.Errorf("router %s: %w", f.Name(), ErrNotRunning)
	}
	return f.vtysh(ctx, cmds...)
}

func (f *FRR) vtysh(ctx context.Context, cmds ...string) ([]byte, error) {
	args := []string{"--vty_socket", f.cfg.Dir}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	cmd := exec.CommandContext(ctx, "vtysh", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	// vtysh reports a rejected command with a line starting with "%", sometimes exit 0.
	if err == nil && (bytes.HasPrefix(out, []byte("%")) || bytes.Contains(out, []byte("\n%"))) {
		err = errors.New("command rejected")
	}
	if err != nil {
		return out, fmt.Errorf("vtysh %q: %w: %s%s", cmds, err, bytes.TrimSpace(out), bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// BGPRoutes reads bgpd's RIB for one family.
func (f *FRR) BGPRoutes(ctx context.Context, fam netns.Family) ([]Route, error) {
	afi := "ipv4"
	if fam == netns.IPv6 {
		afi = "ipv6"
	}
	out, err := f.VTYSH(ctx, "show bgp "+afi+" unicast json")
	if err != nil {
		return nil, err
	}
	rs, err := parseFRRRoutes(out)
	if err != nil {
		return nil, fmt.Errorf("router %s: %w", f.Name(), err)
	}
	return rs, nil
}

// Sessions reads the state of every neighbour's session.
func (f *FRR) Sessions(ctx context.Context) ([]Session, error) {
	out, err := f.VTYSH(ctx, "show bgp neighbors json")
	if err != nil {
		return nil, err
	}
	ss, err := parseFRRSessions(out)
	if err != nil {
		return nil, fmt.Errorf("router %s: %w", f.Name(), err)
	}
	return ss, nil
}

// WaitEstablished waits until the session with addr is established.
func (f *FRR) WaitEstablished(ctx context.Context, addr netip.Addr) error {
	return waitSession(ctx, f.Name(), f.Sessions, addr)
}

func parseFRRRoutes(out []byte) ([]Route, error) {
	var doc struct {
		Routes map[string][]struct {
			Valid     bool   `json:"valid"`
			Best      bool   `json:"bestpath"`
			Multipath bool   `json:"multipath"`
			PeerID    string `json:"peerId"`
			Path      string `json:"path"`
			Nexthops  []struct {
				IP    string `json:"ip"`
				Scope string `json:"scope"`
			} `json:"nexthops"`
		} `json:"routes"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("parse FRR routes: %w", err)
	}
	var rs []Route
	for pfx, paths := range doc.Routes {
		p, err := netip.ParsePrefix(pfx)
		if err != nil {
			return nil, fmt.Errorf("parse FRR routes: %w", err)
		}
		for _, path := range paths {
			if !path.Valid {
				continue
			}
			r := Route{Prefix: p, ASPath: path.Path, Best: path.Best, Multipath: path.Multipath}
			r.Peer, _ = netip.ParseAddr(path.PeerID) // "(unspec)" for local prefixes
			for _, nh := range path.Nexthops {
				if nh.Scope == "link-local" {
					continue
				}
				if a, err := netip.ParseAddr(nh.IP); err == nil && !a.IsUnspecified() {
					r.NextHop = a
					break
				}
			}
			rs = append(rs, r)
		}
	}
	sortRoutes(rs)
	return rs, nil
}

func parseFRRSessions(out []byte) ([]Session, error) {
	var doc map[string]struct {
		State string `json:"bgpState"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("parse FRR neighbors: %w", err)
	}
	var ss []Session
	for addr, n := range doc {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			continue // not a neighbour entry
		}
		ss = append(ss, Session{Neighbor: a, State: n.State, Established: n.State == "Established"})
	}
	sortSessions(ss)
	return ss, nil
}
