// Command berth-speaker runs on every node and announces LoadBalancer IPs over BGP or with
// ARP/NDP.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/bgp"
	"github.com/berthlb/berth/cmd/internal/kubeclient"
	"github.com/berthlb/berth/cmd/internal/logflags"
	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/controller"
	"github.com/berthlb/berth/datapath"
	"github.com/berthlb/berth/l2"
	"github.com/berthlb/berth/speaker"
	"github.com/berthlb/berth/speaker/membership"
	"github.com/berthlb/berth/version"
)

type options struct {
	kubeconfig           string
	nodeName             string
	namespace            string
	keyFile              string
	keyDir               string
	bind                 string
	port                 int
	qps                  float64
	burst                int
	healthAddr           string
	decisionsSock        string
	classes              speaker.Classes
	timings              membership.Timings
	showVersion          bool
	leaveTimeout         time.Duration
	handoverGrace        time.Duration
	reportInterval       time.Duration
	bgpListenPort        int
	frontDoor            bool
	kubeProxyHealthzPort int
}

// frontDoorCheck is how often the front door's table is read back and repaired.
const frontDoorCheck = 5 * time.Second

// gcPercent is the speaker's GOGC unless the environment sets one. It runs on every node
// and its heap is mostly long-lived caches (Services, EndpointSlices, decisions): Go's
// default 100 % headroom would double them for garbage that a mostly idle process makes
// slowly. 50 trades a little GC CPU for a third less memory (docs/speaker.md).
const gcPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	fs := flag.NewFlagSet("berth-speaker", flag.ExitOnError)
	var o options
	o.timings = membership.DefaultTimings()
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "path to a kubeconfig; empty means in-cluster")
	fs.StringVar(&o.nodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (default: $NODE_NAME from the downward API)")
	fs.StringVar(&o.namespace, "namespace", envOr("POD_NAMESPACE", "berth-system"), "berth's namespace, where berth-controller keeps the memberlist Secret")
	fs.StringVar(&o.keyDir, "memberlist-key-dir", "", "directory of the Secret "+controller.MemberlistSecretName+" mounted: file key is memberlist's primary AES key, every other file a key also accepted; read again every 5s, so keys rotate live. Empty (and no --memberlist-key-file): the Secret is watched through the apiserver")
	fs.StringVar(&o.keyFile, "memberlist-key-file", "", "file holding memberlist's AES key alone (no accepted keys, so no rotation without members dropping out; prefer --memberlist-key-dir); read again every 5s")
	fs.StringVar(&o.bind, "memberlist-bind-address", os.Getenv("NODE_IP"), "node address memberlist binds and advertises (default: $NODE_IP, else the Node's first InternalIP)")
	fs.IntVar(&o.port, "memberlist-port", 7946, "memberlist's TCP and UDP port")
	fs.DurationVar(&o.timings.ProbeInterval, "memberlist-probe-interval", o.timings.ProbeInterval, "how often each member probes another")
	fs.DurationVar(&o.timings.ProbeTimeout, "memberlist-probe-timeout", o.timings.ProbeTimeout, "how long a probe waits for its ack")
	fs.IntVar(&o.timings.SuspicionMult, "memberlist-suspicion-mult", o.timings.SuspicionMult, "suspicion timeout, in probe intervals (scaled by log10 of the cluster size)")
	fs.DurationVar(&o.timings.GossipInterval, "memberlist-gossip-interval", o.timings.GossipInterval, "how often members gossip")
	fs.DurationVar(&o.timings.PushPullInterval, "memberlist-push-pull-interval", o.timings.PushPullInterval, "how often members exchange full state")
	fs.DurationVar(&o.leaveTimeout, "memberlist-leave-timeout", time.Second, "how long a stopping speaker waits for its leave to spread, so others take its IPs at once")
	fs.DurationVar(&o.handoverGrace, "handover-grace", 300*time.Millisecond, "how long a stopping speaker keeps answering ARP/NDP after leaving, while the new owners announce")
	fs.StringVar(&o.classes.LoadBalancerClass, "load-balancer-class", "berth.dev/lb", "loadBalancerClass handled by berth (as berth-controller's flag)")
	fs.BoolVar(&o.classes.HandleDefaultClass, "handle-default-class", true, "also handle Services without a loadBalancerClass (as berth-controller's flag)")
	fs.Float64Var(&o.qps, "kube-api-qps", 20, "client queries per second to the kube-apiserver")
	fs.IntVar(&o.burst, "kube-api-burst", 40, "client burst to the kube-apiserver")
	fs.StringVar(&o.healthAddr, "health-bind-address", ":10352", "address of /metrics, /healthz, /readyz and /decisions; empty turns them off")
	fs.StringVar(&o.decisionsSock, "decisions-socket", "", "unix socket also serving the read-only /decisions; empty: none")
	fs.DurationVar(&o.reportInterval, "report-interval", time.Second, "least time between writes of this node's NodeAnnouncement")
	fs.BoolVar(&o.frontDoor, "front-door", true, "drop traffic to LB IPs but for their Service ports, ICMP errors and neighbour discovery, and deliver ipMode Proxy IPs (nftables table inet berth)")
	fs.IntVar(&o.kubeProxyHealthzPort, "kube-proxy-healthz-port", speaker.DefaultKubeProxyHealthzPort, "port of other nodes' kube-proxy health check, which decides whether ipMode Proxy traffic goes to their NodePorts; 0: check none, every node counts healthy")
	fs.IntVar(&o.bgpListenPort, "bgp-listen-port", -1, "TCP port to accept BGP sessions on (179 lets routers open them); -1: do not listen, this node dials every peer")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	var logs logflags.Options
	logs.AddFlags(fs)
	_ = fs.Parse(os.Args[1:])
	if err := logs.Apply(os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "berth-speaker:", err)
		os.Exit(2)
	}
	if o.showVersion {
		fmt.Println("berth-speaker", version.Version)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		klog.ErrorS(err, "berth-speaker failed")
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, o options) error {
	if o.nodeName == "" {
		return errors.New("--node-name (or $NODE_NAME) is required")
	}
	logger := klog.FromContext(ctx)
	logger.Info("Starting berth-speaker", "version", version.Version, "node", o.nodeName)
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	cfg.UserAgent = "berth-speaker/" + version.Version
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

	keys, err := memberlistKeys(ctx, kc, o)
	if err != nil {
		return err
	}
	bind, err := bindAddress(ctx, kc, o)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := speaker.NewMetrics()
	if err := metrics.Register(reg); err != nil {
		return err
	}

	var sp *speaker.Speaker
	announcer, err := l2.New(l2.Config{
		Logger: logger.WithName("l2"), Registerer: reg,
		BerthMAC:   func(mac net.HardwareAddr) bool { return sp.BerthMAC(mac) },
		OnConflict: func(c l2.Conflict) { sp.L2Conflict(c) },
		Withheld:   func() bool { return sp.L2Withheld() },
	})
	if err != nil {
		return fmt.Errorf("l2: %w", err)
	}
	routerID, err := routerID(ctx, kc, o, bind)
	if err != nil {
		return err
	}
	bgpServer, err := bgp.New(bgp.Config{RouterID: routerID, ListenPort: int32(o.bgpListenPort), Logger: logger, Registerer: reg})
	if err != nil {
		return err
	}
	if err := bgpServer.Start(ctx); err != nil {
		return err
	}
	logger.Info("BGP up", "routerID", routerID, "listenPort", o.bgpListenPort)
	changed := make(chan struct{}, 1)
	list, err := membership.New(membership.Config{
		Name: o.nodeName, Bind: netip.AddrPortFrom(bind, uint16(o.port)), Keys: keys, Timings: o.timings,
		Meta:     membership.Meta{DecisionVersion: speaker.NewestVersion()},
		OnChange: func() { wakeUp(changed) },
		// Others may have taken this node's L2 IPs while they suspected it: claim them back.
		OnRefute: announcer.Reannounce,
		Logger:   logger.WithName("memberlist"),
	})
	if err != nil {
		return fmt.Errorf("memberlist: %w", err)
	}
	if err := reg.Register(list.Collector()); err != nil {
		return err
	}
	logger.Info("Memberlist up", "bind", netip.AddrPortFrom(bind, uint16(o.port)))

	events := record.NewBroadcaster(record.WithContext(ctx))
	events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kc.CoreV1().Events("")})
	defer events.Shutdown()
	logger.Info("Memberlist keys in use", "primary", membership.Fingerprint(keys.Primary), "accepted", fingerprints(keys.Accepted))
	go followKeys(ctx, kc, o, list, events.NewRecorder(scheme, corev1.EventSource{Component: "berth-speaker", Host: o.nodeName}))
	opts := speaker.Options{
		Node: o.nodeName, Classes: o.classes, Client: kc, Cache: cache, CRClient: crc,
		Members: speaker.Memberlist(list), Interfaces: speaker.UsableInterfaces,
		ReportInterval: o.reportInterval, Metrics: metrics, L2: announcer, BGP: bgpServer, Namespace: o.namespace,
		Recorder: events.NewRecorder(scheme, corev1.EventSource{Component: "berth-speaker", Host: o.nodeName}),
	}
	if o.frontDoor {
		door := datapath.NewTable()
		opts.FrontDoor = door
		opts.KubeProxyHealthzPort = o.kubeProxyHealthzPort
		go door.Run(ctx, frontDoorCheck, func(found, want datapath.Status, err error) {
			if err != nil {
				logger.Error(err, "Front door drifted and could not be repaired", "node", o.nodeName, "found", found, "want", want)
				return
			}
			logger.Info("Front door drifted; repaired", "node", o.nodeName, "found", found, "want", want)
		})
		// Deferred first, so it runs last: the door stays shut while the node leaves.
		defer func() {
			if err := door.Remove(context.WithoutCancel(ctx)); err != nil {
				logger.Error(err, "Remove the front door")
			}
		}()
	}
	if !o.frontDoor { // what a killed speaker with the door left behind
		if err := datapath.NewTable().Remove(ctx); err != nil {
			logger.Error(err, "Remove a left-over front door")
		}
	}
	sp = speaker.New(opts)
	// The announcer outlives ctx: on the way out this node leaves memberlist, the others
	// take its IPs and announce them, and only then does it stop answering.
	annCtx, stopAnnouncer := context.WithCancel(context.WithoutCancel(ctx))
	annDone := make(chan struct{})
	go func() {
		defer close(annDone)
		if err := announcer.Run(annCtx); err != nil {
			logger.Error(err, "L2 announcer stopped")
		}
	}()
	defer func() {
		if err := list.Leave(o.leaveTimeout); err != nil {
			logger.Error(err, "Leave memberlist")
		}
		time.Sleep(o.handoverGrace) // the others' takeover, then silence here
		stopAnnouncer()
		<-annDone
		_ = list.Shutdown()
	}()
	// Deferred after the leave, so it runs before: the routers move traffic away
	// (GRACEFUL_SHUTDOWN, then withdrawals) while memberlist still counts this node.
	// 10,000 paths take a few seconds (GRACEFUL_SHUTDOWN, then withdrawals: docs/speaker.md);
	// the bound stays well inside Kubernetes' default 30 s grace period. Past it, exiting
	// closes the sessions and the routers drop the rest at once.
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		if err := bgpServer.Shutdown(sctx); err != nil {
			logger.Error(err, "BGP shutdown")
		}
	}()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				sp.MembersChanged()
			}
		}
	}()
	if err := serve(ctx, o, sp, reg); err != nil {
		return err
	}
	return sp.Run(ctx)
}

func wakeUp(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// bindAddress is the flag's address, else the Node's first InternalIP.
func bindAddress(ctx context.Context, kc kubernetes.Interface, o options) (netip.Addr, error) {
	if o.bind != "" {
		a, err := netip.ParseAddr(o.bind)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("--memberlist-bind-address: %w", err)
		}
		return a, nil
	}
	n, err := kc.CoreV1().Nodes().Get(ctx, o.nodeName, metav1.GetOptions{})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("memberlist bind address: read Node %s: %w", o.nodeName, err)
	}
	a, ok := speaker.InternalIP(n)
	if !ok {
		return netip.Addr{}, fmt.Errorf("memberlist bind address: Node %s has no InternalIP; set --memberlist-bind-address", o.nodeName)
	}
	return a, nil
}

// routerID is this node's BGP identifier: its IPv4 address (the bind address, else the
// Node's first IPv4 InternalIP), else a hash of its name (bgp.RouterIDFor).
func routerID(ctx context.Context, kc kubernetes.Interface, o options, bind netip.Addr) (netip.Addr, error) {
	if bind.Unmap().Is4() {
		return bgp.RouterIDFor(o.nodeName, bind.Unmap()), nil
	}
	n, err := kc.CoreV1().Nodes().Get(ctx, o.nodeName, metav1.GetOptions{})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("BGP router ID: read Node %s: %w", o.nodeName, err)
	}
	var v4 netip.Addr
	for _, a := range n.Status.Addresses {
		if ip, err := netip.ParseAddr(a.Address); err == nil && a.Type == corev1.NodeInternalIP && ip.Unmap().Is4() {
			v4 = ip.Unmap()
			break
		}
	}
	return bgp.RouterIDFor(o.nodeName, v4), nil
}

// serve starts /metrics, /healthz, /readyz and /decisions on the health address, and
// /decisions alone on the unix socket.
func serve(ctx context.Context, o options, sp *speaker.Speaker, reg *prometheus.Registry) error {
	decisions := speaker.DecisionsHandler(sp.Decisions)
	if o.healthAddr != "" {
		ln, err := net.Listen("tcp", o.healthAddr)
		if err != nil {
			return fmt.Errorf("health endpoint: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
			if !sp.Ready() {
				http.Error(w, "caches not synced", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		mux.Handle("/decisions", decisions)
		go httpServe(ctx, ln, mux)
	}
	if o.decisionsSock != "" {
		_ = os.Remove(o.decisionsSock)
		ln, err := net.Listen("unix", o.decisionsSock)
		if err != nil {
			return fmt.Errorf("decisions socket: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/decisions", decisions)
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		go httpServe(ctx, ln, mux)
	}
	return nil
}

func httpServe(ctx context.Context, ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
		if strings.HasPrefix(ln.Addr().Network(), "unix") {
			_ = os.Remove(ln.Addr().String())
		}
	}()
	_ = srv.Serve(ln)
}
