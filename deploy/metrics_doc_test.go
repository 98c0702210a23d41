package deploy

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated reference in docs/metrics.md")

// The generated reference sits between these lines of docs/metrics.md.
const (
	metricsDocBegin = "<!-- BEGIN GENERATED REFERENCE: go test ./deploy -run TestMetricsDoc -update -->\n"
	metricsDocEnd   = "<!-- END GENERATED REFERENCE -->\n"
)

var metricsDocPath = filepath.Join("..", "docs", "metrics.md")

// metricsReference renders the table of every metric, per binary.
func metricsReference(metrics map[string]obsMetric) string {
	var b strings.Builder
	for _, binary := range []string{"berth-controller", "berth-speaker"} {
		fmt.Fprintf(&b, "\n### %s\n\n", binary)
		b.WriteString("| Metric | Type | Labels | Help |\n|---|---|---|---|\n")
		for _, name := range slices.Sorted(maps.Keys(metrics)) {
			m := metrics[name]
			if m.Binary != binary {
				continue
			}
			labels := "—"
			if len(m.Labels) > 0 {
				labels = "`" + strings.Join(m.Labels, "`, `") + "`"
			}
			help := strings.ReplaceAll(m.Help, "|", `\|`)
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", m.Name, m.Type, labels, help)
		}
	}
	b.WriteString("\n")
	return b.String()
}

// TestMetricsDoc: the reference in docs/metrics.md lists exactly the metrics berth
// registers, with their current type, labels and help (go test -update rewrites it), and
// the hand-written part names every alert of the rules.
func TestMetricsDoc(t *testing.T) {
	doc, err := os.ReadFile(metricsDocPath)
	if err != nil {
		t.Fatal(err)
	}
	begin, end := bytes.Index(doc, []byte(metricsDocBegin)), bytes.Index(doc, []byte(metricsDocEnd))
	if begin < 0 || end < begin {
		t.Fatalf("%s has no %q … %q section", metricsDocPath, strings.TrimSpace(metricsDocBegin), strings.TrimSpace(metricsDocEnd))
	}
	got := string(doc[begin+len(metricsDocBegin) : end])
	want := metricsReference(berthMetrics(t))
	if *update && got != want {
		out := slices.Concat(doc[:begin+len(metricsDocBegin)], []byte(want), doc[end:])
		if err := os.WriteFile(metricsDocPath, out, 0o644); err != nil {
			t.Fatal(err)
		}
		got = want
	}
	if got != want {
		t.Errorf("the reference in %s is stale (go test ./deploy -run TestMetricsDoc -update rewrites it); want:\n%s", metricsDocPath, want)
	}

	for _, g := range readRules(t).Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" && !bytes.Contains(doc, []byte("`"+r.Alert+"`")) {
				t.Errorf("%s does not describe alert %s", metricsDocPath, r.Alert)
			}
		}
	}
}
