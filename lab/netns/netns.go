// Package netns creates the lab's network namespaces under one run's prefix and wires
// them with veth pairs, bridges, addresses, routes and sysctls by shelling out to ip, nft
// and sysctl. It deletes exactly what the run created, and finds a crashed run's leftovers
// by prefix. Nothing here touches the host's own interfaces or routes: veth pairs are
// created directly inside their namespaces.
package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/berthlb/berth/lab/internal/tool"
)

// Preflight reports whether the tools this package shells out to are installed and the
// caller is root, naming the apt package of anything missing.
func Preflight() error { return tool.Require(tool.IP, tool.NFT, tool.Sysctl) }

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{1,9}-$`)

// NewPrefix returns a fresh run prefix, "bl" and four random hex digits and a dash.
func NewPrefix() string {
	b := make([]byte, 2)
	_, _ = rand.Read(b) // never fails on Linux
	return "bl" + hex.EncodeToString(b) + "-"
}

// ValidPrefix checks that p is short, lower-case and ends in a dash, so that prefixes of
// different runs never match each other's names.
func ValidPrefix(p string) error {
	if !prefixRE.MatchString(p) {
		return fmt.Errorf("netns prefix %q: want 2-10 lower-case letters or digits and a trailing dash", p)
	}
	return nil
}

// Manager creates namespaces named prefix+name and deletes the ones it created.
type Manager struct {
	prefix string

	mu      sync.Mutex
	created []NS
}

// New returns a Manager for prefix. It creates nothing.
func New(prefix string) (*Manager, error) {
	if err := ValidPrefix(prefix); err != nil {
		return nil, err
	}
	return &Manager{prefix: prefix}, nil
}

// Prefix is the run prefix every namespace name starts with.
func (m *Manager) Prefix() string { return m.prefix }

// Create makes the namespace prefix+name with lo up and IPv6 duplicate address detection
// off (otherwise new addresses stay tentative for a second and the first binds fail).
func (m *Manager) Create(ctx context.Context, name string) (NS, error) {
	ns := NS(m.prefix + name)
	if _, err := run(ctx, "ip", "netns", "add", string(ns)); err != nil {
		return "", fmt.Errorf("create netns %s: %w", ns, err)
	}
	m.mu.Lock()
	m.created = append(m.created, ns)
	m.mu.Unlock()
	if err := ns.Batch(ctx, "link set lo up"); err != nil {
		return ns, err
	}
	if err := ns.Sysctl(ctx, map[string]string{
		"net.ipv6.conf.all.accept_dad":     "0",
		"net.ipv6.conf.default.accept_dad": "0",
	}); err != nil {
		return ns, err
	}
	return ns, nil
}

// Namespaces lists the namespaces created so far, oldest first.
func (m *Manager) Namespaces() []NS {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.created)
}

// Close deletes every namespace the Manager created, newest first. Stop the processes
// inside them first: a process keeps its namespace alive after the name is gone.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	created := m.created
	m.created = nil
	m.mu.Unlock()
	var errs []error
	for _, ns := range slices.Backward(created) {
		if err := ns.Delete(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Cleanup deletes every namespace and host link whose name starts with prefix, for the
// leftovers of a run that crashed. Stop the run's processes first (proc.Cleanup).
func Cleanup(ctx context.Context, prefix string) error {
	if err := ValidPrefix(prefix); err != nil {
		return err
	}
	names, err := List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			if err := NS(n).Delete(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	links, err := HostLinks(ctx, prefix)
	if err != nil {
		errs = append(errs, err)
	}
	for _, l := range links {
		if _, err := run(ctx, "ip", "link", "del", "dev", l); err != nil {
			errs = append(errs, fmt.Errorf("delete host link %s: %w", l, err))
		}
	}
	return errors.Join(errs...)
}

// List returns the names of all named network namespaces on the host.
func List(ctx context.Context) ([]string, error) {
	out, err := run(ctx, "ip", "-j", "netns", "list")
	if err != nil {
		return nil, fmt.Errorf("list netns: %w", err)
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, nil // ip prints nothing when there are none
	}
	var entries []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(out, &entries); err != nil {
		return nil, fmt.Errorf("list netns: %w", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	return names, nil
}

// HostLinks returns the names of the host's links that start with prefix. The lab creates
// none; this finds what a broken run may have left.
func HostLinks(ctx context.Context, prefix string) ([]string, error) {
	out, err := run(ctx, "ip", "-j", "link", "show")
	if err != nil {
		return nil, fmt.Errorf("list host links: %w", err)
	}
	var links []struct {
		Name string `json:"ifname"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return nil, fmt.Errorf("list host links: %w", err)
	}
	var names []string
	for _, l := range links {
		if strings.HasPrefix(l.Name, prefix) {
			names = append(names, l.Name)
		}
	}
	return names, nil
}

// NS is a named network namespace (its name as `ip netns` knows it).
type NS string

// Name is the namespace's name.
func (ns NS) Name() string { return string(ns) }

// Path is the namespace's bind mount, for setns.
func (ns NS) Path() string { return "/run/netns/" + string(ns) }

// Exists reports whether the namespace is still there.
func (ns NS) Exists() bool {
	_, err := os.Stat(ns.Path())
	return err == nil
}

// Delete deletes the namespace. Deleting one that is already gone is not an error.
func (ns NS) Delete(ctx context.Context) error {
	if !ns.Exists() {
		return nil
	}
	if _, err := run(ctx, "ip", "netns", "del", string(ns)); err != nil {
		return fmt.Errorf("delete netns %s: %w", ns, err)
	}
	return nil
}

// Command returns a command that runs prog inside the namespace.
func (ns NS) Command(ctx context.Context, prog string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", string(ns), prog}, args...)...)
}

// Output runs prog inside the namespace and returns its stdout; the error carries stderr.
func (ns NS) Output(ctx context.Context, prog string, args ...string) ([]byte, error) {
	out, err := run(ctx, "ip", append([]string{"netns", "exec", string(ns), prog}, args...)...)
	if err != nil {
		return out, fmt.Errorf("netns %s: %w", ns, err)
	}
	return out, nil
}

// IP runs `ip -n <ns> args…` and returns its stdout.
func (ns NS) IP(ctx context.Context, args ...string) ([]byte, error) {
	out, err := run(ctx, "ip", append([]string{"-n", string(ns)}, args...)...)
	if err != nil {
		return out, fmt.Errorf("netns %s: %w", ns, err)
	}
	return out, nil
}

// Batch runs several ip commands (each without the leading "ip") in one ip process, which
// is much cheaper than one process each. It stops at the first failure.
func (ns NS) Batch(ctx context.Context, cmds ...string) error {
	cmd := exec.CommandContext(ctx, "ip", "-n", string(ns), "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("netns %s: ip -batch: %w: %s", ns, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// Sysctl sets sysctls inside the namespace (keys in dotted form).
func (ns NS) Sysctl(ctx context.Context, kv map[string]string) error {
	args := []string{"-q", "-w"}
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		args = append(args, k+"="+kv[k])
	}
	if _, err := ns.Output(ctx, "sysctl", args...); err != nil {
		return fmt.Errorf("sysctl: %w", err)
	}
	return nil
}

// ReadSysctl returns one sysctl's value inside the namespace.
func (ns NS) ReadSysctl(ctx context.Context, key string) (string, error) {
	out, err := ns.Output(ctx, "sysctl", "-n", key)
	if err != nil {
		return "", fmt.Errorf("sysctl %s: %w", key, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// EnableForwarding turns on IPv4 and IPv6 forwarding, making the namespace a router.
func (ns NS) EnableForwarding(ctx context.Context) error {
	return ns.Sysctl(ctx, map[string]string{
		"net.ipv4.ip_forward":              "1",
		"net.ipv6.conf.all.forwarding":     "1",
		"net.ipv6.conf.default.forwarding": "1",
	})
}

// run runs a host program and returns stdout; the error carries the command and stderr.
func run(ctx context.Context, prog string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, prog, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", prog, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
