package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/berthlb/berth/lab/proc"
)

// Component names, also the names of their processes and log files in the runner.
const (
	Etcd              = "etcd"
	APIServer         = "kube-apiserver"
	ControllerManager = "kube-controller-manager"
	Scheduler         = "kube-scheduler"
	KubeProxy         = "kube-proxy"
	// Kubectl is built with the others; the lab applies deploy/ with it.
	Kubectl = "kubectl"
)

// Controllers are the kube-controller-manager controllers the lab runs: enough for
// Deployments, EndpointSlices, namespaces and garbage collection. Never
// node-lifecycle-controller: no kubelet heartbeats a real node status, so it would taint
// the Nodes and evict every Pod. No serviceaccount-token-controller either: every token
// comes from the TokenRequest API.
const Controllers = "endpointslice-controller,endpointslice-mirroring-controller,endpoints-controller," +
	"serviceaccount-controller,namespace-controller,garbage-collector-controller," +
	"replicaset-controller,deployment-controller"

// ServiceAccountIssuer is the issuer of the lab's ServiceAccount tokens.
const ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

// Options configure Up.
type Options struct {
	// Dir is the run directory (an absolute path): PKI, etcd's data, kubeconfigs and the
	// audit log. Up creates it; Down leaves it for post-mortems.
	Dir string
	// BinDir holds the binaries; BinDir() when empty.
	BinDir string
	// Runner starts the processes, and holds their logs and pid files; a Runner over Dir
	// when nil. Down stops only what Up started.
	Runner *proc.Runner
	// ServiceCIDRs are the Service cluster IP ranges, primary family first; the lab's
	// ServiceCIDRs when empty.
	ServiceCIDRs []netip.Prefix
	// CRDDirs hold CRDs to install before Up returns.
	CRDDirs []string
	// Verbosity is the components' klog -v level.
	Verbosity int
}

// Cluster is a running control plane: etcd, kube-apiserver (RBAC and audit logging on),
// kube-controller-manager and kube-scheduler, all on 127.0.0.1.
type Cluster struct {
	// Dir is the run directory.
	Dir string
	// BinDir holds the binaries.
	BinDir string
	// APIServer is the apiserver's address; Server is its URL.
	APIServer netip.AddrPort
	Server    string
	// Config and Client are an admin (system:masters) client; AdminKubeconfig is a
	// kubeconfig file for the same user, for kubectl from a shell.
	Config          *rest.Config
	Client          kubernetes.Interface
	AdminKubeconfig string
	// AuditLog is the apiserver's audit log: one JSON event per line, every request at
	// Metadata level (see ReadAudit and Forbidden).
	AuditLog string
	// ServiceCIDRs are the Service cluster IP ranges.
	ServiceCIDRs []netip.Prefix

	ca        *authority
	runner    *proc.Runner
	ownRunner bool

	mu    sync.Mutex
	procs []*proc.Process
	specs map[string]component // by name: how Start runs a stopped component again
	// warmups are the times the apiserver was starting: serving, but not yet ready.
	warmups []window
	down    bool
}

// window is a span of time; a zero end means it has not ended.
type window struct{ from, to time.Time }

func (w window) contains(t time.Time) bool {
	return !t.Before(w.from) && (w.to.IsZero() || !t.After(w.to))
}

// apiserverStarting records that the apiserver starts now; ready marks it ready.
func (c *Cluster) apiserverStarting() (ready func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := len(c.warmups)
	c.warmups = append(c.warmups, window{from: time.Now()})
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.warmups[i].to = time.Now()
	}
}

// component is how one component runs and when it counts as healthy.
type component struct {
	spec    proc.Spec
	healthy func(context.Context) error
}

// Up starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler with a fresh
// PKI and free loopback ports, and returns when all four are healthy. On failure it stops
// what it started. Binaries missing is an error wrapping ErrBinariesMissing that names the
// make target.
func Up(ctx context.Context, opts Options) (*Cluster, error) {
	logger := klog.FromContext(ctx).WithName("controlplane")
	start := time.Now()
	c, err := newCluster(opts)
	if err != nil {
		return nil, err
	}
	if err := c.up(ctx, opts); err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		return nil, errors.Join(fmt.Errorf("control plane in %s: %w", c.Dir, err), c.Down(dctx))
	}
	logger.V(2).Info("Control plane up", "server", c.Server, "dir", c.Dir, "duration", time.Since(start))
	return c, nil
}

func newCluster(opts Options) (*Cluster, error) {
	if !filepath.IsAbs(opts.Dir) {
		return nil, fmt.Errorf("control plane: run directory %q is not absolute", opts.Dir)
	}
	if opts.BinDir == "" {
		dir, err := BinDir()
		if err != nil {
			return nil, err
		}
		opts.BinDir = dir
	}
	for _, b := range []string{Etcd, APIServer, ControllerManager, Scheduler} {
		if _, err := os.Stat(filepath.Join(opts.BinDir, b)); err != nil {
			return nil, fmt.Errorf("%w: %s not found in %s: run `%s`", ErrBinariesMissing, b, opts.BinDir, MakeTarget)
		}
	}
	cidrs := opts.ServiceCIDRs
	if len(cidrs) == 0 {
		for _, s := range strings.Split(ServiceCIDRs, ",") {
			cidrs = append(cidrs, netip.MustParsePrefix(s))
		}
	}
	c := &Cluster{Dir: opts.Dir, BinDir: opts.BinDir, ServiceCIDRs: cidrs, runner: opts.Runner,
		AuditLog: filepath.Join(opts.Dir, "audit.log")}
	if c.runner == nil {
		r, err := proc.New(opts.Dir)
		if err != nil {
			return nil, err
		}
		c.runner, c.ownRunner = r, true
	}
	return c, nil
}

// ports are the loopback ports of one run, picked free so parallel runs never collide.
type ports struct {
	etcdClient, etcdPeer, api, kcm, scheduler int
}

func (c *Cluster) up(ctx context.Context, opts Options) error {
	logger, start := klog.FromContext(ctx).WithName("controlplane"), time.Now()
	pkiDir := filepath.Join(c.Dir, "pki")
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		return err
	}
	free, err := freePorts(5)
	if err != nil {
		return err
	}
	p := ports{etcdClient: free[0], etcdPeer: free[1], api: free[2], kcm: free[3], scheduler: free[4]}
	c.APIServer = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(p.api))
	c.Server = "https://" + c.APIServer.String()

	if c.ca, err = newAuthority(pkiDir); err != nil {
		return err
	}
	serving, err := c.ca.issue("apiserver", APIServer, nil, servingHosts(), c.servingIPs(), true)
	if err != nil {
		return err
	}
	admin, err := c.ca.issue("client-admin", AdminUser, []string{"system:masters"}, nil, nil, false)
	if err != nil {
		return err
	}
	c.Config = restConfig(c.APIServer, c.ca.certPEM, admin)
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return err
	}
	c.AdminKubeconfig = filepath.Join(c.Dir, "kubeconfig", "admin.kubeconfig")
	if err := c.writeKubeconfig(c.AdminKubeconfig, AdminUser,
		&clientcmdapi.AuthInfo{ClientCertificate: admin.CertPath, ClientKey: admin.KeyPath}); err != nil {
		return err
	}
	kcmConfig, err := c.ClientKubeconfig(ControllerManager, ControllerManagerUser)
	if err != nil {
		return err
	}
	schedConfig, err := c.ClientKubeconfig(Scheduler, SchedulerUser)
	if err != nil {
		return err
	}
	saKey, saPub, err := writeSigningKey(pkiDir)
	if err != nil {
		return err
	}
	policy := filepath.Join(c.Dir, "audit-policy.yaml")
	if err := writeFile(policy, []byte(auditPolicy)); err != nil {
		return err
	}

	v := "-v=" + strconv.Itoa(opts.Verbosity)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", p.etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", p.etcdPeer)
	// The apiserver starts alongside etcd: it retries until etcd answers, which saves
	// etcd's start-up time from the critical path.
	etcd, err := c.start(ctx, Etcd,
		"--name=lab", "--data-dir="+filepath.Join(c.Dir, "etcd"), "--unsafe-no-fsync",
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=lab="+peerURL, "--log-level=warn")
	if err != nil {
		return err
	}
	c.healthCheck(Etcd, func(ctx context.Context) error { return httpOK(ctx, etcdURL+"/health") })
	apiReady := c.apiserverStarting()
	api, err := c.start(ctx, APIServer, v,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(p.api),
		"--cert-dir="+filepath.Join(c.Dir, "apiserver"),
		"--tls-cert-file="+serving.CertPath, "--tls-private-key-file="+serving.KeyPath,
		"--client-ca-file="+c.ca.certPath(),
		"--authorization-mode=RBAC",
		"--service-account-issuer="+ServiceAccountIssuer,
		"--service-account-key-file="+saPub, "--service-account-signing-key-file="+saKey,
		"--service-cluster-ip-range="+joinPrefixes(c.ServiceCIDRs),
		// Pods need no ServiceAccount: the node agent mounts nothing, and a Pod created
		// before the serviceaccount controller made "default" would be refused.
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		"--audit-policy-file="+policy, "--audit-log-path="+c.AuditLog,
		"--audit-log-format=json", "--audit-log-mode=blocking", "--audit-log-maxsize=0",
		"--profiling=false")
	if err != nil {
		return err
	}
	var lastChecks string
	apiHealthy := func(ctx context.Context) error {
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").Param("verbose", "1").DoRaw(ctx)
		if err != nil {
			if checks := failedChecks(body); checks != lastChecks {
				logger.V(4).Info("Not ready yet", "component", APIServer, "after", time.Since(start), "failing", checks)
				lastChecks = checks
			}
			return fmt.Errorf("%w: %s", err, failedChecks(body))
		}
		return nil
	}
	c.healthCheck(APIServer, apiHealthy)
	if err := waitFor(ctx, "ready", api, func(ctx context.Context) error {
		if etcd.Exited() {
			return fmt.Errorf("etcd exited: %v\n%s", etcd.State(), tail(etcd.Log()))
		}
		return apiHealthy(ctx)
	}); err != nil {
		return err
	}
	apiReady()
	logger.V(2).Info("Component ready", "component", APIServer, "after", time.Since(start))

	kcm, err := c.start(ctx, ControllerManager, v,
		"--kubeconfig="+kcmConfig,
		// Each controller acts as its own ServiceAccount in kube-system (tokens from the
		// TokenRequest API), as kubeadm runs it, so their RBAC is the real one.
		"--use-service-account-credentials=true",
		"--controllers="+Controllers,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(p.kcm),
		"--leader-elect=false",
		// The lab creates objects in bursts; the default 20 QPS would pace every test.
		"--kube-api-qps=200", "--kube-api-burst=400")
	if err != nil {
		return err
	}
	sched, err := c.start(ctx, Scheduler, v,
		"--kubeconfig="+schedConfig,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(p.scheduler),
		"--leader-elect=false")
	if err != nil {
		return err
	}
	for _, w := range []struct {
		p    *proc.Process
		port int
	}{{kcm, p.kcm}, {sched, p.scheduler}} {
		url := fmt.Sprintf("https://127.0.0.1:%d/healthz", w.port)
		healthy := func(ctx context.Context) error { return httpOK(ctx, url) }
		c.healthCheck(w.p.Name(), healthy)
		if err := waitFor(ctx, "healthy", w.p, healthy); err != nil {
			return err
		}
		logger.V(2).Info("Component ready", "component", w.p.Name(), "after", time.Since(start))
	}
	if len(opts.CRDDirs) > 0 {
		if _, err := envtest.InstallCRDs(c.Config, envtest.CRDInstallOptions{
			Paths: opts.CRDDirs, ErrorIfPathMissing: true}); err != nil {
			return fmt.Errorf("install CRDs from %v: %w", opts.CRDDirs, err)
		}
	}
	return nil
}

// servingHosts are the apiserver's DNS names: loopback and the in-cluster names.
func servingHosts() []string {
	return []string{"localhost", "kubernetes", "kubernetes.default",
		"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
}

// servingIPs are loopback and the first address of each Service range, the
// "kubernetes" Service's ClusterIP that in-cluster clients dial.
func (c *Cluster) servingIPs() []netip.Addr {
	ips := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}
	for _, p := range c.ServiceCIDRs {
		ips = append(ips, p.Masked().Addr().Next())
	}
	return ips
}

// start starts one component from BinDir and records it for Down, and its command line
// for Start.
func (c *Cluster) start(ctx context.Context, name string, args ...string) (*proc.Process, error) {
	spec := proc.Spec{Name: name, Path: filepath.Join(c.BinDir, name), Args: args}
	p, err := c.runner.Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	if c.specs == nil {
		c.specs = map[string]component{}
	}
	c.specs[name] = component{spec: spec}
	c.mu.Unlock()
	return p, nil
}

// healthCheck records how Start knows component name is healthy again.
func (c *Cluster) healthCheck(name string, healthy func(context.Context) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	comp := c.specs[name]
	comp.healthy = healthy
	c.specs[name] = comp
}

// faultGrace bounds the graceful stop of a component that Stop takes down, as a kubelet's
// grace period would. The apiserver stops listening at once but then may not exit (v1.37
// hung past 20 s after "Stopped listening" here; etcd took 7 s); the apiserver writes each
// audit event in one write, so the kill that ends it leaves no line half-written.
const faultGrace = 5 * time.Second

// Stop stops component name (Etcd, APIServer, ControllerManager, Scheduler) as an outage
// would, for fault tests: SIGTERM, then SIGKILL after a grace, and returns once it has
// exited. Start runs it again as Up did. Clients keep their configuration: the address,
// port and certificates stay the same.
func (c *Cluster) Stop(ctx context.Context, name string) error {
	c.mu.Lock()
	_, known := c.specs[name]
	c.mu.Unlock()
	if !known {
		return fmt.Errorf("stop %s: not a component of this control plane", name)
	}
	p := c.Process(name)
	if p == nil {
		return fmt.Errorf("stop %s: %w", name, proc.ErrExited)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- p.Stop(faultGrace) }()
	select {
	case err := <-stopped:
		return err
	case <-ctx.Done():
		return fmt.Errorf("stop %s (pid %d): %w", name, p.PID(), ctx.Err())
	}
}

// Start runs a component that Stop stopped (or that exited) again with the arguments Up
// gave it — the same ports, certificates and data directory — and returns once it is
// healthy: etcd answers /health, the apiserver /readyz (which needs etcd), the others
// /healthz. It fails if the component runs, or after Down.
func (c *Cluster) Start(ctx context.Context, name string) error {
	c.mu.Lock()
	comp, known := c.specs[name]
	down := c.down
	c.mu.Unlock()
	switch {
	case !known:
		return fmt.Errorf("start %s: not a component of this control plane", name)
	case down:
		return fmt.Errorf("start %s: the control plane is down", name)
	case c.Process(name) != nil:
		return fmt.Errorf("start %s: already running", name)
	}
	ready := func() {}
	if name == APIServer {
		ready = c.apiserverStarting()
	}
	p, err := c.runner.Start(ctx, comp.spec)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.down { // Down began meanwhile and would miss it
		c.mu.Unlock()
		return errors.Join(fmt.Errorf("start %s: the control plane is down", name), p.Stop(stopGrace))
	}
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	if err := waitFor(ctx, "healthy", p, comp.healthy); err != nil {
		return err
	}
	ready()
	return nil
}

// Process returns the running component named name (Etcd, APIServer, …), for fault
// injection (Pause, Kill) and logs; nil if it is not running.
func (c *Cluster) Process(name string) *proc.Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if p.Name() == name && !p.Exited() {
			return p
		}
	}
	return nil
}

// Runner is the process runner the components run under.
func (c *Cluster) Runner() *proc.Runner { return c.runner }

// stopGrace bounds each component's graceful stop: everything is thrown away with the
// run, so a slow drain only costs teardown time.
const stopGrace = 2 * time.Second

// Down stops every process Up (and StartKubeProxy) started: clients of the apiserver
// first, etcd last. The run directory stays. A second call does nothing.
func (c *Cluster) Down(ctx context.Context) error {
	c.mu.Lock()
	if c.down {
		c.mu.Unlock()
		return nil
	}
	c.down = true
	procs := c.procs
	c.mu.Unlock()
	var (
		emu  sync.Mutex
		errs []error
	)
	stop := func(match func(string) bool) {
		var wg sync.WaitGroup
		for _, p := range procs {
			if match(p.Name()) {
				wg.Go(func() {
					if err := p.Stop(stopGrace); err != nil && !errors.Is(err, proc.ErrExited) {
						emu.Lock()
						errs = append(errs, err)
						emu.Unlock()
					}
				})
			}
		}
		wg.Wait()
	}
	stop(func(n string) bool { return n != APIServer && n != Etcd })
	stop(func(n string) bool { return n == APIServer })
	stop(func(n string) bool { return n == Etcd })
	if c.ownRunner {
		if err := c.runner.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("control plane in %s: down: %w", c.Dir, err)
	}
	return nil
}

// waitFor polls check until it succeeds, p exits, or ctx ends, reporting the last error.
func waitFor(ctx context.Context, what string, p *proc.Process, check func(context.Context) error) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		// A short timeout per probe: a starting apiserver accepts connections but
		// answers only once its handlers are installed, and a long probe would hide
		// that moment.
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited before it was %s: %v\n%s", p.Name(), what, p.State(), tail(p.Log()))
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to be %s: %w (last: %v)\n%s", p.Name(), what, ctx.Err(), last, tail(p.Log()))
		case <-tick.C:
		}
	}
}

// httpOK checks a component's /healthz. The components serve it with a self-signed
// certificate on loopback; this is only a liveness probe, so the certificate is not checked.
func httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // see above
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. They are free when this
// returns; another process could take one before the component binds it, which the
// component then reports as an error.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// tail returns the last lines of a log, for error messages.
func tail(log string) string {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// failedChecks picks the failed checks ("[-]…") out of a verbose /readyz answer.
func failedChecks(body []byte) string {
	var failed []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "[-]") {
			failed = append(failed, strings.TrimSuffix(strings.TrimPrefix(l, "[-]"), " failed: reason withheld"))
		}
	}
	return strings.Join(failed, ",")
}
