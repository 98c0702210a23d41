package membership

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/klog/v2"
)

func validConfig() Config {
	return Config{
		Name:   "node-a",
		Bind:   netip.MustParseAddrPort("198.18.0.11:7946"),
		Keys:   Keys{Primary: make([]byte, 32)},
		Logger: klog.Background(),
	}
}

// New checks everything before it opens a socket, so these tests need no network.
func TestNewRequiresKey(t *testing.T) {
	cfg := validConfig()
	cfg.Keys = Keys{}
	l, err := New(cfg)
	if l != nil || !errors.Is(err, ErrNoKey) {
		t.Fatalf("New(no key) = %v, %v; want ErrNoKey", l, err)
	}
	// The operator must learn that a key is required and where it comes from.
	for _, want := range []string{"key required", "Secret berth-memberlist", `key "key"`, "berth-controller", "no default key", "node-a"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New(no key) error %q does not say %q", err, want)
		}
	}
}

func TestNewRejectsInvalidKey(t *testing.T) {
	for _, n := range []int{1, 15, 17, 31, 33, 64} {
		cfg := validConfig()
		cfg.Keys.Primary = make([]byte, n)
		if _, err := New(cfg); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("New(%d-byte key) error = %v, want ErrInvalidKey", n, err)
		}
		cfg = validConfig()
		cfg.Keys.Accepted = [][]byte{make([]byte, 16), make([]byte, n)}
		if _, err := New(cfg); !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "accepted key 1") {
			t.Errorf("New(accepted %d-byte key) error = %v, want ErrInvalidKey naming accepted key 1", n, err)
		}
	}
	for _, n := range []int{16, 24, 32} {
		if err := validateKey("key", make([]byte, n)); err != nil {
			t.Errorf("validateKey(%d bytes) = %v", n, err)
		}
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want error
	}{
		{"no name", func(c *Config) { c.Name = "" }, ErrInvalidConfig},
		{"no bind address", func(c *Config) { c.Bind = netip.AddrPort{} }, ErrInvalidConfig},
		{"unspecified bind without advertise", func(c *Config) { c.Bind = netip.MustParseAddrPort("0.0.0.0:7946") }, ErrInvalidConfig},
		{"partial timings", func(c *Config) { c.Timings = Timings{ProbeInterval: time.Second} }, ErrInvalidConfig},
		{"probe timeout beyond interval", func(c *Config) {
			c.Timings = DefaultTimings()
			c.Timings.ProbeTimeout = c.Timings.ProbeInterval
		}, ErrInvalidConfig},
		{"meta too large", func(c *Config) { c.Meta.L2Interfaces = []string{strings.Repeat("x", 600)} }, ErrMetaTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			tt.edit(&cfg)
			if _, err := New(cfg); !errors.Is(err, tt.want) {
				t.Errorf("New() error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestDefaultTimingsAreValid(t *testing.T) {
	if err := DefaultTimings().validate(); err != nil {
		t.Fatal(err)
	}
}

func TestNewConfig(t *testing.T) {
	cfg := validConfig()
	cfg.Bind = netip.MustParseAddrPort("198.18.0.11:0")
	cfg.Keys = Keys{Primary: []byte("0123456789abcdef"), Accepted: [][]byte{[]byte("fedcba9876543210")}}
	mc, l, err := newConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{
		"name": mc.Name, "bind": mc.BindAddr, "bindPort": mc.BindPort, "adv": mc.AdvertiseAddr, "advPort": mc.AdvertisePort,
		"keys": mc.Keyring.GetKeys(), "secretKey": mc.SecretKey, "verifyIn": mc.GossipVerifyIncoming, "verifyOut": mc.GossipVerifyOutgoing,
		"label": mc.Label, "probe": mc.ProbeInterval, "probeTimeout": mc.ProbeTimeout, "suspicion": mc.SuspicionMult,
		"gossip": mc.GossipInterval, "pushPull": mc.PushPullInterval, "tcp": mc.TCPTimeout, "logger": mc.Logger != nil,
		"self": l.self,
	}
	want := map[string]any{
		"name": "node-a", "bind": "198.18.0.11", "bindPort": 7946, "adv": "198.18.0.11", "advPort": 7946,
		"keys": [][]byte{[]byte("0123456789abcdef"), []byte("fedcba9876543210")}, "secretKey": []byte(nil), "verifyIn": true, "verifyOut": true,
		"label": "berth", "probe": 150 * time.Millisecond, "probeTimeout": 75 * time.Millisecond, "suspicion": 2,
		"gossip": 100 * time.Millisecond, "pushPull": 10 * time.Second, "tcp": 2 * time.Second, "logger": true,
		"self": []netip.AddrPort{netip.MustParseAddrPort("198.18.0.11:7946"), netip.MustParseAddrPort("198.18.0.11:7946")},
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
		t.Errorf("newConfig() (-want +got):\n%s", d)
	}
}

func TestAddresses(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name              string
		bind, adv         netip.AddrPort
		wantBind, wantAdv netip.AddrPort
	}{
		{"defaults", ap("198.18.0.11:0"), netip.AddrPort{}, ap("198.18.0.11:7946"), ap("198.18.0.11:7946")},
		{"advertise port from bind", ap("0.0.0.0:7000"), ap("198.18.0.11:0"), ap("0.0.0.0:7000"), ap("198.18.0.11:7000")},
		{"mapped IPv4", ap("[::ffff:198.18.0.11]:7946"), netip.AddrPort{}, ap("198.18.0.11:7946"), ap("198.18.0.11:7946")},
		{"IPv6", ap("[2001:db8:18::11]:7946"), netip.AddrPort{}, ap("[2001:db8:18::11]:7946"), ap("[2001:db8:18::11]:7946")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bind, adv, err := addresses(tt.bind, tt.adv)
			if err != nil || bind != tt.wantBind || adv != tt.wantAdv {
				t.Errorf("addresses(%v, %v) = %v, %v, %v; want %v, %v", tt.bind, tt.adv, bind, adv, err, tt.wantBind, tt.wantAdv)
			}
		})
	}
}
