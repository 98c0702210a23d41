package netns

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// FaultTable is the nftables table (family inet) that holds the lab's drop rules inside a
// namespace; nothing else in the namespace is touched.
const FaultTable = "berth-lab"

// The chains hook before everything else (priority -400, ahead of conntrack at -200 and of
// any NAT or filter chain berth or kube-proxy adds), so a drop always wins.
var faultChains = []string{"input", "output", "forward"}

// Fault is a set of drop rules added by Drop, one per hook.
type Fault struct {
	ns      NS
	match   string
	handles map[string]string // chain → rule handle
}

func (f Fault) String() string { return fmt.Sprintf("drop %q in %s", f.match, f.ns) }

var handleRE = regexp.MustCompile(`# handle (\d+)`)

// Drop adds a rule that drops packets matching an nft expression (e.g. "tcp dport 179",
// "ip saddr 198.18.0.11") on input, output and forward. Remove undoes it.
func (ns NS) Drop(ctx context.Context, match string) (Fault, error) {
	if err := ns.ensureFaultTable(ctx); err != nil {
		return Fault{}, err
	}
	f := Fault{ns: ns, match: match, handles: map[string]string{}}
	for _, chain := range faultChains {
		args := []string{"-e", "-a", "add", "rule", "inet", FaultTable, chain}
		args = append(args, strings.Fields(match)...)
		args = append(args, "counter", "drop")
		out, err := ns.Output(ctx, "nft", args...)
		if err != nil {
			_ = f.Remove(ctx)
			return Fault{}, fmt.Errorf("fault %q: %w", match, err)
		}
		m := handleRE.FindSubmatch(out)
		if m == nil {
			_ = f.Remove(ctx)
			return Fault{}, fmt.Errorf("fault %q: no rule handle in nft output %q", match, out)
		}
		f.handles[chain] = string(m[1])
	}
	return f, nil
}

// Remove deletes the fault's rules.
func (f Fault) Remove(ctx context.Context) error {
	var errs []error
	for chain, h := range f.handles {
		if _, err := f.ns.Output(ctx, "nft", "delete", "rule", "inet", FaultTable, chain, "handle", h); err != nil {
			errs = append(errs, fmt.Errorf("remove %v: %w", f, err))
		}
	}
	return errors.Join(errs...)
}

// ClearFaults deletes the fault table and with it every drop rule in the namespace.
func (ns NS) ClearFaults(ctx context.Context) error {
	out, err := ns.Output(ctx, "nft", "list", "tables")
	if err != nil {
		return fmt.Errorf("clear faults: %w", err)
	}
	if !strings.Contains(string(out), "table inet "+FaultTable+"\n") {
		return nil
	}
	if _, err := ns.Output(ctx, "nft", "delete", "table", "inet", FaultTable); err != nil {
		return fmt.Errorf("clear faults: %w", err)
	}
	return nil
}

func (ns NS) ensureFaultTable(ctx context.Context) error {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", FaultTable)
	for _, c := range faultChains {
		fmt.Fprintf(&b, "  chain %s { type filter hook %s priority -400; policy accept; }\n", c, c)
	}
	b.WriteString("}\n")
	// Re-declaring an existing table and chains is a no-op that keeps their rules.
	cmd := ns.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("netns %s: fault table: %w: %s", ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}
