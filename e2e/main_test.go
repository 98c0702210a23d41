//go:build e2e

package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/controlplane"
)

// env is the site every test of the suite shares, with berth and the demo installed.
// Tests make their own namespaces, Services and pools, and put back what they break.
var env struct {
	site  *lab.Site
	berth *lab.Installation
	kc    kubernetes.Interface // the admin
	cr    client.Client        // the admin, with berth's types
	nodes []string
}

// TestMain brings the site up once (building berth's binaries meanwhile), runs the
// tests, and then fails the suite if the apiserver refused any request of berth's
// ServiceAccounts: deploy/'s RBAC must allow everything the binaries do.
func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	v := 0
	if testing.Verbose() {
		v = 2
	}
	ctx := klog.NewContext(context.Background(),
		textlogger.NewLogger(textlogger.NewConfig(textlogger.Verbosity(v), textlogger.Output(os.Stderr))))
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: needs root (network namespaces, nftables, routers): run `sudo make e2e`")
		return 1
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	base, err := os.MkdirTemp("/run", "berth-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(base)
	if err := os.Chmod(base, 0o755); err != nil { // FRR's user must reach its directory
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	begin := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	bins := make(chan error, 1)
	var bin lab.Berth
	go func() {
		var err error
		bin, err = lab.BuildBerth(sctx, base+"/bin")
		bins <- err
	}()
	site, err := lab.Start(sctx, lab.SiteOptions{Nodes: 3, BaseDir: base})
	if err != nil {
		<-bins
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := site.Close(cctx); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: close the site:", err)
		}
	}()
	if err := <-bins; err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	inst, err := site.InstallBerth(sctx, lab.InstallOptions{Bin: bin, DeployDir: root + "/deploy", Demo: true,
		ControllerArgs: []string{"--log-level=verbose"}, SpeakerArgs: []string{"--log-level=verbose"}})
	if err == nil {
		_, err = site.WaitDemo(sctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		report(site)
		return 1
	}
	fmt.Printf("e2e: site %s with berth and the demo up in %v; kube-proxy --min-sync-period=%v\n",
		site.Prefix(), time.Since(begin).Round(time.Millisecond), controlplane.KubeProxyMinSyncPeriod)

	env.site, env.berth = site, inst
	cfg := rest.CopyConfig(site.Config())
	cfg.QPS, cfg.Burst = 200, 400
	env.kc = kubernetes.NewForConfigOrDie(cfg)
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	if env.cr, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	for _, n := range site.Nodes() {
		env.nodes = append(env.nodes, n.Name)
	}

	code := m.Run()
	if code != 0 {
		report(site)
	}
	forbidden, err := site.Cluster().Forbidden(controlplane.ServiceAccountsIn(lab.BerthNamespace))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: read the audit log:", err)
		return 1
	}
	var b strings.Builder
	for user, evs := range forbidden {
		// Events about objects of a test namespace being deleted are refused by the
		// namespace's lifecycle, not by RBAC.
		evs = slices.DeleteFunc(evs, func(e controlplane.AuditEvent) bool {
			return strings.Contains(e.ResponseStatus.Message, "because it is being terminated")
		})
		if len(evs) > 0 {
			fmt.Fprintf(&b, "  %s: %d requests, e.g. %s: %s\n", user, len(evs), evs[0], evs[0].ResponseStatus.Message)
		}
	}
	if b.Len() > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the apiserver refused (403) requests of berth's ServiceAccounts; deploy/base/rbac.yaml misses permissions:\n%s", b.String())
		return 1
	}
	fmt.Println("e2e: no request of berth's ServiceAccounts was refused (audit log)")
	return code
}

// report prints the site's state and the tail of berth's logs, for a failed run.
func report(site *lab.Site) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b strings.Builder
	site.Report(ctx, &b)
	fmt.Fprintf(os.Stderr, "site report:\n%s\n", b.String())
}
