package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func ms(v ...int) []time.Duration {
	d := make([]time.Duration, len(v))
	for i, x := range v {
		d[i] = time.Duration(x) * time.Millisecond
	}
	return d
}

// TestSLOVerdict: CI's loose rule (each ≤ 2× goal, median ≤ goal) always; p99 ≤ goal only
// when judged.
func TestSLOVerdict(t *testing.T) {
	// 100 samples 1..100 ms: p50 51 ms, p99 100 ms (index 99), max 100 ms.
	var hundred []int
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, i)
	}
	for _, c := range []struct {
		name          string
		samples       []time.Duration
		goal          time.Duration
		judgeP99      bool
		p50, p99, max time.Duration
		loose, p99Bad bool
	}{
		{"within", ms(30, 10, 20), 50 * time.Millisecond, true, 20 * time.Millisecond, 30 * time.Millisecond, 30 * time.Millisecond, false, false},
		{"one sample", ms(7), 10 * time.Millisecond, true, 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond, false, false},
		// p99 above the goal but within CI's bound: only bench fails it.
		{"p99 over, loose ok", ms(10, 10, 10, 15), 12 * time.Millisecond, false, 10 * time.Millisecond, 15 * time.Millisecond, 15 * time.Millisecond, false, false},
		{"p99 over, judged", ms(10, 10, 10, 15), 12 * time.Millisecond, true, 10 * time.Millisecond, 15 * time.Millisecond, 15 * time.Millisecond, false, true},
		{"p99 equal to goal", ms(10, 12), 12 * time.Millisecond, true, 12 * time.Millisecond, 12 * time.Millisecond, 12 * time.Millisecond, false, false},
		{"a sample over 2× goal", ms(1, 1, 25), 12 * time.Millisecond, false, time.Millisecond, 25 * time.Millisecond, 25 * time.Millisecond, true, false},
		{"median over goal", ms(13, 13, 1), 12 * time.Millisecond, true, 13 * time.Millisecond, 13 * time.Millisecond, 13 * time.Millisecond, true, true},
		{"100 samples", ms(hundred...), 100 * time.Millisecond, true, 51 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, false, false},
		{"100 samples, p99 over", ms(hundred...), 99 * time.Millisecond, true, 51 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := sloVerdict(c.samples, c.goal, c.judgeP99)
			want := verdict{p50: c.p50, p99: c.p99, max: c.max, loose: c.loose, p99Over: c.p99Bad}
			if v != want {
				t.Errorf("sloVerdict(%v, %v, %v) = %+v, want %+v", c.samples, c.goal, c.judgeP99, v, want)
			}
		})
	}
	if v := sloVerdict(nil, time.Second, true); v != (verdict{}) {
		t.Errorf("no samples: %+v, want the zero verdict", v)
	}
}

func TestSLOSlug(t *testing.T) {
	for what, want := range map[string]string{
		"L2 failover after SIGKILL, longest UDP silence":                  "l2-failover-after-sigkill-longest-udp-si",
		"L2: create → reachable from the client, 20 Services":             "l2",
		"SIGSTOP → next hop gone from FRR's kernel route (hold time 3 s)": "sigstop-next-hop-gone-from-frr-s-kernel",
		"eTP=Local endpoint move → decision":                              "etp-local-endpoint-move-decision",
		"  --Weird__name!!  ":                                             "weird-name",
		"→→→":                                                             "slo",
		"":                                                                "slo",
		"BGP withdraw on speaker SIGTERM: signal → path gone from BIRD":                         "bgp-withdraw-on-speaker-sigterm",
		"Service status → route in FRR's kernel table, 100 Services":                            "service-status-route-in-frr-s-kernel-tab",
		"exactly forty characters long, no more!!":                                              "exactly-forty-characters-long-no-more",
		"abcdefghijabcdefghijabcdefghijabcdefghijXYZ":                                           "abcdefghijabcdefghijabcdefghijabcdefghij",
		"L2 failover on speaker SIGKILL: kill → the client's neighbour entry names the new one": "l2-failover-on-speaker-sigkill",
	} {
		if got := sloSlug(what); got != want {
			t.Errorf("sloSlug(%q) = %q, want %q", what, got, want)
		}
		if got := sloSlug(what); len(got) > 40 || strings.HasPrefix(got, "-") || strings.HasSuffix(got, "-") {
			t.Errorf("sloSlug(%q) = %q: longer than 40 or not trimmed", what, got)
		}
	}
}

func TestSLOLine(t *testing.T) {
	v := verdict{p50: 870 * time.Millisecond, p99: 1500 * time.Millisecond, max: 1612345678 * time.Nanosecond}
	got := sloLine("TestCreateReachableSLO/L2 (v6)", "L2: create → reachable", v, 2*time.Second, 20, 4)
	want := "BenchmarkSLO/TestCreateReachableSLO_L2__v6_/l2-4 1 0.87 p50-s 1.5 p99-s 1.612345678 max-s 2 goal-s 20 samples\n"
	if got != want {
		t.Errorf("sloLine:\n got %q\nwant %q", got, want)
	}
	// Microseconds stay in plain notation (no exponent).
	got = sloLine("TestApplySLO", "apply", verdict{p50: 12 * time.Microsecond, p99: 30 * time.Microsecond, max: 31 * time.Microsecond}, time.Millisecond, 1000, 1)
	want = "BenchmarkSLO/TestApplySLO/apply-1 1 0.000012 p50-s 0.00003 p99-s 0.000031 max-s 0.001 goal-s 1000 samples\n"
	if got != want {
		t.Errorf("sloLine:\n got %q\nwant %q", got, want)
	}
}

// fakeTB records what SLO says; the embedded TB (nil) is never called.
type fakeTB struct {
	testing.TB
	name   string
	logs   []string
	errors []string
}

func (f *fakeTB) Helper()      {}
func (f *fakeTB) Name() string { return f.name }
func (f *fakeTB) Logf(format string, args ...any) {
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

// TestSLOWithoutBench: without the variable, SLO logs and judges as CI does, p99 above the
// goal passes, and nothing is written.
func TestSLOWithoutBench(t *testing.T) {
	t.Setenv(sloOutEnv, "")
	tb := &fakeTB{name: "TestX"}
	SLO(tb, "what", ms(10, 10, 10, 15), 12*time.Millisecond)
	if len(tb.errors) != 0 {
		t.Errorf("errors %q, want none", tb.errors)
	}
	wantLog := "what: samples [10ms 10ms 10ms 15ms]; p50 10ms p99 15ms max 15ms; bound: each ≤ 24ms, median ≤ 12ms"
	if len(tb.logs) != 1 || tb.logs[0] != wantLog {
		t.Errorf("logs %q, want [%q]", tb.logs, wantLog)
	}

	tb = &fakeTB{name: "TestX"}
	SLO(tb, "what", ms(30, 1, 1), 12*time.Millisecond)
	if want := "what: p50 1ms, max 30ms; want median ≤ 12ms and each ≤ 24ms"; len(tb.errors) != 1 || tb.errors[0] != want {
		t.Errorf("errors %q, want [%q]", tb.errors, want)
	}

	tb = &fakeTB{name: "TestX"}
	SLO(tb, "what", nil, time.Second)
	if want := "what: no samples"; len(tb.errors) != 1 || tb.errors[0] != want || len(tb.logs) != 0 {
		t.Errorf("no samples: errors %q logs %q, want [%q] and no log", tb.errors, tb.logs, want)
	}
}

// TestSLOBench: with the variable naming a file, SLO fails a p99 above the goal and appends
// one line per call.
func TestSLOBench(t *testing.T) {
	out := filepath.Join(t.TempDir(), "slo.txt")
	t.Setenv(sloOutEnv, out)
	procs := runtime.GOMAXPROCS(0)

	tb := &fakeTB{name: "TestX/sub one"}
	SLO(tb, "over: p99", ms(10, 10, 10, 15), 12*time.Millisecond)
	if want := "over: p99: p99 15ms; want p99 ≤ goal 12ms (make bench judges p99)"; len(tb.errors) != 1 || tb.errors[0] != want {
		t.Errorf("errors %q, want [%q]", tb.errors, want)
	}
	tb = &fakeTB{name: "TestY"}
	SLO(tb, "Fine", ms(1, 2), time.Second)
	if len(tb.errors) != 0 {
		t.Errorf("errors %q, want none", tb.errors)
	}
	if len(tb.logs) != 1 || !strings.HasSuffix(tb.logs[0], "; bench: p99 ≤ 1s") {
		t.Errorf("logs %q, want the bench bound named", tb.logs)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("BenchmarkSLO/TestX_sub_one/over-%d 1 0.01 p50-s 0.015 p99-s 0.015 max-s 0.012 goal-s 4 samples\n"+
		"BenchmarkSLO/TestY/fine-%d 1 0.002 p50-s 0.002 p99-s 0.002 max-s 1 goal-s 2 samples\n", procs, procs)
	if string(got) != want {
		t.Errorf("%s:\n%s\nwant\n%s", out, got, want)
	}

	// Many writers at once: every line whole.
	if err := os.Remove(out); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			if err := appendLine(out, sloLine(fmt.Sprint("TestZ", i), "w", verdict{}, time.Second, 1, 1)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err = os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
	if len(lines) != 50 {
		t.Fatalf("%d lines, want 50", len(lines))
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "BenchmarkSLO/TestZ") || !strings.HasSuffix(l, " 1 samples") {
			t.Errorf("torn line %q", l)
		}
	}

	// An unwritable file fails the test.
	t.Setenv(sloOutEnv, filepath.Join(t.TempDir(), "missing", "slo.txt"))
	tb = &fakeTB{name: "TestW"}
	SLO(tb, "w", ms(1), time.Second)
	if len(tb.errors) != 1 || !strings.Contains(tb.errors[0], "writing the bench figures") {
		t.Errorf("errors %q, want the write's failure", tb.errors)
	}
}
