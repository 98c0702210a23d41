package main

import (
	"bufio"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// input is everything read from the raw directory.
type input struct {
	rawDir string
	files  []*rawFile
	steps  []step
}

// rawFile is one file of benchstat lines.
type rawFile struct {
	name   string            // base name, e.g. "go.txt"
	header map[string]string // goos, goarch, cpu: the last value seen
	benchs map[benchKey]*bench
}

type benchKey struct{ pkg, name string }

// bench is every result line of one benchmark (of one package) in a file.
type bench struct {
	benchKey
	runs   int
	values map[string][]float64 // by unit, one per result line that reported it
}

// procsSuffix is the -GOMAXPROCS suffix go test adds to a benchmark's name (when
// GOMAXPROCS > 1; a name of its own ending in -digits loses them too when it is 1).
var procsSuffix = regexp.MustCompile(`-[0-9]+$`)

// parseRaw reads benchstat's format: "key: value" header lines (pkg: applies to the
// results that follow it) and result lines "BenchmarkName-N iterations value unit
// [value unit...]". Anything else (PASS, ok, logs) is skipped.
func parseRaw(name string, r io.Reader) (*rawFile, error) {
	f := &rawFile{name: name, header: map[string]string{}, benchs: map[benchKey]*bench{}}
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if k, v, ok := strings.Cut(line, ":"); ok && slices.Contains([]string{"goos", "goarch", "pkg", "cpu"}, k) {
			v = strings.TrimSpace(v)
			if k == "pkg" {
				pkg = v
			} else {
				f.header[k] = v
			}
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 4 || len(fields)%2 != 0 || !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			continue
		}
		values := map[string]float64{}
		ok := true
		for i := 2; i < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				ok = false
				break
			}
			values[fields[i+1]] = v
		}
		if !ok {
			continue
		}
		key := benchKey{pkg, procsSuffix.ReplaceAllString(fields[0], "")}
		b := f.benchs[key]
		if b == nil {
			b = &bench{benchKey: key, values: map[string][]float64{}}
			f.benchs[key] = b
		}
		b.runs++
		for u, v := range values {
			b.values[u] = append(b.values[u], v)
		}
	}
	return f, sc.Err()
}

// sorted is the file's benchmarks by package, then name.
func (f *rawFile) sorted() []*bench {
	var bs []*bench
	for _, b := range f.benchs {
		bs = append(bs, b)
	}
	slices.SortFunc(bs, func(a, b *bench) int {
		if c := strings.Compare(a.pkg, b.pkg); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	return bs
}

// units is the benchmark's units: ns/op, B/op, allocs/op first, then the others sorted.
func (b *bench) units() []string {
	var us []string
	for u := range b.values {
		us = append(us, u)
	}
	slices.SortFunc(us, func(x, y string) int {
		if rx, ry := unitRank(x), unitRank(y); rx != ry {
			return rx - ry
		}
		return strings.Compare(x, y)
	})
	return us
}

func unitRank(u string) int {
	if i := slices.Index([]string{"ns/op", "B/op", "allocs/op"}, u); i >= 0 {
		return i
	}
	return 3
}

// median of the values of unit (ok false when none): the middle one, or the mean of the
// two middle ones, as benchstat takes it.
func (b *bench) median(unit string) (float64, bool) {
	return median(b.values[unit])
}

func median(vs []float64) (float64, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2], true
	} else {
		return (s[n/2-1] + s[n/2]) / 2, true
	}
}

// step is one row of steps.tsv, as hack/bench.sh writes it.
type step struct {
	name, raw, log, rc, seconds, started, load, command string
}

func (s step) failed() bool { return s.rc != "0" }

// parseSteps reads steps.tsv: a header row, then "step raw log rc seconds started load
// command" separated by tabs.
func parseSteps(text string) []step {
	var steps []step
	for line := range strings.Lines(text) {
		f := strings.SplitN(strings.TrimRight(line, "\r\n"), "\t", 8)
		if len(f) < 8 || f[0] == "step" {
			continue
		}
		steps = append(steps, step{f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]})
	}
	return steps
}
