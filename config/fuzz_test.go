package config_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/berthlb/berth/config"
)

// The seeds of these fuzz tests are in testdata/fuzz/<FuzzName>/, good and bad inputs
// alike; plain go test runs them.

// FuzzParseRange checks that an accepted range is well formed and that String is its
// canonical form: it parses back to the same range, and renders again identically.
func FuzzParseRange(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		r, err := config.ParseRange(s)
		if err != nil {
			return
		}
		if !r.First.IsValid() || r.First.BitLen() != r.Last.BitLen() {
			t.Fatalf("ParseRange(%q) = %v..%v: not one family", s, r.First, r.Last)
		}
		if r.First.Compare(r.Last) > 0 {
			t.Fatalf("ParseRange(%q) = %v: first > last", s, r)
		}
		if r.First.Zone() != "" || r.Last.Zone() != "" || r.First.Is4In6() || r.Last.Is4In6() {
			t.Fatalf("ParseRange(%q) = %v: zoned or IPv4-mapped", s, r)
		}
		if r.Size().Sign() <= 0 {
			t.Fatalf("ParseRange(%q).Size() = %v, want > 0", s, r.Size())
		}
		str := r.String()
		back, err := config.ParseRange(str)
		if err != nil {
			t.Fatalf("ParseRange(%q).String() = %q, which does not parse: %v", s, str, err)
		}
		if back != r {
			t.Fatalf("ParseRange(%q) = %#v, but ParseRange(%q) = %#v", s, r, str, back)
		}
		if again := back.String(); again != str {
			t.Fatalf("String() is not canonical: %q renders %q, which renders %q", s, str, again)
		}
		// A CIDR renders as itself, in netip's canonical form.
		if strings.Contains(s, "/") {
			if want := netip.MustParsePrefix(s).String(); str != want {
				t.Fatalf("ParseRange(%q).String() = %q, want %q", s, str, want)
			}
		}
		// A range renders as a CIDR exactly when it is one.
		if p, err := netip.ParsePrefix(str); err == nil {
			if p.Masked() != p || !r.Contains(p.Addr()) {
				t.Fatalf("ParseRange(%q).String() = %q, not the range's network", s, str)
			}
		} else if !strings.Contains(str, "-") {
			t.Fatalf("ParseRange(%q).String() = %q, neither a CIDR nor a range", s, str)
		}
	})
}

// FuzzParseCommunity checks that an accepted community survives formatting as hi:lo and
// parsing again, and that hi:lo is canonical.
func FuzzParseCommunity(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		c, err := config.ParseCommunity(s)
		if err != nil {
			return
		}
		str := fmt.Sprintf("%d:%d", c>>16, c&0xFFFF)
		back, err := config.ParseCommunity(str)
		if err != nil {
			t.Fatalf("ParseCommunity(%q) = %#x, but %q does not parse: %v", s, c, str, err)
		}
		if back != c {
			t.Fatalf("ParseCommunity(%q) = %#x, but ParseCommunity(%q) = %#x", s, c, str, back)
		}
		// Anything but a well-known name is ASN:value, which is str up to leading zeros.
		if !wellKnown[s] {
			hi, lo, _ := strings.Cut(s, ":")
			if got := trimZeros(hi) + ":" + trimZeros(lo); got != str {
				t.Fatalf("ParseCommunity(%q) = %#x, rendered %q, want %q", s, c, str, got)
			}
		}
	})
}

var wellKnown = map[string]bool{
	"no-export": true, "no-advertise": true, "no-export-subconfed": true, "no-peer": true, "blackhole": true,
}

// trimZeros drops the leading zeros of a decimal number.
func trimZeros(n string) string {
	if n = strings.TrimLeft(n, "0"); n == "" {
		return "0"
	}
	return n
}

// FuzzParseLargeCommunity checks that an accepted large community survives String and
// parsing again, and that String is canonical.
func FuzzParseLargeCommunity(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		c, err := config.ParseLargeCommunity(s)
		if err != nil {
			return
		}
		str := c.String()
		back, err := config.ParseLargeCommunity(str)
		if err != nil {
			t.Fatalf("ParseLargeCommunity(%q) = %v, but %q does not parse: %v", s, c, str, err)
		}
		if back != c {
			t.Fatalf("ParseLargeCommunity(%q) = %#v, but ParseLargeCommunity(%q) = %#v", s, c, str, back)
		}
		if again := back.String(); again != str {
			t.Fatalf("String() is not canonical: %q renders %q, which renders %q", s, str, again)
		}
	})
}
