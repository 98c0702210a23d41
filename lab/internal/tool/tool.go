// Package tool checks that the lab runs as root and that the programs it shells out to are
// installed, naming the Debian package that provides each missing one.
package tool

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// ErrMissing means a program the lab needs is not installed.
var ErrMissing = errors.New("required program missing")

// ErrNotRoot means the lab was started without root, which namespaces, veth and FRR need.
var ErrNotRoot = errors.New("the network lab must run as root")

// Tool is a program and the Debian package that provides it.
type Tool struct {
	Bin     string
	Package string
}

// Some tools, named once so each package's preflight lists the same packages.
var (
	IP      = Tool{"ip", "iproute2"}
	NFT     = Tool{"nft", "nftables"}
	Sysctl  = Tool{"sysctl", "procps"}
	Setpriv = Tool{"setpriv", "util-linux"}
	Socat   = Tool{"socat", "socat"}
	Zebra   = Tool{"/usr/lib/frr/zebra", "frr"}
	BGPD    = Tool{"/usr/lib/frr/bgpd", "frr"}
	VTYSH   = Tool{"vtysh", "frr"}
	BIRD    = Tool{"bird", "bird2"}
	BIRDC   = Tool{"birdc", "bird2"}
	Ping    = Tool{"ping", "iputils-ping"}
	Arping  = Tool{"arping", "iputils-arping"}
)

// Require returns an error naming every missing program and its package, and ErrNotRoot
// when the effective user is not root.
func Require(tools ...Tool) error {
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, fmt.Errorf("%w (euid %d)", ErrNotRoot, os.Geteuid()))
	}
	var missing []string
	pkgs := map[string]bool{}
	var pkgList []string
	for _, t := range tools {
		if _, err := exec.LookPath(t.Bin); err != nil {
			missing = append(missing, t.Bin)
			if !pkgs[t.Package] {
				pkgs[t.Package] = true
				pkgList = append(pkgList, t.Package)
			}
		}
	}
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s: apt-get install %s", ErrMissing,
			strings.Join(missing, ", "), strings.Join(pkgList, " ")))
	}
	return errors.Join(errs...)
}
