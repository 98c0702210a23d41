// Package router runs the lab's top-of-rack routers, FRR (zebra + bgpd) and BIRD 2, each
// inside its own network namespace, with configuration written from Go templates. It adds
// and removes BGP neighbours live, reads the BGP RIB and the kernel routing table, and stops
// and restarts the daemons for fault tests.
package router

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
)

// Neighbor is a BGP peer of the router, usually a node's speaker.
type Neighbor struct {
	Addr netip.Addr
	ASN  uint32
	// Password turns on TCP-MD5 (RFC 2385).
	Password string
	// Passive waits for the neighbour to connect instead of dialling it.
	Passive bool
}

// Config is a router's configuration.
type Config struct {
	// Name names the router's processes and log files, and is its hostname.
	Name string
	// Dir holds the configuration, sockets and pid files.
	Dir      string
	ASN      uint32
	RouterID netip.Addr
	// Neighbors are the initial neighbours; AddNeighbor and RemoveNeighbor change them.
	Neighbors []Neighbor
	// Originate lists prefixes the router announces to every neighbour.
	Originate []netip.Prefix
}

func (c Config) validate() error {
	if c.Name == "" || strings.ContainsAny(c.Name, " /") {
		return fmt.Errorf("router name %q: want a word", c.Name)
	}
	if !filepath.IsAbs(c.Dir) {
		return fmt.Errorf("router %s: directory %q is not absolute", c.Name, c.Dir)
	}
	if c.ASN == 0 {
		return fmt.Errorf("router %s: ASN missing", c.Name)
	}
	if !c.RouterID.Is4() {
		return fmt.Errorf("router %s: router ID %v is not an IPv4 address", c.Name, c.RouterID)
	}
	seen := map[netip.Addr]bool{}
	for _, n := range c.Neighbors {
		if err := n.validate(); err != nil {
			return fmt.Errorf("router %s: %w", c.Name, err)
		}
		if seen[n.Addr] {
			return fmt.Errorf("router %s: neighbor %s twice", c.Name, n.Addr)
		}
		seen[n.Addr] = true
	}
	return nil
}

func (n Neighbor) validate() error {
	if !n.Addr.IsValid() || n.Addr.Zone() != "" {
		return fmt.Errorf("neighbor %v: invalid address", n.Addr)
	}
	if n.ASN == 0 {
		return fmt.Errorf("neighbor %s: ASN missing", n.Addr)
	}
	// Both daemons take the password as one word in their configuration language.
	if strings.ContainsAny(n.Password, " \t\n\"'\\!#;{}") {
		return fmt.Errorf("neighbor %s: password must be one word without quotes or comment characters", n.Addr)
	}
	return nil
}

// Route is a path in a router's BGP RIB.
type Route struct {
	Prefix  netip.Prefix
	NextHop netip.Addr
	// Peer is the neighbour the path came from; invalid for the router's own prefixes.
	Peer   netip.Addr
	ASPath string
	// Communities in "ASN:value" form (BIRD only; FRR's table view leaves them out).
	Communities []string
	// Best is the path the router selected; with ECMP, Multipath marks the others used.
	Best, Multipath bool
}

func (r Route) String() string {
	s := fmt.Sprintf("%s via %s from %s as-path [%s]", r.Prefix, r.NextHop, r.Peer, r.ASPath)
	if r.Best {
		s += " best"
	}
	if r.Multipath {
		s += " multipath"
	}
	return s
}

// Session is the state of the BGP session with one neighbour.
type Session struct {
	Neighbor    netip.Addr
	State       string // the daemon's word: "Established", "Active", "Connect", "Passive"…
	Established bool
}

// family is one address family as the templates need it.
type family struct {
	N   int    // 4 or 6
	AFI string // "ipv4" or "ipv6"
}

var families = []family{{4, "ipv4"}, {6, "ipv6"}}

func familyOf(a netip.Addr) family {
	if a.Is4() {
		return families[0]
	}
	return families[1]
}

//go:embed templates/*.tmpl
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"families": func() []family { return families },
	"familyOf": familyOf,
	"originated": func(c Config, f family) []netip.Prefix {
		var out []netip.Prefix
		for _, p := range c.Originate {
			if familyOf(p.Addr()) == f {
				out = append(out, p)
			}
		}
		return out
	},
	"neighborsOf": func(c Config, f family) []Neighbor {
		var out []Neighbor
		for _, n := range c.Neighbors {
			if familyOf(n.Addr) == f {
				out = append(out, n)
			}
		}
		return out
	},
	"protoName": birdProtocol,
}).ParseFS(templateFS, "templates/*.tmpl"))

func render(name string, data any) (string, error) {
	var b strings.Builder
	if err := templates.ExecuteTemplate(&b, name, data); err != nil {
		return "", fmt.Errorf("render %s: %w", name, err)
	}
	return b.String(), nil
}

// base holds what both routers share: the namespace, the configuration and the kernel
// route helpers.
type base struct {
	ns     netns.NS
	runner *proc.Runner

	mu  sync.Mutex
	cfg Config
}

// NS is the router's namespace.
func (b *base) NS() netns.NS { return b.ns }

// Name is the router's name.
func (b *base) Name() string { return b.cfg.Name }

// ASN is the router's AS number.
func (b *base) ASN() uint32 { return b.cfg.ASN }

// RouterID is the router's BGP identifier.
func (b *base) RouterID() netip.Addr { return b.cfg.RouterID }

// Neighbors returns the configured neighbours.
func (b *base) Neighbors() []Neighbor {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.cfg.Neighbors)
}

func (b *base) config() Config {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.cfg
	c.Neighbors = slices.Clone(c.Neighbors)
	c.Originate = slices.Clone(c.Originate)
	return c
}

// addNeighbor records n in the configuration, failing if the address is taken.
func (b *base) addNeighbor(n Neighbor) error {
	if err := n.validate(); err != nil {
		return fmt.Errorf("router %s: %w", b.cfg.Name, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, have := range b.cfg.Neighbors {
		if have.Addr == n.Addr {
			return fmt.Errorf("router %s: neighbor %s: %w", b.cfg.Name, n.Addr, ErrNeighborExists)
		}
	}
	b.cfg.Neighbors = append(b.cfg.Neighbors, n)
	return nil
}

func (b *base) removeNeighbor(addr netip.Addr) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := slices.IndexFunc(b.cfg.Neighbors, func(n Neighbor) bool { return n.Addr == addr })
	if i < 0 {
		return fmt.Errorf("router %s: neighbor %s: %w", b.cfg.Name, addr, ErrNoNeighbor)
	}
	b.cfg.Neighbors = slices.Delete(b.cfg.Neighbors, i, i+1)
	return nil
}

// ErrNeighborExists means AddNeighbor was given an address already configured.
var ErrNeighborExists = errors.New("neighbor already configured")

// ErrNoNeighbor means RemoveNeighbor was given an address not configured.
var ErrNoNeighbor = errors.New("no such neighbor")

// ErrNotRunning means the router's daemons are not running.
var ErrNotRunning = errors.New("router not running")

// KernelRoutes reads the router namespace's main routing table.
func (b *base) KernelRoutes(ctx context.Context, f netns.Family) ([]netns.Route, error) {
	return b.ns.Routes(ctx, f)
}

// AddStaticRoute installs a kernel route (proto static) in the router's namespace. It
// bypasses the daemons, so it survives their restarts.
func (b *base) AddStaticRoute(ctx context.Context, dst netip.Prefix, via netip.Addr) error {
	if err := b.ns.AddRoute(ctx, dst, via); err != nil {
		return fmt.Errorf("router %s: %w", b.cfg.Name, err)
	}
	return nil
}

// DelStaticRoute deletes a route AddStaticRoute installed.
func (b *base) DelStaticRoute(ctx context.Context, dst netip.Prefix) error {
	if err := b.ns.DelRoute(ctx, dst); err != nil {
		return fmt.Errorf("router %s: %w", b.cfg.Name, err)
	}
	return nil
}

// pollInterval paces the waits: `ip -j route` costs about 3 ms.
const pollInterval = 10 * time.Millisecond

// WaitRoute waits until the kernel table holds a route to exactly dst for which match
// (nil: any) is true, and returns it. On timeout the error shows the routes to dst last seen.
func (b *base) WaitRoute(ctx context.Context, dst netip.Prefix, match func(netns.Route) bool) (netns.Route, error) {
	var last []netns.Route
	for {
		rs, err := b.routesTo(ctx, dst)
		if err == nil {
			last = rs
			for _, r := range rs {
				if match == nil || match(r) {
					return r, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return netns.Route{}, fmt.Errorf("router %s: wait for route %s: last seen %v: %w", b.cfg.Name, dst, last, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// WaitRouteGone waits until the kernel table has no route to exactly dst.
func (b *base) WaitRouteGone(ctx context.Context, dst netip.Prefix) error {
	var last []netns.Route
	for {
		rs, err := b.routesTo(ctx, dst)
		if err == nil && len(rs) == 0 {
			return nil
		}
		last = rs
		select {
		case <-ctx.Done():
			return fmt.Errorf("router %s: wait for route %s to go: last seen %v: %w", b.cfg.Name, dst, last, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

func (b *base) routesTo(ctx context.Context, dst netip.Prefix) ([]netns.Route, error) {
	rs, err := b.ns.Routes(ctx, netns.FamilyOf(dst.Addr()))
	if err != nil {
		return nil, err
	}
	var out []netns.Route
	for _, r := range rs {
		if r.Dst == dst {
			out = append(out, r)
		}
	}
	return out, nil
}

// waitSession polls sessions until the neighbour's session is established.
func waitSession(ctx context.Context, name string, sessions func(context.Context) ([]Session, error), addr netip.Addr) error {
	var last Session
	for {
		ss, err := sessions(ctx)
		if err == nil {
			for _, s := range ss {
				if s.Neighbor == addr {
					if s.Established {
						return nil
					}
					last = s
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("router %s: wait for session with %s: last state %q: %w", name, addr, last.State, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitFile waits until path exists, failing early if p exits.
func waitFile(ctx context.Context, path string, p *proc.Process) error {
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited before creating %s: %v\n%s", p.Name(), path, p.State(), p.Log())
		case <-ctx.Done():
			return fmt.Errorf("wait for %s from %s: %w\n%s", path, p.Name(), ctx.Err(), p.Log())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
