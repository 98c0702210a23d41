//go:build scale

package scale

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/controlplane"
	"github.com/berthlb/berth/lab/netns"
)

// world is one lab site with berth installed from deploy/, as make demo installs it.
type world struct {
	site  *lab.Site
	berth *lab.Installation
	// kc is the admin at a rate that never holds the scenario back.
	kc kubernetes.Interface
}

// newWorld starts a site and installs berth (with deploy/lab/demo when demo is set: the
// routers peer with every node); the site goes with the benchmark.
func newWorld(b *testing.B, opts lab.SiteOptions, demo bool, speakerArgs ...string) *world {
	b.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	base, err := os.MkdirTemp("/run", "berth-scale-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil { // FRR's user must reach its directory
		b.Fatal(err)
	}
	opts.BaseDir = base
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	begin := time.Now()
	site, err := lab.Start(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := site.Close(ctx); err != nil {
			b.Errorf("close the site: %v", err)
		}
	})
	// BERTH_SCALE_CONTROLLER_ARGS adds flags to berth-controller, to try other settings;
	// the report is made with the defaults.
	inst, err := site.InstallBerth(ctx, lab.InstallOptions{Bin: bin, DeployDir: filepath.Join(root, "deploy"), Demo: demo,
		ControllerArgs: strings.Fields(os.Getenv("BERTH_SCALE_CONTROLLER_ARGS")), SpeakerArgs: speakerArgs})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("site %s: %d nodes with berth up in %v", site.Prefix(), len(site.Nodes()), time.Since(begin).Round(time.Millisecond))
	cfg := rest.CopyConfig(site.Config())
	cfg.QPS, cfg.Burst = 5000, 5000
	return &world{site: site, berth: inst, kc: kubernetes.NewForConfigOrDie(cfg)}
}

// apply applies YAML with kubectl.
func (w *world) apply(b *testing.B, yaml string) {
	b.Helper()
	file := filepath.Join(b.TempDir(), "apply.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := w.site.Kubectl(b.Context(), "apply", "--server-side", "-f", file); err != nil {
		b.Fatal(err)
	}
}

// lbService is Service i of a scenario: a LoadBalancer Service without a selector (the
// scenario writes its EndpointSlice), from pool, IPv4 only, with no NodePorts, of class
// (none when empty).
func lbService(ns, pool, class string, i int) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("svc-%05d", i),
			Annotations: map[string]string{"berth.dev/pool": pool}},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			AllocateLoadBalancerNodePorts: new(false),
			IPFamilies:                    []corev1.IPFamily{corev1.IPv4Protocol},
			Ports:                         []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
		},
	}
	if class != "" {
		svc.Spec.LoadBalancerClass = new(class)
	}
	return svc
}

// endpointSlice gives Service name one ready endpoint on each of nodes.
func endpointSlice(ns, name string, nodes []*lab.Node, i int) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: new("http"), Port: new(int32(8080)), Protocol: new(corev1.ProtocolTCP)}},
	}
	for _, n := range nodes {
		a := n.PodCIDR4.Addr().As4()
		a[3] = byte(10 + i%240) // a Pod address of the node's /24
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{netip.AddrFrom4(a).String()},
			NodeName: new(n.Name), Conditions: discoveryv1.EndpointConditions{Ready: new(true)}})
	}
	return es
}

// createServices runs create for from..to-1 with 32 workers in parallel, and returns how
// long it took.
func createServices(b *testing.B, from, to int, create func(ctx context.Context, i int) error) time.Duration {
	b.Helper()
	begin := time.Now()
	work := make(chan int)
	errs := make(chan error, 32)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range work {
				if err := create(b.Context(), i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
feed:
	for i := from; i < to; i++ {
		select {
		case work <- i:
		case err := <-errs:
			b.Error(err)
			break feed
		}
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Error(err)
	}
	if b.Failed() {
		b.FailNow()
	}
	return time.Since(begin)
}

// createService creates Service i and, when nodes are given, its EndpointSlice.
func (w *world) createService(ctx context.Context, ns, pool, class string, i int, nodes []*lab.Node) error {
	svc := lbService(ns, pool, class, i)
	if len(nodes) > 0 {
		if _, err := w.kc.DiscoveryV1().EndpointSlices(ns).Create(ctx, endpointSlice(ns, svc.Name, nodes, i), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("endpoints of %s: %w", svc.Name, err)
		}
	}
	if _, err := w.kc.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create %s: %w", svc.Name, err)
	}
	return nil
}

// namespace creates namespace name.
func (w *world) namespace(b *testing.B, name string) {
	b.Helper()
	if _, err := w.kc.CoreV1().Namespaces().Create(b.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
}

// procUsage is a process's CPU time so far and its peak resident set.
type procUsage struct {
	CPU  time.Duration
	Peak int64 // bytes
}

// readUsage reads /proc/PID/stat and /proc/PID/status.
func readUsage(pid int) (procUsage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procUsage{}, err
	}
	// comm may hold spaces: the fields after it start past the last ')'.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 13 {
		return procUsage{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // fields 14 and 15 of stat(5)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	u := procUsage{CPU: time.Duration(utime+stime) * time.Second / clockTicks}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procUsage{}, err
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			u.Peak = kb << 10
		}
	}
	return u, nil
}

// clockTicks is USER_HZ, 100 on Linux everywhere that matters.
const clockTicks = 100

// berthWrites counts the apiserver's completed write requests (create, update, patch,
// delete) of berth's ServiceAccounts since since, by "user-agent verb resource[/subresource]",
// and their other requests (reads) likewise.
func (w *world) berthWrites(b *testing.B, since time.Time) (total int, by, reads map[string]int) {
	b.Helper()
	events, err := controlplane.ReadAuditFile(w.site.Cluster().AuditLog)
	if err != nil {
		b.Fatal(err)
	}
	berth := controlplane.ServiceAccountsIn(lab.BerthNamespace)
	by, reads = map[string]int{}, map[string]int{}
	for _, e := range events {
		if e.RequestReceivedTimestamp.Before(since) || !berth(e.User.Username) || e.ObjectRef == nil {
			continue
		}
		write := false
		switch e.Verb {
		case "create", "update", "patch", "delete":
			write = true
		}
		res := e.ObjectRef.Resource
		if e.ObjectRef.Subresource != "" {
			res += "/" + e.ObjectRef.Subresource
		}
		// The user agent tells berth's clients apart (berth-controller's events and
		// announced clients add their names to it).
		agent := e.UserAgent
		if !write {
			reads[agent+" "+e.Verb+" "+res]++
			continue
		}
		by[agent+" "+e.Verb+" "+res]++
		total++
	}
	return total, by, reads
}

// formatCounts prints counts sorted by key.
func formatCounts(m map[string]int) string {
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
	var s []string
	for _, k := range keys {
		s = append(s, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(s, ", ")
}

// routedVia counts the prefixes in pool that FRR's kernel table routes through exactly
// width next hops (any number when width < 0).
func routedVia(ctx context.Context, w *world, pool netip.Prefix, width int) (int, error) {
	routes, err := w.site.Network().FRR.KernelRoutes(ctx, netns.IPv4)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range routes {
		if r.Dst.Bits() == 32 && pool.Contains(r.Dst.Addr()) && (width < 0 || len(r.Gateways) == width) {
			n++
		}
	}
	return n, nil
}

// seconds is d in seconds, for ReportMetric.
func seconds(d time.Duration) float64 { return d.Seconds() }

// mb is bytes in MB (2^20), for ReportMetric.
func mb(n int64) float64 { return float64(n) / (1 << 20) }

// percentile returns the p-th percentile (0-100) of sorted samples.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}

// progress logs what state says every 5 s until the returned function is called.
func progress(b *testing.B, since time.Time, state func() string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				b.Logf("%5.0fs: %s", time.Since(since).Seconds(), state())
			case <-done:
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// slowly is lab.Eventually for conditions that are costly to check (thousands of routes,
// every NodeAnnouncement): it polls once a second, so that the check does not load the
// machine it measures.
func slowly(b *testing.B, timeout time.Duration, what string, cond func(context.Context) (string, bool)) {
	b.Helper()
	if _, err := lab.Poll(b.Context(), time.Second, timeout, what, cond); err != nil {
		b.Fatal(err)
	}
}
