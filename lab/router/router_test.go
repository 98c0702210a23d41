package router

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
var prefixCmp = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func a(s string) netip.Addr   { return netip.MustParseAddr(s) }
func p(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseFRRRoutes(t *testing.T) {
	for _, c := range []struct {
		file string
		want []Route
	}{
		{"frr-routes4.json", []Route{
			{Prefix: p("198.51.100.0/24"), Best: true},
			{Prefix: p("203.0.113.0/24"), NextHop: a("198.18.0.2"), Peer: a("198.18.0.2"), ASPath: "64501", Best: true},
		}},
		{"frr-routes6.json", []Route{
			// The global next hop, not the link-local one FRR installs.
			{Prefix: p("2001:db8:113::/64"), NextHop: a("2001:db8:18::2"), Peer: a("2001:db8:18::2"), ASPath: "64501", Best: true},
			{Prefix: p("2001:db8:113:f::/64"), Best: true},
		}},
	} {
		t.Run(c.file, func(t *testing.T) {
			got, err := parseFRRRoutes(read(t, c.file))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(c.want, got, addrCmp, prefixCmp); d != "" {
				t.Errorf("parseFRRRoutes() (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseFRRSessions(t *testing.T) {
	got, err := parseFRRSessions(read(t, "frr-neighbors.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Session{
		{Neighbor: a("198.18.0.2"), State: "Established", Established: true},
		{Neighbor: a("2001:db8:18::2"), State: "Established", Established: true},
	}
	if d := cmp.Diff(want, got, addrCmp); d != "" {
		t.Errorf("parseFRRSessions() (-want +got):\n%s", d)
	}
}

func TestParseBIRDRoutes(t *testing.T) {
	protocols := map[string]netip.Addr{
		"n_198_18_0_1": a("198.18.0.1"), "n_198_18_0_11": a("198.18.0.11"), "n_198_18_0_12": a("198.18.0.12"),
		"n_2001_db8_18__1": a("2001:db8:18::1"),
	}
	for _, c := range []struct {
		file string
		want []Route
	}{
		{"bird-routes4.txt", []Route{ // static routes are left out
			{Prefix: p("198.51.100.0/24"), NextHop: a("198.18.0.1"), Peer: a("198.18.0.1"), ASPath: "64500", Best: true},
			{Prefix: p("203.0.113.10/32"), NextHop: a("198.18.0.11"), Peer: a("198.18.0.11"), ASPath: "64512", Best: true,
				Communities: []string{"64512:100", "64512:200"}},
			{Prefix: p("203.0.113.10/32"), NextHop: a("198.18.0.12"), Peer: a("198.18.0.12"), ASPath: "64513"},
		}},
		{"bird-routes6.txt", []Route{
			{Prefix: p("2001:db8:113:f::/64"), NextHop: a("2001:db8:18::1"), Peer: a("2001:db8:18::1"), ASPath: "64500", Best: true},
		}},
	} {
		t.Run(c.file, func(t *testing.T) {
			got, err := parseBIRDRoutes(read(t, c.file), protocols)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(c.want, got, addrCmp, prefixCmp); d != "" {
				t.Errorf("parseBIRDRoutes() (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseBIRDSessions(t *testing.T) {
	protocols := map[string]netip.Addr{
		"n_198_18_0_1": a("198.18.0.1"), "n_2001_db8_18__1": a("2001:db8:18::1"),
		"n_198_18_0_11": a("198.18.0.11"), "n_198_18_0_12": a("198.18.0.12"),
	}
	got := parseBIRDSessions(read(t, "bird-protocols.txt"), protocols)
	want := []Session{
		{Neighbor: a("198.18.0.1"), State: "Established", Established: true},
		{Neighbor: a("198.18.0.11"), State: "Active"},
		{Neighbor: a("198.18.0.12"), State: "Passive"},
		{Neighbor: a("2001:db8:18::1"), State: "Established", Established: true},
	}
	if d := cmp.Diff(want, got, addrCmp); d != "" {
		t.Errorf("parseBIRDSessions() (-want +got):\n%s", d)
	}
}

// TestRender compares the daemons' configuration files with goldens (go test -update).
func TestRender(t *testing.T) {
	cfg := Config{Name: "tor", Dir: "/run/x", ASN: 64500, RouterID: a("198.18.0.1"),
		Neighbors: []Neighbor{
			{Addr: a("198.18.0.11"), ASN: 64512, Password: "s3cret"},
			{Addr: a("2001:db8:18::11"), ASN: 64512, Passive: true},
		},
		Originate: []netip.Prefix{p("198.51.100.0/24"), p("2001:db8:113::/64")},
	}
	for tmpl, golden := range map[string]string{"bgpd.conf.tmpl": "TestRender-bgpd.conf.golden", "bird.conf.tmpl": "TestRender-bird.conf.golden"} {
		got, err := render(tmpl, cfg)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", golden)
		if *update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if d := cmp.Diff(string(read(t, golden)), got); d != "" {
			t.Errorf("render(%s) (-golden +got):\n%s", tmpl, d)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	good := Config{Name: "r", Dir: "/run/x", ASN: 64500, RouterID: a("198.18.0.1")}
	for name, mutate := range map[string]func(*Config){
		"relative dir":      func(c *Config) { c.Dir = "x" },
		"no ASN":            func(c *Config) { c.ASN = 0 },
		"IPv6 router ID":    func(c *Config) { c.RouterID = a("2001:db8:18::1") },
		"quote in password": func(c *Config) { c.Neighbors = []Neighbor{{Addr: a("198.18.0.2"), ASN: 1, Password: `a"b`}} },
		"neighbor twice": func(c *Config) {
			c.Neighbors = []Neighbor{{Addr: a("198.18.0.2"), ASN: 1}, {Addr: a("198.18.0.2"), ASN: 2}}
		},
	} {
		c := good
		mutate(&c)
		if err := c.validate(); err == nil {
			t.Errorf("%s: validate() = nil", name)
		}
	}
	if err := good.validate(); err != nil {
		t.Errorf("good config: %v", err)
	}
}
