package netns

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/berthlb/berth/config"
)

// Family selects IPv4 or IPv6; it is berth's address family.
type Family = config.Family

// The address families.
const (
	IPv4 = config.IPv4
	IPv6 = config.IPv6
)

// FamilyOf returns the family of a.
func FamilyOf(a netip.Addr) Family { return config.FamilyOf(a) }

// familyFlag is ip(8)'s option for the family.
func familyFlag(f Family) string {
	if f == IPv6 {
		return "-6"
	}
	return "-4"
}

// Route is one entry of a kernel routing table.
type Route struct {
	Dst netip.Prefix
	// Type is "unicast" unless the kernel says otherwise ("blackhole", "unreachable"…).
	Type string
	// Gateways holds the next hops; more than one for an ECMP route, none for a
	// directly connected one.
	Gateways []netip.Addr
	Dev      string
	// Protocol is who installed it: "kernel", "static", "bgp" (zebra), "bird", "boot"…
	Protocol string
	Metric   int
}

func (r Route) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", r.Dst)
	if r.Type != "unicast" {
		fmt.Fprintf(&b, " %s", r.Type)
	}
	for _, g := range r.Gateways {
		fmt.Fprintf(&b, " via %s", g)
	}
	if r.Dev != "" {
		fmt.Fprintf(&b, " dev %s", r.Dev)
	}
	fmt.Fprintf(&b, " proto %s metric %d", r.Protocol, r.Metric)
	return b.String()
}

// AddRoute installs (or replaces) a route to dst via gw with protocol "static", so it is
// told apart from routes the lab's routers install.
func (ns NS) AddRoute(ctx context.Context, dst netip.Prefix, gw netip.Addr) error {
	// ip -batch takes no options per line; ip infers the family from the addresses.
	cmd := fmt.Sprintf("route replace %s via %s proto static", dst, gw)
	if err := ns.Batch(ctx, cmd); err != nil {
		return fmt.Errorf("route %s via %s: %w", dst, gw, err)
	}
	return nil
}

// AddDefaultRoute installs (or replaces) the default route of gw's family.
func (ns NS) AddDefaultRoute(ctx context.Context, gw netip.Addr) error {
	cmd := fmt.Sprintf("route replace default via %s", gw)
	if err := ns.Batch(ctx, cmd); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	return nil
}

// DelRoute deletes the route to dst.
func (ns NS) DelRoute(ctx context.Context, dst netip.Prefix) error {
	cmd := fmt.Sprintf("route del %s", dst)
	if err := ns.Batch(ctx, cmd); err != nil {
		return fmt.Errorf("delete route %s: %w", dst, err)
	}
	return nil
}

// Routes reads the main routing table of one family.
func (ns NS) Routes(ctx context.Context, f Family) ([]Route, error) {
	out, err := ns.IP(ctx, "-j", familyFlag(f), "route", "show", "table", "main")
	if err != nil {
		return nil, err
	}
	rs, err := ParseRoutes(out, f)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", ns, err)
	}
	return rs, nil
}

// ParseRoutes parses the output of `ip -j route show`.
func ParseRoutes(out []byte, f Family) ([]Route, error) {
	type nexthop struct {
		Gateway string `json:"gateway"`
		Dev     string `json:"dev"`
	}
	var raw []struct {
		Type     string    `json:"type"`
		Dst      string    `json:"dst"`
		Gateway  string    `json:"gateway"`
		Dev      string    `json:"dev"`
		Protocol string    `json:"protocol"`
		Metric   int       `json:"metric"`
		Nexthops []nexthop `json:"nexthops"`
	}
	if len(strings.TrimSpace(string(out))) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("parse routes: %w", err)
	}
	routes := make([]Route, 0, len(raw))
	for _, r := range raw {
		dst, err := parseDst(r.Dst, f)
		if err != nil {
			return nil, err
		}
		rt := Route{Dst: dst, Type: r.Type, Dev: r.Dev, Protocol: r.Protocol, Metric: r.Metric}
		if rt.Type == "" {
			rt.Type = "unicast"
		}
		if rt.Protocol == "" {
			rt.Protocol = "boot"
		}
		hops := r.Nexthops
		if r.Gateway != "" {
			hops = append([]nexthop{{Gateway: r.Gateway, Dev: r.Dev}}, hops...)
		}
		for _, h := range hops {
			if h.Gateway == "" {
				continue
			}
			gw, err := netip.ParseAddr(h.Gateway)
			if err != nil {
				return nil, fmt.Errorf("parse route %s: gateway: %w", r.Dst, err)
			}
			rt.Gateways = append(rt.Gateways, gw)
			if rt.Dev == "" {
				rt.Dev = h.Dev
			}
		}
		routes = append(routes, rt)
	}
	return routes, nil
}

// parseDst reads ip's dst: "default", a bare address (a host route) or a prefix.
func parseDst(s string, f Family) (netip.Prefix, error) {
	switch {
	case s == "default" && f == IPv6:
		return netip.MustParsePrefix("::/0"), nil
	case s == "default":
		return netip.MustParsePrefix("0.0.0.0/0"), nil
	case strings.Contains(s, "/"):
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("parse route dst %q: %w", s, err)
		}
		return p, nil
	default:
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("parse route dst %q: %w", s, err)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
}
