//go:build integration

package deploy_test

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/controlplane"
)

// object is one rendered manifest, keyed by kind/namespace/name.
type object map[string]any

func (o object) key() string {
	md, _ := o["metadata"].(map[string]any)
	ns, _ := md["namespace"].(string)
	name, _ := md["name"].(string)
	return fmt.Sprintf("%s %s/%s", o["kind"], ns, name)
}

// TestChartMatchesKustomize: `helm template` of the chart with its default values renders
// exactly the objects of `kubectl kustomize deploy/default` (but the Namespace, which Helm
// leaves to --create-namespace), and both apply cleanly, one after the other, to a real
// kube-apiserver with server-side apply. Non-default values render the flags they stand for
// and are accepted by the apiserver too; the observability values render the objects of
// deploy/observability.
func TestChartMatchesKustomize(t *testing.T) {
	helm := helmBinary(t)
	kubectl := kubectlBinary(t)
	chart := run(t, helm, "template", "berth", "helm/berth", "--namespace", "berth-system", "--include-crds")
	kust := run(t, kubectl, "kustomize", "default")

	fromChart, fromKust := parse(t, chart), parse(t, kust)
	delete(fromKust, "Namespace /berth-system")
	for _, k := range sortedKeys(fromKust) {
		c, ok := fromChart[k]
		if !ok {
			t.Errorf("%s: in deploy/default, not in the chart", k)
			continue
		}
		if !reflect.DeepEqual(c, fromKust[k]) {
			t.Errorf("%s differs:\nchart:     %v\nkustomize: %v", k, c, fromKust[k])
		}
	}
	for _, k := range sortedKeys(fromChart) {
		if _, ok := fromKust[k]; !ok {
			t.Errorf("%s: in the chart, not in deploy/default", k)
		}
	}
	t.Logf("%d objects, equal", len(fromChart))

	cp := controlplane.Start(t)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := controlplane.WriteKubeconfig(cp.Config, kubeconfig); err != nil {
		t.Fatal(err)
	}
	apply := func(manifests, what string, extra ...string) {
		t.Helper()
		cmd := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig, "apply", "--server-side", "-f", "-"}, extra...)...)
		cmd.Stdin = strings.NewReader(manifests)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apply %s: %v\n%s", what, err, out)
		}
	}
	run(t, kubectl, "--kubeconfig", kubeconfig, "create", "namespace", "berth-system")
	apply(chart, "the chart")
	apply(kust, "deploy/default")

	custom := run(t, helm, "template", "berth", "helm/berth", "--namespace", "berth-system",
		"--set", "speaker.bgpListenPort=179", "--set", "speaker.memberlist.probeInterval=300ms",
		"--set", "speaker.frontDoor=false", "--set", "logLevel=verbose", "--set", "logFormat=json", "--set", "handleDefaultClass=false",
		"--set", "controller.image.repository=mirror/berth-controller", "--set", "controller.image.tag=v1")
	for _, want := range []string{"--bgp-listen-port=179", "--memberlist-probe-interval=300ms", "--front-door=false",
		"--log-level=verbose", "--log-format=json", "--handle-default-class=false", "image: mirror/berth-controller:v1"} {
		if !strings.Contains(custom, want) {
			t.Errorf("chart with values: no %q", want)
		}
	}
	apply(custom, "the chart with values", "--dry-run=server")

	// The observability values render deploy/observability's objects as they are, and the
	// dashboard as a ConfigMap the apiserver takes (the others need the Prometheus
	// Operator's CRDs, which the lab has not).
	obs := parse(t, run(t, helm, "template", "berth", "helm/berth", "--namespace", "berth-system",
		"--set", "metrics.podMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true",
		"--set", "metrics.grafanaDashboard.enabled=true", "--show-only", "templates/observability.yaml"))
	for k, want := range parse(t, run(t, kubectl, "kustomize", "observability")) {
		if got, ok := obs[k]; !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the chart's (observability values on) is not deploy/observability's:\nchart: %v", k, got)
		}
		delete(obs, k)
	}
	dashboard, err := os.ReadFile("observability/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	cm, ok := obs["ConfigMap berth-system/berth-grafana-dashboard"]
	if data, _ := cm["data"].(map[string]any); !ok || data["berth.json"] != string(dashboard) {
		t.Errorf("the chart's dashboard ConfigMap does not hold deploy/observability/grafana-dashboard.json: %v", cm)
	}
	if labels, _ := cm["metadata"].(map[string]any)["labels"].(map[string]any); labels["grafana_dashboard"] != "1" {
		t.Errorf("the dashboard ConfigMap lacks the label grafana_dashboard=1: %v", labels)
	}
	delete(obs, "ConfigMap berth-system/berth-grafana-dashboard")
	for k := range obs {
		t.Errorf("%s: rendered by templates/observability.yaml, not in deploy/observability", k)
	}
	cmYAML, err := sigsyaml.Marshal(cm)
	if err != nil {
		t.Fatal(err)
	}
	apply(string(cmYAML), "the dashboard ConfigMap", "--dry-run=server")
}

// helmBinary is the pinned helm `make helm` builds; the test fails naming it when missing.
func helmBinary(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("../hack/helm/build.sh", "--path").Output()
	if err != nil {
		t.Fatalf("hack/helm/build.sh --path: %v", err)
	}
	path := strings.TrimSpace(string(out))
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("helm not built (%v): run `make helm`", err)
	}
	return path
}

func kubectlBinary(t *testing.T) string {
	t.Helper()
	dir, err := controlplane.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, controlplane.Kubectl)
}

// run runs a command in deploy/ and returns its standard output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// parse splits a multi-document YAML stream into objects by key.
func parse(t *testing.T, s string) map[string]object {
	t.Helper()
	out := map[string]object{}
	dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(s), 4096)
	for {
		var o object
		if err := dec.Decode(&o); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("parse: %v", err)
		}
		if len(o) == 0 {
			continue
		}
		if _, dup := out[o.key()]; dup {
			t.Errorf("%s rendered twice", o.key())
		}
		out[o.key()] = o
	}
	return out
}

func sortedKeys(m map[string]object) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestStaticBinaries: berth's binaries build as the Dockerfiles build them (CGO off, the
// release tags) into static executables, which a scratch image can run: no ELF
// interpreter, no dynamic section.
func TestStaticBinaries(t *testing.T) {
	bin, err := lab.BuildBerth(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{bin.Controller, bin.Speaker} {
		f, err := elf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s is dynamically linked (%v)", filepath.Base(path), p.Type)
			}
		}
		f.Close()
	}
	for _, b := range []string{"berth-controller", "berth-speaker"} {
		df, err := os.ReadFile(filepath.Join("..", "cmd", b, "Dockerfile"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"CGO_ENABLED=0", "-tags " + lab.BuildTags, "FROM scratch", "./cmd/" + b} {
			if !strings.Contains(string(df), want) {
				t.Errorf("cmd/%s/Dockerfile lacks %q: it must build what the lab runs", b, want)
			}
		}
	}
}
