package netns

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
)

// End is one end of a veth pair: a device name inside a namespace, with an optional fixed
// MAC address (fixed MACs make packet assertions easy).
type End struct {
	NS   NS
	Name string
	MAC  net.HardwareAddr
}

// Veth creates a veth pair with each end directly inside its namespace (never on the host)
// and brings both ends up.
func Veth(ctx context.Context, a, b End) error {
	if len(a.Name) > 15 || len(b.Name) > 15 {
		return fmt.Errorf("veth %s/%s: interface names are limited to 15 bytes", a.Name, b.Name)
	}
	args := []string{"link", "add", "name", a.Name, "netns", string(a.NS)}
	if a.MAC != nil {
		args = append(args, "address", a.MAC.String())
	}
	args = append(args, "type", "veth", "peer", "name", b.Name, "netns", string(b.NS))
	if b.MAC != nil {
		args = append(args, "address", b.MAC.String())
	}
	if _, err := run(ctx, "ip", args...); err != nil {
		return fmt.Errorf("veth %s:%s - %s:%s: %w", a.NS, a.Name, b.NS, b.Name, err)
	}
	for _, e := range []End{a, b} {
		if err := e.NS.Batch(ctx, "link set dev "+e.Name+" up"); err != nil {
			return fmt.Errorf("veth %s:%s: %w", e.NS, e.Name, err)
		}
	}
	return nil
}

// AddBridge creates a bridge with STP off, no forwarding delay and multicast snooping off
// (so solicited-node multicast always floods, as on a dumb switch), and brings it up.
func (ns NS) AddBridge(ctx context.Context, name string) error {
	err := ns.Batch(ctx,
		"link add name "+name+" type bridge stp_state 0 forward_delay 0 mcast_snooping 0",
		"link set dev "+name+" up")
	if err != nil {
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	return nil
}

// AttachToBridge enslaves dev to bridge br.
func (ns NS) AttachToBridge(ctx context.Context, dev, br string) error {
	if err := ns.Batch(ctx, "link set dev "+dev+" master "+br+" up"); err != nil {
		return fmt.Errorf("attach %s to bridge %s: %w", dev, br, err)
	}
	return nil
}

// AddAddr adds an address to dev; IPv6 addresses skip duplicate address detection.
func (ns NS) AddAddr(ctx context.Context, dev string, p netip.Prefix) error {
	cmd := "addr add " + p.String() + " dev " + dev
	if p.Addr().Is6() {
		cmd += " nodad"
	}
	if err := ns.Batch(ctx, cmd); err != nil {
		return fmt.Errorf("address %s on %s: %w", p, dev, err)
	}
	return nil
}

// SetLinkUp sets dev up or down, for link-loss faults.
func (ns NS) SetLinkUp(ctx context.Context, dev string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	if err := ns.Batch(ctx, "link set dev "+dev+" "+state); err != nil {
		return fmt.Errorf("link %s %s: %w", dev, state, err)
	}
	return nil
}

// Link is what the lab reads back about a device.
type Link struct {
	Name  string
	Index int
	MAC   net.HardwareAddr
	Up    bool // administratively up
	// Master is the bridge the device is attached to, if any.
	Master string
}

// Links lists the namespace's devices.
func (ns NS) Links(ctx context.Context) ([]Link, error) {
	out, err := ns.IP(ctx, "-j", "link", "show")
	if err != nil {
		return nil, err
	}
	var raw []struct {
		Index   int      `json:"ifindex"`
		Name    string   `json:"ifname"`
		Flags   []string `json:"flags"`
		Address string   `json:"address"`
		Master  string   `json:"master"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("netns %s: links: %w", ns, err)
	}
	links := make([]Link, 0, len(raw))
	for _, r := range raw {
		l := Link{Name: r.Name, Index: r.Index, Master: r.Master}
		l.MAC, _ = net.ParseMAC(r.Address)
		for _, f := range r.Flags {
			if f == "UP" {
				l.Up = true
			}
		}
		links = append(links, l)
	}
	return links, nil
}

// Addrs lists the global-scope addresses of dev.
func (ns NS) Addrs(ctx context.Context, dev string) ([]netip.Prefix, error) {
	out, err := ns.IP(ctx, "-j", "addr", "show", "dev", dev, "scope", "global")
	if err != nil {
		return nil, err
	}
	var raw []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("netns %s: addresses of %s: %w", ns, dev, err)
	}
	var addrs []netip.Prefix
	for _, r := range raw {
		for _, a := range r.AddrInfo {
			if a.Local == "" {
				continue // ip prints {} for each address the scope filter dropped
			}
			ip, err := netip.ParseAddr(a.Local)
			if err != nil {
				return nil, fmt.Errorf("netns %s: address of %s: %w", ns, dev, err)
			}
			addrs = append(addrs, netip.PrefixFrom(ip, a.PrefixLen))
		}
	}
	return addrs, nil
}
