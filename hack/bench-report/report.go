package main

import (
	"fmt"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// goal is a bound on one benchmark's metric: its median over the runs must be ≤ (or =)
// bound. With baseline set, a ≤ goal is also met when the figure is ≤ baselineFactor times
// the benchmark's own figure of that unit (the same work measured without what is being
// judged, on this machine).
type goal struct {
	bench, unit string
	op          string // "≤" or "="
	bound       float64
	baseline    string
	// scale names the benchmark's metric that says at what size it ran, and at the size
	// the goal is set for: a figure measured smaller says so in its verdict.
	scale string
	at    float64
}

const baselineFactor = 1.25

// goals of the lab scale scenarios (scale/, issue 11). Every BenchmarkSLO/* line of lab.SLO
// adds its own: p99-s ≤ goal-s.
var goals = []goal{
	{"BenchmarkBGP10kServices", "allocated-s", "≤", 30, "baseline-allocated-s", "", 0},
	// The "or within 1.25× of a baseline" covers both figures. The baseline routes
	// nothing: a route follows its address, so routed-s is held to the time the baseline
	// took to hand out every address.
	{"BenchmarkBGP10kServices", "routed-s", "≤", 45, "baseline-allocated-s", "", 0},
	{"BenchmarkBGP10kServices", "speaker-peak-rss-MB", "≤", 150, "", "", 0},
	{"BenchmarkBGP10kServices", "controller-peak-rss-MB", "≤", 250, "", "", 0},
	{"BenchmarkL2FiftyNodes", "failover-p99-s", "≤", 1, "", "nodes", 50},
	{"BenchmarkL2FiftyNodes", "false-failovers", "=", 0, "", "nodes", 50},
	{"BenchmarkChurn", "leaked-ips", "=", 0, "", "", 0},
	{"BenchmarkChurn", "leaked-routes", "=", 0, "", "", 0},
	{"BenchmarkChurn", "leaked-nft-elements", "=", 0, "", "", 0},
	{"BenchmarkChurn", "leaked-node-addrs", "=", 0, "", "", 0},
}

const sloPrefix = "BenchmarkSLO/"

// Verdicts of a goal.
const (
	met         = "yes"
	notMet      = "**no**"
	notMeasured = "not measured"
)

// goalRow is one row of the Goals table.
type goalRow struct {
	bench, goal, measured, verdict string
}

// judge is the verdict on g from the figures of every file.
func judge(g goal, files []*rawFile) goalRow {
	row := goalRow{bench: g.bench, goal: fmt.Sprintf("%s %s %s", g.unit, g.op, num(g.bound))}
	if g.baseline != "" {
		row.goal += fmt.Sprintf(", or ≤ %v × %s", baselineFactor, g.baseline)
	}
	v, ok := figure(files, g.bench, g.unit)
	if !ok {
		row.measured, row.verdict = notMeasured, notMeasured
		return row
	}
	row.measured, row.verdict = num(v), notMet
	switch {
	case g.op == "=" && v == g.bound, g.op == "≤" && v <= g.bound:
		row.verdict = met
	}
	if size, ok := figure(files, g.bench, g.scale); g.scale != "" && ok && size != g.at {
		row.measured += fmt.Sprintf(" at %s %s", num(size), g.scale)
		row.verdict += fmt.Sprintf(" at %s %s (%s not measured)", num(size), g.scale, num(g.at))
	}
	if base, ok := figure(files, g.bench, g.baseline); g.baseline != "" && ok && base > 0 {
		row.measured += fmt.Sprintf(" (%s %s: %s×)", g.baseline, num(base), num(v/base))
		if row.verdict != met && v <= baselineFactor*base {
			row.verdict = fmt.Sprintf("%s, within %v× baseline", met, baselineFactor)
		}
	}
	return row
}

// figure is the median of unit over every run of the benchmark named name, in any file
// and package.
func figure(files []*rawFile, name, unit string) (float64, bool) {
	var vs []float64
	for _, f := range files {
		for _, b := range f.benchs {
			if b.name == name {
				vs = append(vs, b.values[unit]...)
			}
		}
	}
	return median(vs)
}

// sloRows are the goals of lab.SLO's lines (BenchmarkSLO/TEST/WHAT): p99-s ≤ goal-s,
// sorted by name.
func sloRows(files []*rawFile) []goalRow {
	var names []string
	for _, f := range files {
		for _, b := range f.benchs {
			if strings.HasPrefix(b.name, sloPrefix) && !slices.Contains(names, b.name) {
				names = append(names, b.name)
			}
		}
	}
	slices.Sort(names)
	var rows []goalRow
	for _, n := range names {
		row := goalRow{bench: n, goal: "p99-s ≤ goal-s", measured: notMeasured, verdict: notMeasured}
		p99, ok1 := figure(files, n, "p99-s")
		bound, ok2 := figure(files, n, "goal-s")
		if ok2 {
			row.goal = "p99-s ≤ " + num(bound)
		}
		if ok1 && ok2 {
			row.measured, row.verdict = num(p99), notMet
			if p99 <= bound {
				row.verdict = met
			}
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		rows = append(rows, goalRow{bench: sloPrefix + "*", goal: "p99-s ≤ goal-s", measured: notMeasured, verdict: notMeasured})
	}
	return rows
}

// report is the rendered REPORT.md and its count of goals by verdict.
type report struct {
	text                   string
	met, unmet, unmeasured int
	unmetGoals             []string
}

// Sections of the known raw files, in this order; others follow by name.
type section struct{ file, title, intro string }

var known = []section{
	{"go.txt", "Go benchmarks", "Every package's Go benchmarks, untagged: the median of each figure over the runs (`-count 6`)."},
	{"scale.txt", "Lab scale scenarios", "The scenarios of `scale/` (tag `scale`), each run once on a lab (`-benchtime 1x`): every figure it reports."},
	{"slo.txt", "Timing SLOs, p99 judged", "The timing SLO tests (tags `integration,privileged,timing`, and the e2e suite's), run alone: " +
		"what each measured, in seconds. Here p99 must be ≤ the goal (CI only wants the median ≤ the goal and each sample ≤ 2× it)."},
}

// Steps in the order bench.sh runs them; others follow by name.
var stepOrder = []string{"go", "scale", "slo", "e2e-slo"}

// render writes the report of in as described by m.
func render(m meta, in input) report {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }

	p("# berth benchmark report\n\n")
	p("Written by `make bench` (hack/bench.sh, then hack/bench-report) on %s at commit %s.\n", m.date, m.commit)
	p("The raw results are in `%s`, in benchstat's format: compare two runs with benchstat ([docs/bench.md](../docs/bench.md)).\n\n", in.rawDir)

	p("## Machine\n\n| | |\n|---|---|\n")
	p("| CPU | %s |\n| CPUs | %d |\n| memory | %s |\n| kernel | %s |\n| Go | %s |\n\n", cell(m.cpu), m.cpus, m.memory, cell(m.kernel), m.goVer)

	p("## How to reproduce\n\n")
	p("```sh\nsudo make bench              # every step, then this report\nsudo hack/bench.sh slo       # steps again (go, scale, slo); the others' raw files stay\n```\n\n")
	steps := slices.Clone(in.steps)
	slices.SortStableFunc(steps, func(a, b step) int { return order(stepOrder, a.name, b.name) })
	if len(steps) == 0 {
		p("No step recorded (`%s/steps.tsv` is missing).\n\n", in.rawDir)
	} else {
		p("Each step's command, run from the repository's root; its output is in the log, its figures in the raw file (both in `%s`):\n\n", in.rawDir)
		p("| step | command | raw | log | started | wall time | load | status |\n|---|---|---|---|---|---|---|---|\n")
		for _, s := range steps {
			status := "ok"
			if s.failed() {
				status = fmt.Sprintf("**failed** (exit %s)", s.rc)
			}
			p("| %s | `%s` | %s | %s | %s | %s | %s | %s |\n", s.name, cell(s.command), cell(s.raw), cell(s.log), s.started, wall(s.seconds), s.load, status)
		}
		p("\n")
	}

	p("## Goals\n\n")
	p("The lab scale scenarios' goals and every SLO's p99 against its own goal. A figure is the median over its runs.\n\n")
	p("| benchmark | goal | measured | met? |\n|---|---|---|---|\n")
	var rep report
	var rows []goalRow
	for _, g := range goals {
		rows = append(rows, judge(g, in.files))
	}
	rows = append(rows, sloRows(in.files)...)
	for _, r := range rows {
		p("| %s | %s | %s | %s |\n", cell(strings.TrimPrefix(r.bench, "Benchmark")), cell(r.goal), cell(r.measured), r.verdict)
		switch {
		case strings.HasPrefix(r.verdict, notMet):
			rep.unmet++
			rep.unmetGoals = append(rep.unmetGoals, fmt.Sprintf("%s: %s, measured %s", r.bench, r.goal, r.measured))
		case r.verdict == notMeasured, strings.HasSuffix(r.verdict, notMeasured+")"): // met smaller than its goal's size
			rep.unmeasured++
		default:
			rep.met++
		}
	}
	p("\n")

	files := map[string]*rawFile{}
	var names []string
	for _, f := range in.files {
		files[f.name] = f
		names = append(names, f.name)
	}
	for _, k := range known {
		if !slices.Contains(names, k.file) {
			names = append(names, k.file)
		}
	}
	var knownNames []string
	for _, k := range known {
		knownNames = append(knownNames, k.file)
	}
	slices.SortFunc(names, func(a, b string) int { return order(knownNames, a, b) })
	for _, name := range names {
		title, intro := strings.TrimSuffix(name, ".txt"), ""
		if i := slices.IndexFunc(known, func(k section) bool { return k.file == name }); i >= 0 {
			title, intro = known[i].title, known[i].intro
		}
		p("## %s (%s)\n\n", title, name)
		if intro != "" {
			p("%s\n\n", intro)
		}
		for _, s := range steps {
			if s.raw == name && s.failed() {
				p("**Step %s failed** (exit %s): figures may be missing; see `%s`.\n\n", s.name, s.rc, path.Join(in.rawDir, s.log))
			}
		}
		f := files[name]
		if f == nil {
			p("Not run yet: no `%s`.\n\n", path.Join(in.rawDir, name))
			continue
		}
		if len(f.benchs) == 0 {
			p("No results in `%s`.\n\n", path.Join(in.rawDir, name))
			continue
		}
		if cpu := f.header["cpu"]; cpu != "" && cpu != m.cpu {
			p("Measured on another CPU: %s.\n\n", cpu)
		}
		switch name {
		case "go.txt":
			goTables(p, f)
		case "slo.txt":
			sloTable(p, f)
		default:
			metricTables(p, f)
		}
	}
	rep.text = w.String()
	return rep
}

type printer func(format string, args ...any)

// goTables: a table per package, a row per benchmark: the runs, the medians of ns/op,
// B/op and allocs/op, and the medians of its other units.
func goTables(p printer, f *rawFile) {
	bs := f.sorted()
	for i, b := range bs {
		if i == 0 || b.pkg != bs[i-1].pkg {
			pkg := b.pkg
			if pkg == "" {
				pkg = "(no pkg)"
			}
			p("### %s\n\n", pkg)
			p("| benchmark | runs | ns/op | B/op | allocs/op | other (median) |\n|---|---|---|---|---|---|\n")
		}
		std := make([]string, 3)
		var other []string
		for _, u := range b.units() {
			v, _ := b.median(u)
			if r := unitRank(u); r < 3 {
				std[r] = value(u, v)
			} else {
				other = append(other, num(v)+" "+u)
			}
		}
		p("| %s | %d | %s | %s | %s | %s |\n", cell(strings.TrimPrefix(b.name, "Benchmark")), b.runs, std[0], std[1], std[2], cell(strings.Join(other, ", ")))
		if i == len(bs)-1 || bs[i+1].pkg != b.pkg {
			p("\n")
		}
	}
}

// metricTables: a table per benchmark, a row per unit with its median (and the runs, when
// more than one).
func metricTables(p printer, f *rawFile) {
	for _, b := range f.sorted() {
		p("### %s\n\n", strings.TrimPrefix(b.name, "Benchmark"))
		if b.pkg != "" {
			p("%s", "Package "+b.pkg)
			if b.runs > 1 {
				p(", median of %d runs", b.runs)
			}
			p(".\n\n")
		} else if b.runs > 1 {
			p("Median of %d runs.\n\n", b.runs)
		}
		p("| metric | value |\n|---|---|\n")
		for _, u := range b.units() {
			v, _ := b.median(u)
			p("| %s | %s |\n", cell(u), value(u, v))
		}
		p("\n")
	}
}

// sloTable: a row per SLO (test, what) with p50, p99, max, goal and samples in seconds, and
// whether p99 ≤ goal; units of other kinds in a last column when there are any.
func sloTable(p printer, f *rawFile) {
	cols := []string{"p50-s", "p99-s", "max-s", "goal-s", "samples"}
	bs := f.sorted()
	hasOther := slices.ContainsFunc(bs, func(b *bench) bool {
		return slices.ContainsFunc(b.units(), func(u string) bool { return !slices.Contains(cols, u) })
	})
	p("| test | what | p50 | p99 | max | goal | samples | p99 ≤ goal |")
	if hasOther {
		p(" other |")
	}
	p("\n|---|---|---|---|---|---|---|---|")
	if hasOther {
		p("---|")
	}
	p("\n")
	for _, b := range bs {
		test, what, _ := strings.Cut(strings.TrimPrefix(b.name, sloPrefix), "/")
		var vals []string
		for _, u := range cols {
			if v, ok := b.median(u); ok {
				vals = append(vals, num(v))
			} else {
				vals = append(vals, "")
			}
		}
		verdict := ""
		p99, ok1 := b.median("p99-s")
		bound, ok2 := b.median("goal-s")
		if ok1 && ok2 {
			verdict = met
			if p99 > bound {
				verdict = notMet
			}
		}
		p("| %s | %s | %s | %s |", cell(test), cell(what), strings.Join(vals, " | "), verdict)
		if hasOther {
			var other []string
			for _, u := range b.units() {
				if !slices.Contains(cols, u) {
					v, _ := b.median(u)
					other = append(other, num(v)+" "+u)
				}
			}
			p(" %s |", cell(strings.Join(other, ", ")))
		}
		p("\n")
	}
	p("\n")
}

// order compares a and b by their place in first, names not in it after, by name.
func order(first []string, a, b string) int {
	ia, ib := slices.Index(first, a), slices.Index(first, b)
	if ia < 0 {
		ia = len(first)
	}
	if ib < 0 {
		ib = len(first)
	}
	if ia != ib {
		return ia - ib
	}
	return strings.Compare(a, b)
}

// num formats a figure: integers whole, others ≥ 100 rounded to one, the rest to 3
// significant digits; never with an exponent.
func num(v float64) string {
	a := math.Abs(v)
	switch {
	case v == math.Trunc(v) && a < 1e15:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	default: // 3 significant digits, no exponent, no trailing zeros
		s := strconv.FormatFloat(v, 'f', 2-int(math.Floor(math.Log10(a))), 64)
		return strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
}

// value formats a figure of unit: ns/op of a millisecond or more also as a duration.
func value(unit string, v float64) string {
	if unit == "ns/op" && v >= 1e6 {
		return fmt.Sprintf("%s (%v)", num(v), time.Duration(v).Round(time.Millisecond))
	}
	return num(v)
}

// wall formats a step's seconds.
func wall(seconds string) string {
	s, err := strconv.Atoi(seconds)
	if err != nil {
		return seconds
	}
	return (time.Duration(s) * time.Second).String()
}

// cell escapes what would break a Markdown table cell.
func cell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}
