package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berthlb/berth/lab/internal/tool"
	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
)

// ownerFile in a run directory records the process that brought the run up; a run whose
// owner is gone is a leftover.
const ownerFile = "owner"

// Preflight reports whether everything Up needs is installed and the caller is root,
// naming the apt package of anything missing.
func Preflight() error { return preflight(true) }

func preflight(routers bool) error {
	tools := []tool.Tool{tool.IP, tool.NFT, tool.Sysctl, tool.Socat}
	if routers {
		tools = append(tools, tool.Zebra, tool.BGPD, tool.VTYSH, tool.BIRD, tool.BIRDC)
	}
	return tool.Require(tools...)
}

// Owner returns the process that brought up the run with prefix under baseDir (the test
// binary, or berthctl's lab daemon). Its Alive tells a live run from a crashed one; an
// error wrapping os.ErrNotExist means there is no such run directory.
func Owner(baseDir, prefix string) (proc.Recorded, error) {
	if err := netns.ValidPrefix(prefix); err != nil {
		return proc.Recorded{}, err
	}
	r, err := proc.ReadRecord(filepath.Join(RunDir(baseDir, prefix), ownerFile))
	if err != nil {
		return proc.Recorded{}, fmt.Errorf("lab %s: owner: %w", prefix, err)
	}
	return r, nil
}

// Leftovers returns the prefixes of runs under baseDir whose owning process has exited
// without tearing them down (a crash, a killed test binary).
func Leftovers(baseDir string) ([]string, error) {
	entries, err := os.ReadDir(baseDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lab leftovers: %w", err)
	}
	var prefixes []string
	for _, e := range entries {
		if !e.IsDir() || netns.ValidPrefix(e.Name()+"-") != nil {
			continue
		}
		owner, err := proc.ReadRecord(filepath.Join(baseDir, e.Name(), ownerFile))
		if err == nil && owner.Alive() {
			continue
		}
		prefixes = append(prefixes, e.Name()+"-")
	}
	return prefixes, nil
}

// Cleanup removes what the run with prefix left behind: it stops the processes recorded in
// its run directory's pid files (only if they are still the processes recorded), deletes
// the namespaces and host links named with the prefix, and removes the run directory.
// It is for "down after a crash"; a live Network is closed with Close.
func Cleanup(ctx context.Context, baseDir, prefix string) error {
	if err := netns.ValidPrefix(prefix); err != nil {
		return err
	}
	dir := RunDir(baseDir, prefix)
	var errs []error
	if err := proc.Cleanup(dir, proc.DefaultGrace); err != nil {
		errs = append(errs, err)
	}
	if err := netns.Cleanup(ctx, prefix); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab %s: cleanup: %w", prefix, err)
	}
	return nil
}
