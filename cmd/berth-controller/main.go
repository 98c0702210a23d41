// Command berth-controller assigns LoadBalancer IPs from berth's pools: an external
// cloud-controller-manager built on k8s.io/cloud-provider.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/cmd/internal/kubeclient"
	"github.com/berthlb/berth/cmd/internal/logflags"
	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/controller"
	"github.com/berthlb/berth/version"
)

type options struct {
	kubeconfig  string
	namespace   string
	qps         float64
	burst       int
	leaderElect bool
	identity    string
	healthAddr  string
	showVersion bool
	controller  controller.Options
}

func main() {
	fs := flag.NewFlagSet("berth-controller", flag.ExitOnError)
	var o options
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "path to a kubeconfig; empty means in-cluster")
	fs.StringVar(&o.namespace, "namespace", envOr("POD_NAMESPACE", "berth-system"), "berth's namespace: leader Lease and memberlist Secret")
	fs.StringVar(&o.controller.LoadBalancerClass, "load-balancer-class", "berth.dev/lb", "loadBalancerClass handled by berth")
	fs.BoolVar(&o.controller.HandleDefaultClass, "handle-default-class", true, "also handle Services without a loadBalancerClass (false: touch only berth's class)")
	// Sized for thousands of Services: a cold start writes a finalizer, a status and a
	// condition per Service, and Events besides.
	fs.Float64Var(&o.qps, "kube-api-qps", 100, "client queries per second to the kube-apiserver")
	fs.IntVar(&o.burst, "kube-api-burst", 200, "client burst to the kube-apiserver")
	// Each sync waits on two or three writes in turn: at 8, a loaded apiserver's latency,
	// not the QPS, held a cold start of 1,000 Services to half the baseline's pace (make bench).
	fs.IntVar(&o.controller.Workers, "workers", 32, "Services synced at once by each loop")
	fs.StringVar(&o.controller.ClusterName, "cluster-name", "kubernetes", "cluster name given to the cloud-provider interface")
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "elect a leader on a Lease; only the leader allocates")
	fs.StringVar(&o.identity, "leader-elect-identity", envOr("POD_NAME", hostname()), "this replica's identity in the Lease")
	fs.StringVar(&o.healthAddr, "health-bind-address", ":10351", "address of /metrics, /healthz and /readyz; empty turns them off")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	var logs logflags.Options
	logs.AddFlags(fs)
	_ = fs.Parse(os.Args[1:])
	if err := logs.Apply(os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "berth-controller:", err)
		os.Exit(2)
	}
	if o.showVersion {
		fmt.Println("berth-controller", version.Version)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		klog.ErrorS(err, "berth-controller failed")
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func run(ctx context.Context, o options) error {
	logger := klog.FromContext(ctx)
	logger.Info("Starting berth-controller", "version", version.Version, "loadBalancerClass", o.controller.LoadBalancerClass,
		"handleDefaultClass", o.controller.HandleDefaultClass)
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	// The identity tells replicas apart in the apiserver's audit log: who wrote what.
	cfg.UserAgent = "berth-controller/" + version.Version + " (" + o.identity + ")"
	kc, err := kubernetes.NewForConfig(kubeclient.Protobuf(cfg))
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	crc, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	cache, err := crcache.New(cfg, crcache.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	// Events get a client of their own, with its own token bucket.
	ecfg := kubeclient.Protobuf(cfg)
	ecfg.UserAgent += " events"
	ec, err := kubernetes.NewForConfig(ecfg)
	if err != nil {
		return err
	}
	o.controller.EventClient = ec
	// So does the Announced condition, at half the rate: it must not slow allocation. Its
	// writes also wait while allocations are backlogged (a cold start of thousands of
	// Services), and a Service's changes merge in the queue meanwhile into one write.
	acfg := kubeclient.Protobuf(cfg)
	acfg.QPS, acfg.Burst = max(1, cfg.QPS/2), max(1, cfg.Burst/2)
	acfg.UserAgent += " announced"
	ac, err := kubernetes.NewForConfig(acfg)
	if err != nil {
		return err
	}
	o.controller.AnnouncedClient = ac
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o.controller.Registerer = reg
	ctrl, err := controller.New(kc, cache, crc, o.controller)
	if err != nil {
		return err
	}

	var elector *leaderelection.HealthzAdaptor
	if o.healthAddr != "" {
		elector = leaderelection.NewLeaderHealthzAdaptor(20 * time.Second)
		if err := serveHealth(ctx, o.healthAddr, elector, ctrl, reg, o.leaderElect); err != nil {
			return err
		}
	}

	lead := func(ctx context.Context) error {
		if err := controller.EnsureMemberlistSecret(ctx, kc, o.namespace); err != nil {
			return err
		}
		return ctrl.Run(ctx)
	}
	if !o.leaderElect {
		return lead(ctx)
	}
	return leaderElect(ctx, cfg, o, elector, lead)
}

// leaderElect runs lead while holding the Lease. Losing the lease ends the process: a
// restart re-reads every assignment instead of trusting state another leader changed.
func leaderElect(ctx context.Context, cfg *rest.Config, o options, hz *leaderelection.HealthzAdaptor, lead func(context.Context) error) error {
	kc, err := kubernetes.NewForConfig(rest.AddUserAgent(kubeclient.Protobuf(cfg), "leader-election"))
	if err != nil {
		return err
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, o.namespace, "berth-controller",
		kc.CoreV1(), kc.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: o.identity})
	if err != nil {
		return err
	}
	lost := errors.New("lost the leader lease")
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock,
		// Kubernetes' defaults for controller managers.
		LeaseDuration:   15 * time.Second,
		RenewDeadline:   10 * time.Second,
		RetryPeriod:     2 * time.Second,
		ReleaseOnCancel: true,
		WatchDog:        hz,
		Name:            "berth-controller",
		Callbacks: leaderelection.LeaderCallbacks{
			// The first cause wins: a lost lease, an error of lead, or the end of the process.
			// Run returns as soon as the lease is lost, without waiting for lead, so that a
			// replica that lost it stops writing at once (the process exits).
			OnStartedLeading: func(ctx context.Context) {
				err := lead(ctx)
				if ctx.Err() != nil {
					return // the lease was lost (OnStoppedLeading says so) or the process ends
				}
				cancel(cmp.Or(err, errors.New("leading ended on its own")))
			},
			OnStoppedLeading: func() { cancel(lost) },
		},
	})
	if err != nil {
		return err
	}
	le.Run(ctx)
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

// serveHealth serves /metrics, /healthz (the process and its lease are alive) and /readyz (this
// replica is a standby, or the leader has claimed every address and allocates). standby
// says whether a replica that is not leading may exist (leader election on).
func serveHealth(ctx context.Context, addr string, hz *leaderelection.HealthzAdaptor, ctrl *controller.Controller, reg *prometheus.Registry, standby bool) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("health endpoint: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := hz.Check(r); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-ctrl.Ready():
		default:
			// Without leader election there is no standby: not ready until claimed.
			if ctrl.Leading() || !standby {
				http.Error(w, "claiming addresses in use", http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	return nil
}
