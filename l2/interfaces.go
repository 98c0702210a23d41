package l2

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
)

// ExcludedPrefixes returns the interface name prefixes that DefaultInterfaces never
// answers on (a copy; see excludedPrefixes for why each is there).
func ExcludedPrefixes() []string { return slices.Clone(excludedPrefixes) }

// excludedPrefixes are the virtual interfaces that container runtimes, CNI plugins,
// overlays and hypervisors create. None of them is the node's attachment to the shared L2
// segment, and answering there would leak LB IPs into pod, tunnel or VM networks. Each is
// matched against the start of the name.
var excludedPrefixes = []string{
	"veth",         // pod ends of veth pairs: bridge/ptp CNI plugins, kindnet, Weave (vethwe*)
	"cali",         // Calico workload interfaces
	"cilium_",      // Cilium host, net and overlay devices (cilium_host, cilium_vxlan)
	"lxc",          // Cilium pod interfaces; LXC bridges (lxcbr0)
	"flannel",      // flannel overlay (flannel.1, flannel-wg)
	"cni",          // CNI bridge plugin's cni0, Podman's cni-podman0
	"cbr",          // kubenet's cbr0
	"docker",       // Docker's default bridge docker0
	"br-",          // Docker user-defined bridges (br-<network id>)
	"podman",       // Podman 4+ default bridge
	"kube-",        // kube-router (kube-bridge, kube-dummy-if), kube-proxy IPVS (kube-ipvs0)
	"nodelocaldns", // NodeLocal DNSCache's dummy interface
	"antrea-",      // Antrea gateway
	"ovs-",         // Open vSwitch datapath (ovs-system)
	"ovn-",         // OVN-Kubernetes (ovn-k8s-mp0)
	"genev",        // Geneve tunnels (genev_sys_6081)
	"vxlan",        // VXLAN tunnels (vxlan.calico, vxlan0)
	"tunl",         // IPIP tunnels (Calico's tunl0)
	"tun",          // tun devices, VPNs
	"tap",          // tap devices of VMs and VPNs
	"vnet",         // libvirt's VM taps
	"virbr",        // libvirt bridges
	"weave",        // Weave Net bridge
	"datapath",     // Weave Net's Open vSwitch datapath
	"wg",           // WireGuard
	"gre",          // GRE tunnels (gre0, gretap0)
	"ip6tnl",       // IPv6 tunnels
	"sit",          // IPv6-in-IPv4 tunnels
	"dummy",        // dummy devices
}

// MatchDefault is the rule behind DefaultInterfaces: an interface answers by default when
// it is up (administratively up, with carrier: net.FlagUp and net.FlagRunning), can
// broadcast (ARP needs it; this leaves out point-to-point tunnels), is not a loopback, is
// not a port of another device, and its name starts with none of ExcludedPrefixes().
//
// isBridgePort is true for a device enslaved to a bridge, and also to a bond, team or
// Open vSwitch datapath: such a device carries the frames of its master, which is the
// interface to answer on. A device in a VRF is not a port.
func MatchDefault(name string, flags net.Flags, isBridgePort bool) bool {
	if name == "" || !usable(flags) || flags&net.FlagBroadcast == 0 || isBridgePort {
		return false
	}
	return !slices.ContainsFunc(excludedPrefixes, func(p string) bool { return strings.HasPrefix(name, p) })
}

// usable means up, with carrier, and not a loopback. IFF_RUNNING follows the kernel's
// operstate: up (or unknown, for links without carrier detection). It is what IPv6 waits
// for too (addrconf_link_ready): before it, even the all-nodes route is missing and an
// unsolicited NA fails with ENETUNREACH. linkwatch updates the operstate in batches at
// most once a second, so a link flapped within a second is usable again only up to a
// second after its carrier is back (about 850 ms in TestLinkEventsInNetns).
func usable(f net.Flags) bool {
	return f&net.FlagUp != 0 && f&net.FlagRunning != 0 && f&net.FlagLoopback == 0
}

// linkInfo is what plan needs to know about one of the host's interfaces.
type linkInfo struct {
	Name  string
	Index int
	MAC   net.HardwareAddr
	Flags net.Flags
	// Port: enslaved to a bridge, bond, team or Open vSwitch (any master but a VRF).
	Port bool
}

// defaultNames is DefaultInterfaces over given links, sorted.
func defaultNames(links []linkInfo) []string {
	var names []string
	for _, l := range links {
		if MatchDefault(l.Name, l.Flags, l.Port) {
			names = append(names, l.Name)
		}
	}
	slices.Sort(names)
	return names
}

// DefaultInterfaces returns the sorted names of this host's interfaces that MatchDefault
// accepts: where an Assignment without Interfaces is answered.
func DefaultInterfaces() ([]string, error) {
	links, err := listLinks()
	if err != nil {
		return nil, err
	}
	return defaultNames(links), nil
}

// listLinks reads the host's links over netlink. A dump interrupted by a concurrent
// change is read again.
func listLinks() ([]linkInfo, error) {
	var (
		nls []netlink.Link
		err error
	)
	for range 3 {
		nls, err = netlink.LinkList()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	kind := make(map[int]string, len(nls))
	for _, l := range nls {
		kind[l.Attrs().Index] = l.Type()
	}
	out := make([]linkInfo, 0, len(nls))
	for _, l := range nls {
		at := l.Attrs()
		out = append(out, linkInfo{
			Name:  at.Name,
			Index: at.Index,
			MAC:   at.HardwareAddr,
			Flags: at.Flags,
			Port:  at.MasterIndex != 0 && kind[at.MasterIndex] != "vrf",
		})
	}
	return out, nil
}
