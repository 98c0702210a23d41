package config

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"strings"
)

// Family is an IP address family.
type Family int

// Address families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// FamilyOf returns the family of a.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// Range is an inclusive range of addresses of one family.
type Range struct {
	First, Last netip.Addr
}

// Family returns the range's address family.
func (r Range) Family() Family { return FamilyOf(r.First) }

// Contains reports whether a is in r.
func (r Range) Contains(a netip.Addr) bool {
	return r.First.BitLen() == a.BitLen() && r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

// Overlaps reports whether r and o share an address.
func (r Range) Overlaps(o Range) bool {
	return r.First.BitLen() == o.First.BitLen() && r.First.Compare(o.Last) <= 0 && o.First.Compare(r.Last) <= 0
}

// Size returns the number of addresses in r.
func (r Range) Size() *big.Int {
	n := new(big.Int).Sub(addrInt(r.Last), addrInt(r.First))
	return n.Add(n, big.NewInt(1))
}

// String returns the range as a CIDR when it is exactly one, else as first-last.
func (r Range) String() string {
	if p, ok := r.prefix(); ok {
		return p.String()
	}
	return r.First.String() + "-" + r.Last.String()
}

// prefix returns r as a CIDR when it is exactly one.
func (r Range) prefix() (netip.Prefix, bool) {
	size := r.Size()
	bits := size.BitLen() - 1
	if bits < 0 || new(big.Int).Lsh(big.NewInt(1), uint(bits)).Cmp(size) != 0 {
		return netip.Prefix{}, false
	}
	p := netip.PrefixFrom(r.First, r.First.BitLen()-bits)
	return p, p.Masked().Addr() == r.First
}

func addrInt(a netip.Addr) *big.Int {
	b := a.AsSlice()
	return new(big.Int).SetBytes(b)
}

var errEmptyRange = errors.New("empty address")

// ParseRange parses a CIDR ("198.18.2.192/26") or an inclusive range of one family
// ("198.18.2.10-198.18.2.20", "2001:db8::1-2001:db8::ff"). A CIDR must be its network
// address; a range's first address must not be greater than its last.
func ParseRange(s string) (Range, error) {
	if s == "" {
		return Range{}, errEmptyRange
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Range{}, fmt.Errorf("%q is not a CIDR: %w", s, err)
		}
		if p.Addr().Zone() != "" || p.Addr().Is4In6() {
			return Range{}, fmt.Errorf("%q: zoned and IPv4-mapped addresses are not allowed", s)
		}
		if p.Masked() != p {
			return Range{}, fmt.Errorf("%q has host bits set: use %s", s, p.Masked())
		}
		return Range{First: p.Addr(), Last: lastAddr(p)}, nil
	}
	first, last, ok := strings.Cut(s, "-")
	if !ok {
		return Range{}, fmt.Errorf("%q is neither a CIDR nor a range first-last", s)
	}
	a, err := parseAddr(first)
	if err != nil {
		return Range{}, fmt.Errorf("range %q: %w", s, err)
	}
	b, err := parseAddr(last)
	if err != nil {
		return Range{}, fmt.Errorf("range %q: %w", s, err)
	}
	if a.BitLen() != b.BitLen() {
		return Range{}, fmt.Errorf("range %q mixes IPv4 and IPv6", s)
	}
	if a.Compare(b) > 0 {
		return Range{}, fmt.Errorf("range %q: first address is greater than last", s)
	}
	return Range{First: a, Last: b}, nil
}

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" || a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("%q: zoned and IPv4-mapped addresses are not allowed", s)
	}
	return a, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// buggyIPv4 counts the addresses in an IPv4 range that end in .0 or .255.
func buggyIPv4(r Range) int64 {
	a, b := v4int(r.First), v4int(r.Last)
	return endingIn(b, 0) - endingIn(a-1, 0) + endingIn(b, 255) - endingIn(a-1, 255)
}

// endingIn counts x in [0, n] whose last octet is octet.
func endingIn(n, octet int64) int64 {
	if n < octet {
		return 0
	}
	return (n-octet)/256 + 1
}

func v4int(a netip.Addr) int64 {
	b := a.As4()
	return int64(b[0])<<24 | int64(b[1])<<16 | int64(b[2])<<8 | int64(b[3])
}

// IsBuggyIPv4 reports whether a is an IPv4 address ending in .0 or .255, which some
// clients treat as network or broadcast addresses.
func IsBuggyIPv4(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	last := a.As4()[3]
	return last == 0 || last == 255
}
