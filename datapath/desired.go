package datapath

import (
	"fmt"
	"net/netip"
	"slices"
)

// Protocol is an IP protocol number a Service port can use.
type Protocol uint8

// The protocols of Service ports.
const (
	TCP  Protocol = 6
	UDP  Protocol = 17
	SCTP Protocol = 132
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	case SCTP:
		return "SCTP"
	}
	return fmt.Sprintf("protocol %d", uint8(p))
}

// Frontend is one Service port on an LB IP.
type Frontend struct {
	IP       netip.Addr
	Protocol Protocol
	Port     uint16
}

// Desired is what the table must do.
type Desired struct {
	// IPs are the LB IPs whose front door is closed but for Open.
	IPs []netip.Addr
	// Open are the Service ports that pass; their IPs count as in IPs.
	Open []Frontend
	// Proxy are the Service ports of Proxy-mode IPs with their backends; they count as in
	// Open.
	Proxy []ProxyFrontend
}

// normalized is a Desired with unmapped addresses, sorted and without duplicates, split
// by family: the form the table is built from and compared in.
type normalized struct {
	ips4, ips6         []netip.Addr
	open4, open6       []Frontend
	proxy4, proxy6     []ProxyFrontend
	masq4, masq6       []Frontend
	allowed4, allowed6 []allowed // source ranges of restricted frontends
}

// normalize validates d and puts it in canonical form.
func normalize(d Desired) (normalized, error) {
	var n normalized
	add := func(a netip.Addr) error {
		a = a.Unmap()
		if !a.IsValid() || a.IsUnspecified() || a.Zone() != "" {
			return fmt.Errorf("datapath: LB IP %v: want a unicast address without zone", a)
		}
		if a.Is4() {
			n.ips4 = append(n.ips4, a)
		} else {
			n.ips6 = append(n.ips6, a)
		}
		return nil
	}
	for _, a := range d.IPs {
		if err := add(a); err != nil {
			return n, err
		}
	}
	// A Proxy frontend is open, unless restricted to source ranges: then it is closed
	// but for them, even when Open lists it too.
	restricted := map[Frontend]bool{}
	open := slices.Clone(d.Open)
	for _, pf := range d.Proxy {
		if err := validFrontend(pf.Frontend); err != nil {
			return n, err
		}
		if pf.RestrictSources {
			restricted[pf.unmapped()] = true
			if err := add(pf.IP); err != nil {
				return n, err
			}
			continue
		}
		open = append(open, pf.Frontend)
	}
	open = slices.DeleteFunc(open, func(f Frontend) bool { return restricted[f.unmapped()] })
	for _, f := range open {
		if err := validFrontend(f); err != nil {
			return n, err
		}
		if err := add(f.IP); err != nil {
			return n, err
		}
		f = f.unmapped()
		if f.IP.Is4() {
			n.open4 = append(n.open4, f)
		} else {
			n.open6 = append(n.open6, f)
		}
	}
	if err := normalizeProxy(d, &n); err != nil {
		return n, err
	}
	for _, s := range []*[]netip.Addr{&n.ips4, &n.ips6} {
		slices.SortFunc(*s, netip.Addr.Compare)
		*s = slices.Compact(*s)
	}
	for _, s := range []*[]Frontend{&n.open4, &n.open6} {
		slices.SortFunc(*s, compareFrontend)
		*s = slices.Compact(*s)
	}
	return n, nil
}

// validFrontend checks a frontend's protocol and port.
func validFrontend(f Frontend) error {
	if f.Protocol != TCP && f.Protocol != UDP && f.Protocol != SCTP {
		return fmt.Errorf("datapath: %v port %d: %v is not TCP, UDP or SCTP", f.IP, f.Port, f.Protocol)
	}
	if f.Port == 0 {
		return fmt.Errorf("datapath: %v %v: port 0", f.IP, f.Protocol)
	}
	return nil
}

// unmapped is f with an IPv4-mapped IPv6 address as IPv4.
func (f Frontend) unmapped() Frontend {
	f.IP = f.IP.Unmap()
	return f
}

func compareFrontend(a, b Frontend) int {
	if c := a.IP.Compare(b.IP); c != 0 {
		return c
	}
	if a.Protocol != b.Protocol {
		return int(a.Protocol) - int(b.Protocol)
	}
	return int(a.Port) - int(b.Port)
}

// frontendKey is a Frontend as the key of a set typed `addr . inet_proto . inet_service`:
// each field padded to four bytes, the port in network order.
func frontendKey(f Frontend) []byte {
	a := f.IP.AsSlice()
	k := make([]byte, len(a)+8)
	copy(k, a)
	k[len(a)] = byte(f.Protocol)
	k[len(a)+4], k[len(a)+5] = byte(f.Port>>8), byte(f.Port)
	return k
}
