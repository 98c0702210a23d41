package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"
)

// Formats berthctl prints in.
const (
	FormatTable = "table"
	FormatJSON  = "json"
	FormatYAML  = "yaml"
)

// CheckFormat refuses a format Write does not know.
func CheckFormat(f string) error {
	if f != FormatTable && f != FormatJSON && f != FormatYAML {
		return fmt.Errorf("output format %q: want %s, %s or %s", f, FormatTable, FormatJSON, FormatYAML)
	}
	return nil
}

// WriteServices prints Services' status in format.
func WriteServices(w io.Writer, format string, svcs []ServiceStatus) error {
	if format != FormatTable {
		return writeData(w, format, svcs)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tIPS\tPOOL\tMODE\tL2\tBGP\tPEERS\tPROBLEMS")
	for _, s := range svcs {
		var l2 []string
		for _, ip := range slices.SortedFunc(maps.Keys(s.L2), compareAddrs) {
			l2 = append(l2, ip+"@"+strings.Join(s.L2[ip], "+"))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Namespace, s.Name, orNone(strings.Join(s.IPs, ",")),
			orNone(s.Pool), orNone(s.Mode), orNone(strings.Join(l2, " ")), orNone(strings.Join(s.BGP, ",")),
			orNone(strings.Join(s.Peers, ",")), orNone(strings.Join(s.Problems, "; ")))
	}
	return tw.Flush()
}

// WritePools prints pools' use in format.
func WritePools(w io.Writer, format string, pools []PoolStatus) error {
	if format != FormatTable {
		return writeData(w, format, pools)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMODE\tIPV4 USED\tIPV6 USED\tACCEPTED\tPROBLEM")
	for _, p := range pools {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%s\n", p.Name, p.Mode, use(p.IPv4), use(p.IPv6), p.Accepted, orNone(p.Problem))
	}
	return tw.Flush()
}

func use(f *FamilyUse) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%s/%s (%d%%)", f.InUse, f.Capacity, f.Percent)
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeData(w io.Writer, format string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if format == FormatYAML {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
	} else {
		b = append(b, '\n')
	}
	_, err = w.Write(b)
	return err
}

// WriteExplanation prints an explanation; the table format is prose in sections.
func WriteExplanation(w io.Writer, format string, e Explanation) error {
	if format != FormatTable {
		return writeData(w, format, e)
	}
	fmt.Fprintf(w, "Service %s\n", e.Service)
	if !e.Handled {
		fmt.Fprintf(w, "  not berth's: %s\n", e.Why)
		return nil
	}
	fmt.Fprintf(w, "\nAllocation\n  condition: %s\n  asks for:  %s\n", orNone(e.Allocated), strings.Join(e.Asked, "; "))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, p := range e.Pools {
		fmt.Fprintf(tw, "  pool %s\t%s\n", p.Name, p.Verdict)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\nLive speakers (by their NodeAnnouncements): %s\n", orNone(strings.Join(e.Members, ", ")))
	for _, x := range e.IPs {
		fmt.Fprintf(w, "\n%s (pool %s)\n", x.IP, orNone(x.Pool))
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NODE\tL2\tBGP\tREPORTS")
		for _, n := range x.Nodes {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", n.Node, n.L2, n.BGP, orNone(n.Reported))
		}
		_ = tw.Flush()
		if x.L2Owner != "" {
			fmt.Fprintf(w, "  L2: %s answers ARP/NDP; next in line %s\n", x.L2Owner, orNone(x.L2Next))
		}
		for _, r := range x.Routes {
			fmt.Fprintf(w, "  BGP: %s → %s [%s]: %s\n", r.Node, r.Peer, orNone(r.Session), r.Attributes)
		}
		for _, f := range x.IfFails {
			fmt.Fprintf(w, "  if %s fails: %s\n", f.Name, f.Verdict)
		}
		for _, m := range x.Mismatches {
			fmt.Fprintf(w, "  mismatch: %s\n", m)
		}
	}
	return nil
}
