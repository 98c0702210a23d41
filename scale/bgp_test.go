//go:build scale

package scale

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/berthlb/berth/lab"
)

// bgpPool holds the BGP scenario's addresses: 16,384, a part of the lab's 198.18.0.0/15
// that nothing else uses (DESIGN.md, addressing).
var bgpPool = netip.MustParsePrefix("198.18.64.0/18")

const bgpConfig = `apiVersion: berth.dev/v1alpha1
kind: IPPool
metadata: {name: scale}
spec:
  addresses: ["198.18.64.0/18"]
  autoAssign: false
---
apiVersion: berth.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: scale}
spec:
  ipPools: [scale]
`

// servicesFromEnv is n, or BERTH_SCALE_SERVICES when set (a smaller run while working on
// a scenario; the report is made with the defaults).
func servicesFromEnv(n int) int { return intFromEnv("BERTH_SCALE_SERVICES", n) }

// nodesFromEnv is n, or BERTH_SCALE_NODES when set (a smaller site while working on a
// scenario).
func nodesFromEnv(n int) int { return intFromEnv("BERTH_SCALE_NODES", n) }

// intFromEnv is the positive number in the environment variable name, else n.
func intFromEnv(name string, n int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return n
}

// BenchmarkBGP10kServices: 10,000 LoadBalancer Services of berth's class from the BGP
// pool, each with an endpoint on every node, exist before berth-controller starts on a
// site of 3 nodes peering with FRR and BIRD (the demo's peers; no kube-proxy, which is not
// berth's cost). From the controller's start it measures the time until every Service
// holds its address (allocated-s), until FRR's kernel table routes every address through
// all three nodes (routed-s), and until every Service says so in its Announced condition
// (announced-s); the API writes berth's ServiceAccounts made per Service (the audit log);
// the CPU seconds of the controller and of the busiest speaker in that time; and their
// peak RSS. Then, with berth-controller held down, the same number of Services of another
// class are given to controller/internal/baseline, which makes the same API calls per
// Service with the same client settings and decides nothing: baseline-allocated-s is
// what the API alone costs.
func BenchmarkBGP10kServices(b *testing.B) {
	n := servicesFromEnv(10000)
	w := newWorld(b, lab.SiteOptions{Nodes: 3, NoKubeProxy: true}, true)
	w.apply(b, bgpConfig)
	ctx := b.Context()
	if err := w.berth.Controller.Stop(ctx, syscall.SIGTERM); err != nil {
		b.Fatal(err)
	}
	const ns = "scale"
	w.namespace(b, ns)
	created := createServices(b, 0, n, func(ctx context.Context, i int) error {
		return w.createService(ctx, ns, "scale", berthClass, i, w.site.Nodes())
	})
	b.Logf("created %d Services with their EndpointSlices in %v (%.0f/s)", n, created.Round(time.Millisecond), float64(n)/created.Seconds())

	tr := trackServices(b, w, ns)
	speakers0 := map[string]procUsage{}
	for node, sp := range w.berth.Speakers {
		u, err := readUsage(sp.Process().PID())
		if err != nil {
			b.Fatal(err)
		}
		speakers0[node] = u
	}
	start := time.Now()
	if err := w.berth.Controller.Start(ctx); err != nil {
		b.Fatal(err)
	}
	var routed time.Duration
	stopProgress := progress(b, start, func() string {
		alloc, ann := tr.counts()
		return fmt.Sprintf("%d allocated, %d announced", alloc, ann)
	})
	slowly(b, 15*time.Minute, fmt.Sprintf("FRR routes all %d addresses via 3 nodes and every Service is announced", n), func(ctx context.Context) (string, bool) {
		got, err := routedVia(ctx, w, bgpPool, 3)
		if err != nil {
			return err.Error(), false
		}
		if got == n && routed == 0 {
			routed = time.Since(start)
		}
		alloc, ann := tr.counts()
		return fmt.Sprintf("%d allocated, %d routed, %d announced", alloc, got, ann), routed > 0 && ann == n
	})
	stopProgress()
	allocated, announced := tr.doneAt(n)
	ctrl, err := readUsage(w.berth.Controller.Process().PID())
	if err != nil {
		b.Fatal(err)
	}
	var speakerCPU time.Duration
	var speakerPeak int64
	for node, sp := range w.berth.Speakers {
		u, err := readUsage(sp.Process().PID())
		if err != nil {
			b.Fatal(err)
		}
		speakerCPU = max(speakerCPU, u.CPU-speakers0[node].CPU)
		speakerPeak = max(speakerPeak, u.Peak)
	}
	writes, by, reads := w.berthWrites(b, start)
	b.Logf("from the controller's start: all %d allocated in %v, routed at FRR in %v, announced in %v",
		n, allocated.Sub(start).Round(time.Millisecond), routed.Round(time.Millisecond), announced.Sub(start).Round(time.Millisecond))
	b.Logf("API writes of berth: %.2f per Service (%d): %s", float64(writes)/float64(n), writes, formatCounts(by))
	b.Logf("other API requests of berth: %s", formatCounts(reads))
	b.Logf("berth-controller: %v CPU, peak RSS %.0f MB; busiest speaker: %v CPU, peak RSS of the largest %.0f MB",
		ctrl.CPU.Round(10*time.Millisecond), mb(ctrl.Peak), speakerCPU.Round(10*time.Millisecond), mb(speakerPeak))

	baseline := w.runBaseline(b, n)

	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(n), "services")
	b.ReportMetric(seconds(baseline), "baseline-allocated-s")
	b.ReportMetric(seconds(created), "created-s")
	b.ReportMetric(seconds(allocated.Sub(start)), "allocated-s")
	b.ReportMetric(seconds(routed), "routed-s")
	b.ReportMetric(seconds(announced.Sub(start)), "announced-s")
	b.ReportMetric(float64(writes)/float64(n), "api-writes/svc")
	b.ReportMetric(seconds(ctrl.CPU), "controller-cpu-s")
	b.ReportMetric(mb(ctrl.Peak), "controller-peak-rss-MB")
	b.ReportMetric(seconds(speakerCPU), "speaker-cpu-s")
	b.ReportMetric(mb(speakerPeak), "speaker-peak-rss-MB")
}

// serviceTracker records, from an informer, when each Service of a namespace first held
// an address and first had a true berth.dev/Announced condition.
type serviceTracker struct {
	mu        sync.Mutex
	allocated map[string]time.Time
	announced map[string]time.Time
}

func trackServices(b *testing.B, w *world, ns string) *serviceTracker {
	b.Helper()
	tr := &serviceTracker{allocated: map[string]time.Time{}, announced: map[string]time.Time{}}
	f := informers.NewSharedInformerFactoryWithOptions(w.kc, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Services().Informer()
	see := func(obj any) {
		svc, ok := obj.(*corev1.Service)
		if !ok {
			return
		}
		now := time.Now()
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if _, seen := tr.allocated[svc.Name]; !seen && len(svc.Status.LoadBalancer.Ingress) > 0 {
			tr.allocated[svc.Name] = now
		}
		if _, seen := tr.announced[svc.Name]; !seen && meta.IsStatusConditionTrue(svc.Status.Conditions, "berth.dev/Announced") {
			tr.announced[svc.Name] = now
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: see, UpdateFunc: func(_, o any) { see(o) }}); err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	b.Cleanup(func() { close(stop) })
	f.Start(stop)
	if !cache.WaitForCacheSync(b.Context().Done(), inf.HasSynced) {
		b.Fatal("the Services informer did not sync")
	}
	return tr
}

func (tr *serviceTracker) counts() (allocated, announced int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.allocated), len(tr.announced)
}

// allocatedAt returns when the n-th Service was allocated.
func (tr *serviceTracker) allocatedAt(n int) (time.Time, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var last time.Time
	for _, at := range tr.allocated {
		if at.After(last) {
			last = at
		}
	}
	return last, len(tr.allocated) >= n
}

// doneAt returns when the n-th Service was allocated and announced.
func (tr *serviceTracker) doneAt(n int) (allocated, announced time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	last := func(m map[string]time.Time) time.Time {
		var t time.Time
		for _, at := range m {
			if at.After(t) {
				t = at
			}
		}
		return t
	}
	if len(tr.allocated) < n || len(tr.announced) < n {
		return time.Time{}, time.Time{}
	}
	return last(tr.allocated), last(tr.announced)
}

// berthClass is berth's loadBalancerClass (deploy/ sets --load-balancer-class to it).
const berthClass = "berth.dev/lb"

// runBaseline holds berth-controller down, creates n Services of a class only the
// baseline handles, runs the baseline with berth-controller's default client settings
// until every one holds an address, and returns how long that took.
func (w *world) runBaseline(b *testing.B, n int) time.Duration {
	b.Helper()
	const ns, class = "baseline", "bench.berth.dev/baseline"
	ctx := b.Context()
	if err := w.berth.Controller.Stop(ctx, syscall.SIGTERM); err != nil {
		b.Fatal(err)
	}
	w.namespace(b, ns)
	createServices(b, 0, n, func(ctx context.Context, i int) error { return w.createService(ctx, ns, "", class, i, nil) })
	tr := trackServices(b, w, ns)
	log, err := os.Create(filepath.Join(w.site.Dir(), "baseline.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	defaults := controllerDefaults(b)
	cmd := exec.Command(baselineBin, "--kubeconfig", w.site.AdminKubeconfig(), "--kube-api-qps="+defaults["kube-api-qps"],
		"--kube-api-burst="+defaults["kube-api-burst"], "--workers="+defaults["workers"],
		"--load-balancer-class="+class, "--handle-default-class=false")
	cmd.Stdout, cmd.Stderr = log, log
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	slowly(b, 15*time.Minute, fmt.Sprintf("the baseline gives all %d Services an address", n), func(context.Context) (string, bool) {
		alloc, _ := tr.counts()
		return fmt.Sprintf("%d allocated", alloc), alloc == n
	})
	at, _ := tr.allocatedAt(n)
	took := at.Sub(start)
	b.Logf("baseline: all %d allocated in %v, with berth-controller's client settings %v", n, took.Round(time.Millisecond), defaults)
	return took
}

var flagDefault = regexp.MustCompile(`(?m)^\s+-(kube-api-qps|kube-api-burst|workers) \S+\n\s+.*\(default (\d+)\)`)

// controllerDefaults reads berth-controller's defaults of the client settings the
// baseline must share from its -help.
func controllerDefaults(b *testing.B) map[string]string {
	b.Helper()
	out, _ := exec.Command(bin.Controller, "-help").CombinedOutput() // exits 0 or 2 by Go version
	got := map[string]string{}
	for _, m := range flagDefault.FindAllStringSubmatch(string(out), -1) {
		got[m[1]] = m[2]
	}
	if len(got) != 3 {
		b.Fatalf("defaults of --kube-api-qps, --kube-api-burst and --workers not found in berth-controller -help:\n%s", out)
	}
	return got
}
