package membership

import (
	"fmt"
	"net"
	"slices"
	"strings"
)

// UpInterfaces returns the sorted names of this host's interfaces that are
// administratively up and have carrier, and match any of patterns: an exact name, or a
// prefix ending in "*". No patterns means every interface. Loopback never counts: ARP and
// NDP are not answered there.
func UpInterfaces(patterns []string) ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	links := make([]link, 0, len(ifs))
	for _, i := range ifs {
		links = append(links, link{Name: i.Name, Flags: i.Flags})
	}
	return matchUp(links, patterns)
}

// link is the part of net.Interface the matcher reads.
type link struct {
	Name  string
	Flags net.Flags
}

// matchUp is UpInterfaces over given links.
func matchUp(links []link, patterns []string) ([]string, error) {
	if err := validPatterns(patterns); err != nil {
		return nil, err
	}
	var names []string
	for _, l := range links {
		if l.Flags&net.FlagLoopback != 0 || !usable(l.Flags) {
			continue
		}
		if len(patterns) == 0 || slices.ContainsFunc(patterns, func(p string) bool { return matchName(p, l.Name) }) {
			names = append(names, l.Name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// usable means up and with carrier: IFF_RUNNING is set when the kernel's operstate is up
// (or unknown, as for some virtual links that have no carrier to report).
func usable(f net.Flags) bool {
	return f&net.FlagUp != 0 && f&net.FlagRunning != 0
}

// matchName reports whether name is pattern, or starts with pattern's prefix before a
// trailing "*".
func matchName(pattern, name string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(name, prefix)
	}
	return name == pattern
}

// validPatterns rejects empty patterns and "*" anywhere but at the end, which would
// otherwise silently match nothing.
func validPatterns(patterns []string) error {
	for _, p := range patterns {
		if p == "" {
			return fmt.Errorf("interface pattern %q: empty", p)
		}
		if i := strings.IndexByte(p, '*'); i >= 0 && i != len(p)-1 {
			return fmt.Errorf("interface pattern %q: \"*\" only at the end", p)
		}
	}
	return nil
}
