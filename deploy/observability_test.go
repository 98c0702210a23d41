package deploy

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/yaml"

	"github.com/berthlb/berth/bgp"
	"github.com/berthlb/berth/controller"
	"github.com/berthlb/berth/l2"
	"github.com/berthlb/berth/speaker"
	"github.com/berthlb/berth/speaker/membership"
)

// obsMetric is one metric family berth exports.
type obsMetric struct {
	Binary string // berth-controller or berth-speaker
	Name   string
	Type   string // counter, gauge, histogram
	Labels []string
	Help   string
}

// obsRegistrations are the collectors of each binary, as its main registers them: the
// controller's through controller.Options.Registerer, the speaker's through
// speaker.Metrics.Register, bgp.Config.Registerer, l2.Config.Registerer and
// membership.List.Collector. Each package's RegisterExampleMetrics registers the same
// collectors, filled with one example series per family.
var obsRegistrations = []struct {
	binary   string
	register []func(prometheus.Registerer) error
}{
	{"berth-controller", []func(prometheus.Registerer) error{controller.RegisterExampleMetrics}},
	{"berth-speaker", []func(prometheus.Registerer) error{speaker.RegisterExampleMetrics, bgp.RegisterExampleMetrics,
		l2.RegisterExampleMetrics, membership.RegisterExampleMetrics}},
}

// obsRecorder is a Registry that remembers the names its collectors describe.
type obsRecorder struct {
	*prometheus.Registry
	described []string
}

var obsFQName = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)

func (r *obsRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := obsFQName.FindStringSubmatch(d.String()); m != nil {
			r.described = append(r.described, m[1])
		}
	}
	return r.Registry.Register(c)
}

func (r *obsRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// berthMetrics returns every metric berth's binaries register, by name. A registration
// error (two collectors of one binary claiming a name) or a family described without an
// example series fails the test.
func berthMetrics(t *testing.T) map[string]obsMetric {
	t.Helper()
	out := map[string]obsMetric{}
	for _, b := range obsRegistrations {
		reg := &obsRecorder{Registry: prometheus.NewPedanticRegistry()}
		for _, register := range b.register {
			if err := register(reg); err != nil {
				t.Fatalf("%s: %v", b.binary, err)
			}
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("%s: gather: %v", b.binary, err)
		}
		gathered := map[string]bool{}
		for _, mf := range mfs {
			gathered[mf.GetName()] = true
			if prev, ok := out[mf.GetName()]; ok {
				t.Errorf("%s is registered by %s and %s", mf.GetName(), prev.Binary, b.binary)
			}
			labels := map[string]bool{}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = true
				}
			}
			out[mf.GetName()] = obsMetric{Binary: b.binary, Name: mf.GetName(), Type: obsType(mf.GetType()),
				Labels: slices.Sorted(maps.Keys(labels)), Help: mf.GetHelp()}
		}
		for _, name := range reg.described {
			if !gathered[name] {
				t.Errorf("%s: %s is registered but its RegisterExampleMetrics gives it no series", b.binary, name)
			}
		}
	}
	return out
}

func obsType(t dto.MetricType) string {
	switch t {
	case dto.MetricType_COUNTER:
		return "counter"
	case dto.MetricType_GAUGE:
		return "gauge"
	case dto.MetricType_HISTOGRAM:
		return "histogram"
	case dto.MetricType_SUMMARY:
		return "summary"
	}
	return strings.ToLower(t.String())
}

// standardMetrics are the names of the Go and process collectors both mains register.
func standardMetrics(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		out[mf.GetName()] = true
	}
	return out
}

// checkMetricNames reports the names of what that neither berth nor the standard collectors
// register; a histogram's _bucket, _sum and _count series count as the histogram.
func checkMetricNames(t *testing.T, what string, names []string, berth map[string]obsMetric, std map[string]bool) {
	t.Helper()
	for _, n := range names {
		if std[n] {
			continue
		}
		if _, ok := berth[n]; ok {
			continue
		}
		found := false
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if m, ok := berth[strings.TrimSuffix(n, suffix)]; ok && strings.HasSuffix(n, suffix) &&
				(m.Type == "histogram" || m.Type == "summary" && suffix != "_bucket") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s reads %s, which berth does not register", what, n)
		}
	}
}

// TestMetricNaming holds every berth metric to STYLE.md: berth_<subsystem>_…, counters end
// in _total, histograms are _seconds, help says what it counts, labels are bounded (never an
// IP, a Service, a node).
func TestMetricNaming(t *testing.T) {
	subsystems := []string{"berth_controller_", "berth_allocator_", "berth_speaker_", "berth_bgp_", "berth_l2_", "berth_memberlist_"}
	unbounded := []string{"ip", "address", "service", "namespace", "name", "node", "instance", "mac"}
	metrics := berthMetrics(t)
	for _, name := range slices.Sorted(maps.Keys(metrics)) {
		m := metrics[name]
		if !slices.ContainsFunc(subsystems, func(p string) bool { return strings.HasPrefix(m.Name, p) }) {
			t.Errorf("%s: want a prefix of %v", m.Name, subsystems)
		}
		if (m.Type == "counter") != strings.HasSuffix(m.Name, "_total") {
			t.Errorf("%s is a %s: counters, and only counters, end in _total", m.Name, m.Type)
		}
		if m.Type == "histogram" && !strings.HasSuffix(m.Name, "_seconds") {
			t.Errorf("%s: histograms here are durations, in _seconds", m.Name)
		}
		if len(m.Help) < 20 {
			t.Errorf("%s: help %q says too little", m.Name, m.Help)
		}
		for _, l := range m.Labels {
			if slices.Contains(unbounded, l) {
				t.Errorf("%s: label %q is unbounded", m.Name, l)
			}
		}
	}
}

// obsRules is a PrometheusRule, decoded strictly so that a misspelt field fails.
type obsRules struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   map[string]any `json:"metadata"`
	Spec       struct {
		Groups []struct {
			Name     string `json:"name"`
			Interval string `json:"interval"`
			Rules    []struct {
				Alert         string            `json:"alert"`
				Record        string            `json:"record"`
				Expr          string            `json:"expr"`
				For           string            `json:"for"`
				KeepFiringFor string            `json:"keep_firing_for"`
				Labels        map[string]string `json:"labels"`
				Annotations   map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// obsAlertAnchors are the alerts the rules must have, with their section of
// docs/troubleshooting.md.
var obsAlertAnchors = map[string]string{
	"BerthPoolNearlyExhausted": "pool-nearly-exhausted",
	"BerthBGPSessionDown":      "bgp-session-down",
	"BerthConfigConflict":      "config-conflict",
	"BerthL2Conflict":          "l2-conflict",
	"BerthServicesPending":     "services-pending",
}

var obsPromDuration = regexp.MustCompile(`^([0-9]+(ms|[smhdwy]))+$`)

func readRules(t *testing.T) obsRules {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("observability", "prometheus-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var r obsRules
	if err := yaml.UnmarshalStrict(b, &r); err != nil {
		t.Fatalf("prometheus-rules.yaml: %v", err)
	}
	return r
}

// TestPrometheusRules: the alerts parse, read only metrics berth registers, wait a sensible
// while before firing, and point to their section of the troubleshooting guide.
func TestPrometheusRules(t *testing.T) {
	r := readRules(t)
	if r.APIVersion != "monitoring.coreos.com/v1" || r.Kind != "PrometheusRule" {
		t.Errorf("prometheus-rules.yaml is a %s %s, want a monitoring.coreos.com/v1 PrometheusRule", r.APIVersion, r.Kind)
	}
	berth, std := berthMetrics(t), standardMetrics(t)
	// Prometheus prepends these to every annotation template.
	const defs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$value := .Value}}"
	funcs := template.FuncMap{}
	for _, f := range []string{"humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "humanizeTimestamp",
		"query", "first", "label", "value", "strvalue", "args", "reReplaceAll", "safeHtml", "match", "title", "toUpper",
		"toLower", "graphLink", "tableLink", "sortByLabel", "stripPort", "stripDomain", "externalURL", "pathPrefix",
		"parseDuration", "toTime"} {
		funcs[f] = func(...any) any { return nil }
	}
	seen := map[string]bool{}
	for _, g := range r.Spec.Groups {
		for _, rule := range g.Rules {
			name := rule.Alert + rule.Record
			seen[rule.Alert] = true
			typ, names, err := parsePromQL(rule.Expr)
			if err != nil {
				t.Errorf("%s: %v in\n%s", name, err, rule.Expr)
				continue
			}
			if typ != pqVector {
				t.Errorf("%s: the expression is a %s, want an instant vector", name, typ)
			}
			checkMetricNames(t, name, names, berth, std)
			if rule.Alert == "" {
				continue
			}
			if !obsPromDuration.MatchString(rule.For) {
				t.Errorf("%s: for: %q, want a duration", rule.Alert, rule.For)
			}
			if s := rule.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", rule.Alert, s)
			}
			for _, a := range []string{"summary", "description"} {
				text, ok := rule.Annotations[a]
				if !ok || strings.TrimSpace(text) == "" {
					t.Errorf("%s: no %s annotation", rule.Alert, a)
					continue
				}
				if _, err := template.New(a).Funcs(funcs).Parse(defs + text); err != nil {
					t.Errorf("%s: %s annotation: %v", rule.Alert, a, err)
				}
			}
			if anchor, ok := obsAlertAnchors[rule.Alert]; ok &&
				!strings.Contains(rule.Annotations["description"], "docs/troubleshooting.md#"+anchor) {
				t.Errorf("%s: description does not point to docs/troubleshooting.md#%s", rule.Alert, anchor)
			}
		}
	}
	for alert := range obsAlertAnchors {
		if !seen[alert] {
			t.Errorf("no alert %s", alert)
		}
	}
}

// obsDashboard is the part of a Grafana dashboard the tests read.
type obsDashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *obsDatasource  `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []obsPanel `json:"panels"`
}

type obsDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type obsPanel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *obsDatasource `json:"datasource"`
	GridPos    *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Datasource *obsDatasource `json:"datasource"`
		Expr       string         `json:"expr"`
		RefID      string         `json:"refId"`
	} `json:"targets"`
	Panels []obsPanel `json:"panels"` // of a collapsed row
}

// Grafana's interval variables, replaced by a duration before parsing; other variables
// appear only inside strings.
var obsIntervalVar = regexp.MustCompile(`\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}`)

var obsVariable = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)

var obsLabelValues = regexp.MustCompile(`^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// TestGrafanaDashboard: the dashboard is plain JSON whose every panel and query reads the
// ${datasource} variable, whose queries parse and read only metrics berth (or the Go and
// process collectors) register, and whose variables are all defined.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("observability", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d obsDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q, title %q: want both", d.UID, d.Title)
	}
	berth, std := berthMetrics(t), standardMetrics(t)
	vars := map[string]bool{}
	wantDS := obsDatasource{Type: "prometheus", UID: "${datasource}"}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type == "datasource" {
			var q string
			if err := json.Unmarshal(v.Query, &q); err != nil || q != "prometheus" {
				t.Errorf("variable %s: query %s, want prometheus", v.Name, v.Query)
			}
			continue
		}
		if v.Datasource == nil || *v.Datasource != wantDS {
			t.Errorf("variable %s: datasource %+v, want %+v", v.Name, v.Datasource, wantDS)
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Errorf("variable %s: query %s: %v", v.Name, v.Query, err)
			continue
		}
		m := obsLabelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable %s: query %q, want label_values(selector, label)", v.Name, q.Query)
			continue
		}
		_, names, err := parsePromQL(m[1])
		if err != nil {
			t.Errorf("variable %s: %v in %s", v.Name, err, m[1])
		}
		checkMetricNames(t, "variable "+v.Name, names, berth, std)
	}
	if !vars["datasource"] {
		t.Error("no datasource variable")
	}

	var panels []obsPanel
	for _, p := range d.Panels {
		panels = append(panels, p)
		panels = append(panels, p.Panels...)
	}
	ids, titles := map[int]bool{}, map[string]bool{}
	queries := 0
	for _, p := range panels {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Errorf("panel %q: no gridPos", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if titles[p.Title] {
			t.Errorf("two panels titled %q", p.Title)
		}
		titles[p.Title] = true
		if p.Datasource == nil || *p.Datasource != wantDS {
			t.Errorf("panel %q: datasource %+v, want %+v", p.Title, p.Datasource, wantDS)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no query", p.Title)
		}
		for _, q := range p.Targets {
			queries++
			what := fmt.Sprintf("panel %q query %s", p.Title, q.RefID)
			if q.Datasource == nil || *q.Datasource != wantDS {
				t.Errorf("%s: datasource %+v, want %+v", what, q.Datasource, wantDS)
			}
			for _, m := range obsVariable.FindAllStringSubmatch(q.Expr, -1) {
				if !vars[m[1]] && !strings.HasPrefix(m[1], "__") {
					t.Errorf("%s: variable $%s is not defined", what, m[1])
				}
			}
			typ, names, err := parsePromQL(obsIntervalVar.ReplaceAllString(q.Expr, "5m"))
			if err != nil {
				t.Errorf("%s: %v in\n%s", what, err, q.Expr)
				continue
			}
			if typ != pqVector && typ != pqScalar {
				t.Errorf("%s: the expression is a %s", what, typ)
			}
			checkMetricNames(t, what, names, berth, std)
		}
	}
	t.Logf("%d panels, %d queries", len(panels), queries)
}

// TestPromQLCheck: the parser behind these tests refuses what Prometheus refuses.
func TestPromQLCheck(t *testing.T) {
	for _, tt := range []struct {
		expr    string
		typ     pqType
		metrics []string
	}{
		{`up`, pqVector, []string{"up"}},
		{`sum by (pool, family) (a) / on (pool) group_left () max without (x) (b{c="d", e=~"f|g",}) > 0.9`, pqVector, []string{"a", "b"}},
		{`histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))`, pqVector, []string{"h_bucket"}},
		{`max(x) > bool 1`, pqVector, []string{"x"}},
		{`1 + 2 * -3 ^ 2 == bool 4`, pqScalar, nil},
		{`max_over_time(x[1h:5m] offset 1d)`, pqVector, []string{"x"}},
		{`topk(3, x) or vector(0)`, pqVector, []string{"x"}},
		{`{__name__="x", job!="y"}`, pqVector, []string{"x"}},
		{`label_replace(x, "a", "$1", "b", "(.*)")`, pqVector, []string{"x"}},
	} {
		typ, metrics, err := parsePromQL(tt.expr)
		if err != nil || typ != tt.typ || !slices.Equal(metrics, tt.metrics) {
			t.Errorf("parsePromQL(%s) = %v, %v, %v; want %v, %v", tt.expr, typ, metrics, err, tt.typ, tt.metrics)
		}
	}
	for _, bad := range []string{
		`rate(x)`, `sum(x[5m])`, `x[5m`, `sum by (a (x)`, `x{a="b"`, `x{a=b}`, `x{a~"b"}`, `x{a=~"("}`,
		`1 > 2`, `x and 1`, `x + on (a) 1`, `frobnicate(x)`, `rate(x[5])`, `x +`, `(x`, `x y`, `sum by (a) ()`,
		`histogram_quantile(x, y)`, `x group_left y`, `"a" + 1`, `topk(x, y)`, `x offset`, `{}`, `x[5m] + 1`,
	} {
		if _, _, err := parsePromQL(bad); err == nil {
			t.Errorf("parsePromQL(%s) accepted", bad)
		}
	}
}
