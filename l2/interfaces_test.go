package l2

import (
	"net"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMatchDefault(t *testing.T) {
	const (
		up        = net.FlagUp | net.FlagRunning | net.FlagBroadcast | net.FlagMulticast
		noCarrier = net.FlagUp | net.FlagBroadcast | net.FlagMulticast
	)
	tests := []struct {
		name   string
		iface  string
		flags  net.Flags
		port   bool
		answer bool
	}{
		{"physical NIC", "eth0", up, false, true},
		{"predictable name", "enp3s0f1", up, false, true},
		{"bond", "bond0", up, false, true},
		{"host bridge", "br0", up, false, true},
		{"VLAN", "eth0.100", up, false, true},
		{"bridge port", "eth1", up, true, false},
		{"administratively down", "eth0", net.FlagBroadcast | net.FlagMulticast, false, false},
		{"no carrier", "eth0", noCarrier, false, false},
		{"loopback", "lo", net.FlagUp | net.FlagRunning | net.FlagLoopback, false, false},
		{"point-to-point", "ppp0", net.FlagUp | net.FlagRunning | net.FlagPointToPoint | net.FlagMulticast, false, false},
		{"no broadcast", "wlan0", net.FlagUp | net.FlagRunning, false, false},
		{"empty name", "", up, false, false},
		{"pod veth", "veth1a2b3c", up, false, false},
		{"calico", "cali0123456789a", up, false, false},
		{"cilium host", "cilium_host", up, false, false},
		{"cilium pod", "lxc12ab", up, false, false},
		{"flannel", "flannel.1", up, false, false},
		{"cni bridge", "cni0", up, false, false},
		{"docker", "docker0", up, false, false},
		{"docker network", "br-0123456789ab", up, false, false},
		{"kube-router", "kube-bridge", up, false, false},
		{"kube-ipvs", "kube-ipvs0", up, false, false},
		{"vxlan", "vxlan.calico", up, false, false},
		{"ipip", "tunl0", up, false, false},
		{"tun", "tun0", up, false, false},
		{"tap", "tap0", up, false, false},
		{"libvirt", "virbr0", up, false, false},
		{"weave", "weave", up, false, false},
		{"geneve", "genev_sys_6081", up, false, false},
		{"kubenet", "cbr0", up, false, false},
		{"wireguard", "wg0", up, false, false},
		{"nodelocaldns", "nodelocaldns", up, false, false},
		{"antrea", "antrea-gw0", up, false, false},
		{"ovs", "ovs-system", up, false, false},
		// Only a prefix excludes: a name containing one elsewhere does not.
		{"prefix elsewhere", "myveth0", up, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MatchDefault(tt.iface, tt.flags, tt.port); got != tt.answer {
				t.Errorf("MatchDefault(%q, %v, %t) = %t, want %t", tt.iface, tt.flags, tt.port, got, tt.answer)
			}
		})
	}
}

func TestExcludedPrefixesDocumented(t *testing.T) {
	// The list must stay in.
	for _, p := range []string{"veth", "cali", "cilium_", "lxc", "flannel", "cni", "docker", "br-", "kube-",
		"vxlan", "tunl", "tun", "tap", "virbr", "weave", "genev"} {
		if !slices.Contains(ExcludedPrefixes(), p) {
			t.Errorf("ExcludedPrefixes() lacks %q", p)
		}
	}
	got := ExcludedPrefixes()
	got[0] = "changed"
	if ExcludedPrefixes()[0] == "changed" {
		t.Error("ExcludedPrefixes() returns the package's own slice")
	}
}

func TestDefaultNames(t *testing.T) {
	up := net.FlagUp | net.FlagRunning | net.FlagBroadcast
	links := []linkInfo{
		{Name: "lo", Flags: net.FlagUp | net.FlagRunning | net.FlagLoopback},
		{Name: "eth1", Flags: up},
		{Name: "eth0", Flags: up, Port: true},
		{Name: "br0", Flags: up},
		{Name: "veth9", Flags: up},
	}
	if d := cmp.Diff([]string{"br0", "eth1"}, defaultNames(links)); d != "" {
		t.Errorf("defaultNames() (-want +got):\n%s", d)
	}
}
