package config_test

import (
	"math/big"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

func TestParseRange(t *testing.T) {
	rng := func(first, last string) config.Range {
		return config.Range{First: netip.MustParseAddr(first), Last: netip.MustParseAddr(last)}
	}
	tests := []struct {
		name    string
		in      string
		want    config.Range
		wantErr string // substring of the error; empty for success
	}{
		{name: "IPv4 CIDR", in: "198.18.2.192/26", want: rng("198.18.2.192", "198.18.2.255")},
		{name: "IPv4 host CIDR", in: "198.18.3.7/32", want: rng("198.18.3.7", "198.18.3.7")},
		{name: "IPv4 everything", in: "0.0.0.0/0", want: rng("0.0.0.0", "255.255.255.255")},
		{name: "IPv6 CIDR", in: "2001:db8:2::/64", want: rng("2001:db8:2::", "2001:db8:2::ffff:ffff:ffff:ffff")},
		{name: "IPv6 everything", in: "::/0", want: rng("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")},
		{name: "IPv4 range", in: "198.18.2.10-198.18.2.20", want: rng("198.18.2.10", "198.18.2.20")},
		{name: "IPv4 single-address range", in: "10.0.0.1-10.0.0.1", want: rng("10.0.0.1", "10.0.0.1")},
		{name: "IPv4 range across octets", in: "10.0.0.255-10.0.1.0", want: rng("10.0.0.255", "10.0.1.0")},
		{name: "IPv6 range", in: "2001:db8:3::10-2001:db8:3::1:0", want: rng("2001:db8:3::10", "2001:db8:3::1:0")},
		// 0x10 > 0x9 although "10" < "9" as strings.
		{name: "IPv6 range ordered numerically", in: "2001:db8::9-2001:db8::10", want: rng("2001:db8::9", "2001:db8::10")},

		{name: "empty", in: "", wantErr: "empty"},
		{name: "single address", in: "10.0.0.1", wantErr: "neither a CIDR nor a range"},
		{name: "garbage", in: "pool", wantErr: "neither a CIDR nor a range"},
		{name: "CIDR with host bits", in: "198.18.2.193/26", wantErr: "use 198.18.2.192/26"},
		{name: "IPv6 CIDR with host bits", in: "2001:db8::1/64", wantErr: "use 2001:db8::/64"},
		{name: "CIDR bits too long", in: "10.0.0.0/33", wantErr: "not a CIDR"},
		{name: "CIDR without bits", in: "10.0.0.0/", wantErr: "not a CIDR"},
		{name: "IPv4-mapped CIDR", in: "::ffff:10.0.0.0/120", wantErr: "IPv4-mapped"},
		{name: "first greater than last", in: "10.0.0.20-10.0.0.10", wantErr: "first address is greater than last"},
		{name: "IPv6 first greater than last", in: "2001:db8::10-2001:db8::9", wantErr: "first address is greater than last"},
		{name: "mixed families", in: "10.0.0.1-2001:db8::1", wantErr: "mixes IPv4 and IPv6"},
		{name: "missing last", in: "10.0.0.1-", wantErr: "range"},
		{name: "missing first", in: "-10.0.0.1", wantErr: "range"},
		{name: "three addresses", in: "10.0.0.1-10.0.0.2-10.0.0.3", wantErr: "range"},
		{name: "zoned address", in: "fe80::1%eth0-fe80::2%eth0", wantErr: "zoned"},
		{name: "IPv4-mapped range", in: "::ffff:10.0.0.1-::ffff:10.0.0.2", wantErr: "IPv4-mapped"},
		{name: "range with prefix", in: "10.0.0.1-10.0.0.2/32", wantErr: "not a CIDR"},
		{name: "spaces", in: "10.0.0.1 - 10.0.0.2", wantErr: "range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := config.ParseRange(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseRange(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRange(%q): %v", tc.in, err)
			}
			if d := cmp.Diff(tc.want, got, cmpOpts); d != "" {
				t.Errorf("ParseRange(%q) (-want +got):\n%s", tc.in, d)
			}
		})
	}
}

func TestRangeString(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"10.0.0.0-10.0.0.255", "10.0.0.0/24"},
		{"10.0.0.1-10.0.0.1", "10.0.0.1/32"},
		{"0.0.0.0-255.255.255.255", "0.0.0.0/0"},
		{"10.0.0.0-10.0.0.254", "10.0.0.0-10.0.0.254"},
		{"10.0.0.1-10.0.0.255", "10.0.0.1-10.0.0.255"},
		// Four addresses, but not aligned on a /30.
		{"10.0.0.2-10.0.0.5", "10.0.0.2-10.0.0.5"},
		{"10.0.0.4-10.0.0.7", "10.0.0.4/30"},
		{"10.0.0.255-10.0.1.0", "10.0.0.255-10.0.1.0"},
		{"198.18.2.192/26", "198.18.2.192/26"},
		{"2001:db8::-2001:db8::ffff:ffff:ffff:ffff", "2001:db8::/64"},
		{"2001:db8::1-2001:db8::1", "2001:db8::1/128"},
		{"::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::/0"},
		{"2001:db8:3::10-2001:db8:3::1:0", "2001:db8:3::10-2001:db8:3::1:0"},
		{"2001:DB8::0:1-2001:db8::2", "2001:db8::1-2001:db8::2"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got := mustRange(t, tc.in).String()
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("String() (-want +got):\n%s", d)
			}
		})
	}
}

func TestRangeSize(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"10.0.0.1/32", "1"},
		{"10.0.0.0/24", "256"},
		{"10.0.0.250-10.0.1.5", "12"},
		{"0.0.0.0/0", "4294967296"},
		{"2001:db8::/64", "18446744073709551616"}, // 2^64
		{"2001:db8::/127", "2"},
		{"::/0", "340282366920938463463374607431768211456"}, // 2^128
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got := mustRange(t, tc.in).Size()
			if d := cmp.Diff(bigInt(t, tc.want), got, cmpOpts); d != "" {
				t.Errorf("Size() (-want +got):\n%s", d)
			}
		})
	}
}

func TestRangeContainsOverlaps(t *testing.T) {
	r := mustRange(t, "10.0.0.10-10.0.0.20")
	contains := map[string]bool{
		"10.0.0.9": false, "10.0.0.10": true, "10.0.0.15": true, "10.0.0.20": true, "10.0.0.21": false,
		"::a00:f": false, "::ffff:10.0.0.15": false,
	}
	got := map[string]bool{}
	for a := range contains {
		got[a] = r.Contains(netip.MustParseAddr(a))
	}
	if d := cmp.Diff(contains, got); d != "" {
		t.Errorf("Contains() (-want +got):\n%s", d)
	}

	overlaps := map[string]bool{
		"10.0.0.0-10.0.0.9":    false,
		"10.0.0.0-10.0.0.10":   true,
		"10.0.0.20-10.0.0.30":  true,
		"10.0.0.21-10.0.0.30":  false,
		"10.0.0.12-10.0.0.13":  true,
		"10.0.0.0/24":          true,
		"::a00:0-::a00:ff":     false, // the same numbers in the other family
		"2001:db8::/32":        false,
		"10.0.0.20-10.0.0.20":  true,
		"10.0.0.10-10.0.0.10":  true,
		"10.0.0.21-10.0.0.255": false,
	}
	got = map[string]bool{}
	for s := range overlaps {
		o := mustRange(t, s)
		got[s] = r.Overlaps(o)
		if r.Overlaps(o) != o.Overlaps(r) {
			t.Errorf("Overlaps is not symmetric for %v and %v", r, o)
		}
	}
	if d := cmp.Diff(overlaps, got); d != "" {
		t.Errorf("Overlaps() (-want +got):\n%s", d)
	}
}

func TestFamily(t *testing.T) {
	got := []string{
		config.FamilyOf(netip.MustParseAddr("10.0.0.1")).String(),
		config.FamilyOf(netip.MustParseAddr("2001:db8::1")).String(),
		mustRange(t, "10.0.0.0/8").Family().String(),
		mustRange(t, "2001:db8::/32").Family().String(),
	}
	want := []string{"IPv4", "IPv6", "IPv4", "IPv6"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Family (-want +got):\n%s", d)
	}
}

func TestIsBuggyIPv4(t *testing.T) {
	tests := map[string]bool{
		"10.0.0.0":        true,
		"10.0.0.255":      true,
		"10.0.0.1":        false,
		"10.0.1.0":        true,
		"0.0.0.0":         true,
		"2001:db8::":      false,
		"2001:db8::ff":    false,
		"::ffff:10.0.0.0": false,
	}
	got := map[string]bool{}
	for a := range tests {
		got[a] = config.IsBuggyIPv4(netip.MustParseAddr(a))
	}
	if d := cmp.Diff(tests, got); d != "" {
		t.Errorf("IsBuggyIPv4() (-want +got):\n%s", d)
	}
}

// TestBuggyCountMatchesIsBuggyIPv4 checks the capacity Build computes with avoidBuggyIPs
// against counting the addresses one by one with IsBuggyIPv4.
func TestBuggyCountMatchesIsBuggyIPv4(t *testing.T) {
	for _, s := range []string{
		"0.0.0.0-0.0.0.0", "0.0.0.0-0.0.1.10", "10.0.0.0/23", "10.0.0.1-10.0.0.254",
		"10.0.0.254-10.0.3.1", "10.0.0.255-10.0.0.255", "255.255.254.200-255.255.255.255",
	} {
		t.Run(s, func(t *testing.T) {
			r := mustRange(t, s)
			var want int64
			for a := r.First; r.Contains(a); a = a.Next() {
				if !config.IsBuggyIPv4(a) {
					want++
				}
				if a == r.Last {
					break
				}
			}
			pool := ipPool("p", 0, s)
			pool.Spec.AvoidBuggyIPs = true
			snap, problems := config.Build(config.Resources{Pools: []v1alpha1.IPPool{pool}})
			if len(problems) > 0 {
				t.Fatalf("Build() problems: %v", problems)
			}
			if d := cmp.Diff(big.NewInt(want), snap.Pool("p").Capacity4, cmpOpts); d != "" {
				t.Errorf("Capacity4 (-want +got):\n%s", d)
			}
		})
	}
}
