// Command bench-report writes bench/REPORT.md from the raw results hack/bench.sh leaves in
// bench/raw (`make bench`): the files *.txt in benchstat's format (go.txt: the Go
// benchmarks; scale.txt: the lab scale scenarios; slo.txt: the SLO tests' figures that
// lab.SLO appends) and steps.tsv, each step's command, start, wall time, load and exit
// status.
//
// The report gives the date, commit and machine, how to reproduce each step, the goals
// with what was measured and whether each is met, and a table of every figure: for go.txt
// the median over the runs of each benchmark; for the others every metric. Apart from the
// date and the machine it depends only on bench/raw.
//
//	go run ./hack/bench-report -raw bench/raw -out bench/REPORT.md
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

func main() {
	rawDir := flag.String("raw", "bench/raw", "the directory of the raw results (*.txt, steps.tsv)")
	out := flag.String("out", "bench/REPORT.md", "the report to write")
	flag.Parse()
	if err := run(*rawDir, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench-report:", err)
		os.Exit(1)
	}
}

func run(rawDir, out string) error {
	in, err := readRaw(rawDir)
	if err != nil {
		return err
	}
	rep := render(thisMachine(), in)
	if err := os.WriteFile(out, []byte(rep.text), 0o644); err != nil {
		return err
	}
	fmt.Printf("%s: goals: %d met, %d not met, %d not measured\n", out, rep.met, rep.unmet, rep.unmeasured)
	for _, g := range rep.unmetGoals {
		fmt.Printf("  not met: %s\n", g)
	}
	return nil
}

// meta is what the report says of when and where: all but the raw results.
type meta struct {
	date   string // UTC
	commit string // short hash, "-dirty" when the tree (but bench/) has changes
	cpu    string
	cpus   int
	memory string
	kernel string
	goVer  string
}

// thisMachine describes the machine the report is written on, the one bench.sh ran on.
func thisMachine() meta {
	m := meta{
		date:   time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		commit: gitCommit(),
		cpu:    "unknown",
		cpus:   runtime.NumCPU(),
		memory: "unknown",
		kernel: "unknown",
		goVer:  runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if v := procField(b, "model name"); v != "" {
			m.cpu = v
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if kb, err := strconv.ParseFloat(strings.TrimSuffix(procField(b, "MemTotal"), " kB"), 64); err == nil {
			m.memory = fmt.Sprintf("%.1f GiB", kb/(1<<20))
		}
	}
	if b, err := exec.Command("uname", "-r").Output(); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	return m
}

// procField is the value of the first "name: value" line of a /proc file.
func procField(b []byte, name string) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// gitCommit is HEAD's short hash, with "-dirty" when anything but bench/ (which the run
// itself writes) differs from it or is untracked; "unknown" outside a checkout.
func gitCommit() string {
	dir, err := os.Getwd()
	if err != nil {
		return "unknown"
	}
	// bench.sh runs as root in a checkout that may be someone else's.
	git := func(args ...string) (string, error) {
		b, err := exec.Command("git", append([]string{"-c", "safe.directory=" + dir}, args...)...).Output()
		return strings.TrimSpace(string(b)), err
	}
	head, err := git("rev-parse", "--short", "HEAD")
	if err != nil || head == "" {
		return "unknown"
	}
	status, err := git("status", "--porcelain", "--", ".", ":(exclude)bench")
	if err != nil {
		return head + " (tree state unknown)"
	}
	if status != "" {
		return head + "-dirty"
	}
	return head
}

// readRaw reads every *.txt of dir and its steps.tsv (either may be missing).
func readRaw(dir string) (input, error) {
	in := input{rawDir: dir}
	names, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return in, err
	}
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			return in, err
		}
		rf, err := parseRaw(filepath.Base(n), f)
		_ = f.Close()
		if err != nil {
			return in, fmt.Errorf("%s: %w", n, err)
		}
		in.files = append(in.files, rf)
	}
	b, err := os.ReadFile(filepath.Join(dir, "steps.tsv"))
	if err != nil && !os.IsNotExist(err) {
		return in, err
	}
	in.steps = parseSteps(string(b))
	return in, nil
}
