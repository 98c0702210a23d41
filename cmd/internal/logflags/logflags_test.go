package logflags

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"strings"
	"testing"

	"k8s.io/klog/v2"
)

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]int{"info": 0, "verbose": 2, "DEBUG": 4, "trace": 5, "0": 0, "7": 7, "10": 10} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "warn", "-1", "11", "2.5"} {
		if _, err := ParseLevel(in); err == nil || !strings.Contains(err.Error(), "want info, verbose, debug, trace or 0-10") {
			t.Errorf("ParseLevel(%q): error %v, want one naming the accepted levels", in, err)
		}
	}
}

func TestFlags(t *testing.T) {
	var o Options
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	o.AddFlags(fs)
	if o.Format != "text" || o.Level != 0 {
		t.Fatalf("defaults %+v, want text and 0", o)
	}
	if err := fs.Parse([]string{"--log-format=json", "--log-level=debug"}); err != nil || o.Format != "json" || o.Level != 4 {
		t.Fatalf("parsed %+v, %v; want json and 4", o, err)
	}
	if err := fs.Parse([]string{"--log-level=loud"}); err == nil {
		t.Error("--log-level=loud accepted")
	}
	if _, err := (Options{Format: "xml"}).Logger(new(bytes.Buffer)); err == nil || !strings.Contains(err.Error(), `--log-format "xml"`) {
		t.Errorf("format xml: %v, want an error naming it", err)
	}
}

func TestJSON(t *testing.T) {
	var buf bytes.Buffer
	l, err := Options{Format: "json", Level: 2}.Logger(&buf)
	if err != nil {
		t.Fatal(err)
	}
	l = l.WithName("bgp").WithValues("peer", "frr")
	l.Info("Session up", "asn", 64512)
	l.V(2).Info("Announced", "ip", "192.0.2.1")
	l.V(3).Info("hidden")
	l.Error(errors.New("boom"), "Dial failed")
	var lines []map[string]any
	for _, s := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("not one JSON object per line: %q: %v", s, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3 (V(3) hidden at level 2):\n%s", len(lines), buf.String())
	}
	want := []map[string]any{
		{"level": "info", "v": 0.0, "msg": "Session up", "asn": 64512.0, "peer": "frr", "logger": "bgp"},
		{"level": "info", "v": 2.0, "msg": "Announced", "ip": "192.0.2.1"},
		{"level": "error", "msg": "Dial failed", "err": "boom"},
	}
	for i, w := range want {
		for k, v := range w {
			if lines[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v (%v)", i, k, lines[i][k], v, lines[i])
			}
		}
		if _, ok := lines[i]["time"]; !ok {
			t.Errorf("line %d has no time: %v", i, lines[i])
		}
	}
	if _, ok := lines[2]["v"]; ok {
		t.Errorf("an error carries a verbosity: %v", lines[2])
	}
}

func TestText(t *testing.T) {
	var buf bytes.Buffer
	l, err := Options{Format: "text", Level: 0}.Logger(&buf)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("Started", "node", "n1")
	l.V(2).Info("hidden")
	out := buf.String()
	if !strings.Contains(out, `"Started" node="n1"`) || strings.Contains(out, "hidden") || !strings.HasPrefix(out, "I") {
		t.Errorf("text output %q: want klog's header, the message and its value, no V(2)", out)
	}
}

// TestApply: libraries that call klog.V(n) directly (client-go) follow --log-level too.
func TestApply(t *testing.T) {
	var buf bytes.Buffer
	if err := (Options{Format: "json", Level: 4}).Apply(&buf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { klog.ClearLogger(); _ = (Options{Format: "text"}).Apply(new(bytes.Buffer)); klog.ClearLogger() })
	if !klog.V(4).Enabled() || klog.V(5).Enabled() {
		t.Errorf("klog.V(4) enabled %v, V(5) %v; want true, false", klog.V(4).Enabled(), klog.V(5).Enabled())
	}
	klog.V(4).InfoS("From a library", "k", "v")
	if !strings.Contains(buf.String(), `"msg":"From a library"`) {
		t.Errorf("klog's output did not reach the JSON logger: %q", buf.String())
	}
}
