package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/REPORT.md")

var testMeta = meta{
	date:   "2026-11-26 12:00 UTC",
	commit: "59c3e80-dirty",
	cpu:    "AMD EPYC 7B13",
	cpus:   2,
	memory: "7.8 GiB",
	kernel: "6.8.0-test",
	goVer:  "go1.26.8 linux/amd64",
}

// TestReport: the report of testdata/raw is testdata/REPORT.md (go test -update rewrites it).
func TestReport(t *testing.T) {
	in, err := readRaw("testdata/raw")
	if err != nil {
		t.Fatal(err)
	}
	rep := render(testMeta, in)
	golden := filepath.Join("testdata", "REPORT.md")
	if *update {
		if err := os.WriteFile(golden, []byte(rep.text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if rep.text != string(want) {
		t.Errorf("report differs from %s (go test ./hack/bench-report -update to accept):\n%s", golden, rep.text)
	}
	// Met: BGP10kServices' allocated (within 1.25× baseline), routed and controller RSS;
	// Churn's ips and nft elements; the L2 and Apply SLOs. Not met: the speaker's RSS,
	// Churn's routes, the BGP create SLO. Not measured: L2FiftyNodes' two, Churn's node
	// addresses.
	if rep.met != 7 || rep.unmet != 3 || rep.unmeasured != 3 {
		t.Errorf("met %d, not met %d, not measured %d; want 7, 3, 3", rep.met, rep.unmet, rep.unmeasured)
	}
	// Rendering twice gives the same text: nothing depends on map order.
	for range 5 {
		if again := render(testMeta, in); again.text != rep.text {
			t.Fatal("two renderings differ")
		}
	}
	for _, want := range []string{
		"| BGP10kServices | allocated-s ≤ 30, or ≤ 1.25 × baseline-allocated-s | 33 (baseline-allocated-s 28: 1.18×) | yes, within 1.25× baseline |",
		"| Churn | leaked-routes = 0 | 2 | **no** |",
		"| L2FiftyNodes | failover-p99-s ≤ 1 | not measured | not measured |",
		"| SLO/TestCreateReachableSLO_BGP/bgp | p99-s ≤ 2 | 2.5 | **no** |",
		"**Step slo failed** (exit 1): figures may be missing; see `testdata/raw/slo.log`.",
		"| Allocate/v4/used=0 | 6 | 1045 | 120 | 3 | 1045 ns/alloc |",
		"| Fill100k/v4 | 6 | 1217283950 (1.217s) |",
		"| slo | `BERTH_BENCH_SLO_OUT=$PWD/bench/raw/slo.txt",
		"| TestApplySLO | apply-100-services | 0.000012 | 0.00003 | 0.000031 | 0.001 | 1000 | yes |",
	} {
		if !strings.Contains(rep.text, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// TestReportEmpty: no raw results at all still gives a report, every goal not measured.
func TestReportEmpty(t *testing.T) {
	in, err := readRaw(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rep := render(testMeta, in)
	if rep.met != 0 || rep.unmet != 0 || rep.unmeasured != len(goals)+1 {
		t.Errorf("met %d, not met %d, not measured %d; want 0, 0, %d", rep.met, rep.unmet, rep.unmeasured, len(goals)+1)
	}
	for _, want := range []string{"No step recorded", "| SLO/* | p99-s ≤ goal-s | not measured | not measured |", "Not run yet: no `"} {
		if !strings.Contains(rep.text, want) {
			t.Errorf("report lacks %q:\n%s", want, rep.text)
		}
	}
}

func TestParseRaw(t *testing.T) {
	f, err := parseRaw("x.txt", strings.NewReader(`goos: linux
pkg: a
cpu: Some CPU @ 2GHz
BenchmarkX-8   10   5 ns/op   2 B/op
BenchmarkX-8   10   7 ns/op   2 B/op
BenchmarkX-8   10   6 ns/op   4 B/op
BenchmarkX-8   10   100 ns/op   4 B/op
--- FAIL: BenchmarkY-8
BenchmarkY-8   notanumber   5 ns/op
BenchmarkY-8   1   5 ns/op  dangling
    BenchmarkZ-8   1   5 ns/op
pkg: b
BenchmarkX/size-100-8   1   3 ns/op
BenchmarkNoProcs   1   3 ns/op
ok   a  1.2s
`))
	if err != nil {
		t.Fatal(err)
	}
	if f.header["cpu"] != "Some CPU @ 2GHz" || f.header["goos"] != "linux" {
		t.Errorf("header %v", f.header)
	}
	x := f.benchs[benchKey{"a", "BenchmarkX"}]
	if x == nil || x.runs != 4 {
		t.Fatalf("BenchmarkX of a: %+v", x)
	}
	if m, _ := x.median("ns/op"); m != 6.5 {
		t.Errorf("median ns/op %v, want 6.5", m)
	}
	if m, _ := x.median("B/op"); m != 3 {
		t.Errorf("median B/op %v, want 3", m)
	}
	if _, ok := x.median("MB/s"); ok {
		t.Error("a median of a unit never reported")
	}
	var names []string
	for _, b := range f.sorted() {
		names = append(names, b.pkg+" "+b.name)
	}
	if got, want := strings.Join(names, ", "), "a BenchmarkX, b BenchmarkNoProcs, b BenchmarkX/size-100"; got != want {
		t.Errorf("benchmarks %s, want %s", got, want)
	}
	if got := strings.Join(x.units(), " "); got != "ns/op B/op" {
		t.Errorf("units %s", got)
	}
}

func TestParseSteps(t *testing.T) {
	s := parseSteps("step\traw\tlog\trc\tseconds\tstarted\tload\tcommand\n" +
		"go\tgo.txt\tgo.txt\t0\t12\t2026-01-01T00:00:00Z\t0.1\tgo test -run '^$'\t./...\n" +
		"broken\trow\n" +
		"slo\tslo.txt\tslo.log\t2\t3\t2026-01-01T00:00:12Z\t0.2\tgo test\r\n")
	if len(s) != 2 || s[0].name != "go" || s[0].command != "go test -run '^$'\t./..." || s[0].failed() ||
		s[1].name != "slo" || s[1].log != "slo.log" || s[1].command != "go test" || !s[1].failed() {
		t.Errorf("steps %+v", s)
	}
}

func TestJudge(t *testing.T) {
	file := func(text string) []*rawFile {
		f, err := parseRaw("scale.txt", strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		return []*rawFile{f}
	}
	le := goal{"BenchmarkA", "x-s", "≤", 30, "", "", 0}
	withBase := goal{"BenchmarkA", "x-s", "≤", 30, "base-s", "", 0}
	eq := goal{"BenchmarkA", "n", "=", 0, "", "", 0}
	atFifty := goal{"BenchmarkA", "x-s", "≤", 1, "", "nodes", 50}
	for _, c := range []struct {
		name, raw     string
		g             goal
		measured, met string
	}{
		{"at the bound", "BenchmarkA-2 1 30 x-s", le, "30", met},
		{"over", "BenchmarkA-2 1 30.5 x-s", le, "30.5", notMet},
		{"median of runs", "BenchmarkA-2 1 40 x-s\nBenchmarkA-2 1 20 x-s\nBenchmarkA-2 1 25 x-s", le, "25", met},
		{"missing benchmark", "BenchmarkB-2 1 1 x-s", le, notMeasured, notMeasured},
		{"missing unit", "BenchmarkA-2 1 1 y-s", le, notMeasured, notMeasured},
		{"within baseline", "BenchmarkA-2 1 37.5 x-s 30 base-s", withBase, "37.5 (base-s 30: 1.25×)", "yes, within 1.25× baseline"},
		{"beyond baseline", "BenchmarkA-2 1 37.6 x-s 30 base-s", withBase, "37.6 (base-s 30: 1.25×)", notMet},
		{"bound met, baseline shown", "BenchmarkA-2 1 20 x-s 10 base-s", withBase, "20 (base-s 10: 2×)", met},
		{"no baseline measured", "BenchmarkA-2 1 31 x-s", withBase, "31", notMet},
		{"equal", "BenchmarkA-2 1 0 n", eq, "0", met},
		{"not equal", "BenchmarkA-2 1 1 n", eq, "1", notMet},
		{"at the goal's size", "BenchmarkA-2 1 0.9 x-s 50 nodes", atFifty, "0.9", met},
		{"smaller than the goal's size", "BenchmarkA-2 1 0.9 x-s 30 nodes", atFifty, "0.9 at 30 nodes", "yes at 30 nodes (50 not measured)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := judge(c.g, file(c.raw))
			if r.measured != c.measured || r.verdict != c.met {
				t.Errorf("measured %q, verdict %q; want %q, %q", r.measured, r.verdict, c.measured, c.met)
			}
		})
	}
}

func TestNum(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0", 3: "3", 120: "120", 1234567: "1234567", 123.456: "123", 12.345: "12.3",
		1.2345: "1.23", 0.61: "0.61", 0.000031: "0.000031", 0.00100001: "0.001", 0.1234567: "0.123", -2.5: "-2.5", 1.7: "1.7", 9.999: "10", 99.99: "100",
	} {
		if got := num(v); got != want {
			t.Errorf("num(%v) = %q, want %q", v, got, want)
		}
	}
}
