package lab

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sloOutEnv names the file `make bench` (hack/bench.sh) has SLO append its figures to.
// When it is set, SLO also judges p99 against the goal: bench runs alone on the machine.
const sloOutEnv = "BERTH_BENCH_SLO_OUT"

// SLO prints a timing goal's samples (when few), p50, p99 and max, and checks CI's rule
// for a noisy 2-core machine: each sample ≤ 2× goal and the median ≤ goal. Under
// `make bench` (sloOutEnv set) it also wants p99 ≤ goal, and appends the figures as one
// benchstat line to that file (see sloLine).
func SLO(t testing.TB, what string, samples []time.Duration, goal time.Duration) {
	t.Helper()
	out := os.Getenv(sloOutEnv)
	v := sloVerdict(samples, goal, out != "")
	if len(samples) == 0 {
		t.Errorf("%s: no samples", what)
		return
	}
	shown := ""
	if len(samples) <= 10 {
		shown = fmt.Sprintf("samples %v; ", samples)
	}
	bench := ""
	if out != "" {
		bench = fmt.Sprintf("; bench: p99 ≤ %v", goal)
	}
	t.Logf("%s: %sp50 %v p99 %v max %v; bound: each ≤ %v, median ≤ %v%s", what, shown, v.p50, v.p99, v.max, 2*goal, goal, bench)
	if v.loose {
		t.Errorf("%s: p50 %v, max %v; want median ≤ %v and each ≤ %v", what, v.p50, v.max, goal, 2*goal)
	}
	if v.p99Over {
		t.Errorf("%s: p99 %v; want p99 ≤ goal %v (make bench judges p99)", what, v.p99, goal)
	}
	if out == "" {
		return
	}
	line := sloLine(t.Name(), what, v, goal, len(samples), runtime.GOMAXPROCS(0))
	if err := appendLine(out, line); err != nil {
		t.Errorf("%s: writing the bench figures: %v", what, err)
	}
}

// verdict is what SLO concludes from samples: their p50, p99 and max, whether CI's loose
// rule is broken (some sample > 2× goal, or the median > goal) and, when p99 is judged,
// whether p99 > goal.
type verdict struct {
	p50, p99, max time.Duration
	loose         bool
	p99Over       bool
}

// sloVerdict computes the verdict on samples (none: the zero verdict).
func sloVerdict(samples []time.Duration, goal time.Duration, judgeP99 bool) verdict {
	if len(samples) == 0 {
		return verdict{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	v := verdict{p50: s[len(s)/2], p99: s[min(len(s)-1, len(s)*99/100)], max: s[len(s)-1]}
	v.loose = v.max > 2*goal || v.p50 > goal
	v.p99Over = judgeP99 && v.p99 > goal
	return v
}

// sloLine is the benchstat line of one SLO (with its newline):
//
//	BenchmarkSLO/<test>/<what>-<procs> 1 <p50> p50-s <p99> p99-s <max> max-s <goal> goal-s <n> samples
//
// <test> is the test's name with every character outside [A-Za-z0-9_] made '_', <what>
// the slug of what (sloSlug); times are in seconds.
func sloLine(test, what string, v verdict, goal time.Duration, n, procs int) string {
	name := strings.Map(func(r rune) rune {
		if r == '_' || r < 128 && isAlnum(byte(r)) {
			return r
		}
		return '_'
	}, test)
	sec := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }
	return fmt.Sprintf("BenchmarkSLO/%s/%s-%d 1 %s p50-s %s p99-s %s max-s %s goal-s %d samples\n",
		name, sloSlug(what), procs, sec(v.p50), sec(v.p99), sec(v.max), sec(goal), n)
}

// sloSlug shortens what to a name: its text before the first ':', lowercased, each run of
// characters other than ASCII letters and digits made one '-', trimmed of '-', at most 40
// characters ("slo" if nothing is left).
func sloSlug(what string) string {
	what, _, _ = strings.Cut(what, ":")
	var b strings.Builder
	dash := false
	for i := 0; i < len(what); i++ {
		c := what[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if !isAlnum(c) {
			dash = true
			continue
		}
		if dash && b.Len() > 0 {
			b.WriteByte('-')
		}
		dash = false
		b.WriteByte(c)
	}
	s := b.String()
	if len(s) > 40 {
		s = strings.TrimRight(s[:40], "-")
	}
	if s == "" {
		return "slo"
	}
	return s
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// appendLine appends line to the file at path with one write, so that lines of processes
// appending at once (O_APPEND) never interleave.
func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
