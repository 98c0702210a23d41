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
