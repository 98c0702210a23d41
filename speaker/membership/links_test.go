package membership

import (
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMatchName(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"eth0", "eth0", true},
		{"eth0", "eth01", false},
		{"eth", "eth0", false},
		{"eth*", "eth0", true},
		{"eth*", "eth", true},
		{"eth*", "veth0", false},
		{"*", "anything", true},
		{"br-*", "br-lan", true},
		{"br-*", "br0", false},
	}
	for _, tt := range tests {
		if got := matchName(tt.pattern, tt.name); got != tt.want {
			t.Errorf("matchName(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestMatchUp(t *testing.T) {
	const up = net.FlagUp | net.FlagRunning | net.FlagBroadcast
	links := []link{
		{"lo", net.FlagUp | net.FlagRunning | net.FlagLoopback},
		{"eth1", up},
		{"eth0", up},
		{"eth2", net.FlagUp | net.FlagBroadcast}, // up, no carrier
		{"eth3", net.FlagRunning},                // carrier but administratively down
		{"bond0", up},
		{"veth1a2b", up},
	}
	tests := []struct {
		name     string
		patterns []string
		want     []string
	}{
		{"no patterns: every usable non-loopback", nil, []string{"bond0", "eth0", "eth1", "veth1a2b"}},
		{"exact", []string{"eth0"}, []string{"eth0"}},
		{"prefix", []string{"eth*"}, []string{"eth0", "eth1"}},
		{"several", []string{"bond0", "eth1"}, []string{"bond0", "eth1"}},
		{"overlapping patterns list once", []string{"eth*", "eth0"}, []string{"eth0", "eth1"}},
		{"down and carrierless never match", []string{"eth2", "eth3"}, nil},
		{"loopback never matches", []string{"lo", "*"}, []string{"bond0", "eth0", "eth1", "veth1a2b"}},
		{"unknown", []string{"ens5"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := matchUp(links, tt.patterns)
			if err != nil {
				t.Fatalf("matchUp(): %v", err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("matchUp(%q) (-want +got):\n%s", tt.patterns, d)
			}
		})
	}
}

func TestMatchUpRejectsBadPatterns(t *testing.T) {
	for _, p := range []string{"", "e*h0", "*eth", "eth**"} {
		if _, err := matchUp(nil, []string{"eth0", p}); err == nil {
			t.Errorf("matchUp(%q) accepted a bad pattern", p)
		}
	}
}
