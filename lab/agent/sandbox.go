package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/lab/echo"
	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
)

// PodDev is the pod's interface inside its namespace.
const PodDev = "eth0"

// sandbox is what the agent made for one pod: its namespace, addresses and echo server.
type sandbox struct {
	uid     string
	ns      netns.NS
	slot    int
	ips     []netip.Addr
	cfg     echo.Config
	echo    *proc.Process
	started metav1.Time
}

// sync brings one pod's sandbox and status in line with the Pod object.
func (a *Agent) sync(ctx context.Context, key cache.ObjectName, lister corelisters.PodLister) error {
	pod, err := lister.Pods(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		return a.teardown(ctx, key)
	}
	if err != nil {
		return err
	}
	switch {
	case pod.DeletionTimestamp != nil:
		return a.finalise(ctx, key, pod)
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return a.teardown(ctx, key)
	}
	a.mu.Lock()
	sb := a.pods[key]
	a.mu.Unlock()
	if sb != nil && sb.uid != string(pod.UID) {
		// The Pod was replaced by one of the same name (a StatefulSet does that).
		if err := a.teardown(ctx, key); err != nil {
			return err
		}
		sb = nil
	}
	if sb == nil {
		if sb, err = a.start(ctx, key, pod); err != nil {
			return err
		}
	}
	return a.writeStatus(ctx, pod, sb)
}

// finalise stops a deleted pod and removes the Pod object, as kubelet does once the
// containers are gone.
func (a *Agent) finalise(ctx context.Context, key cache.ObjectName, pod *corev1.Pod) error {
	if err := a.teardown(ctx, key); err != nil {
		return err
	}
	err := a.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		// Never the replacement of the same name.
		Preconditions: &metav1.Preconditions{UID: &pod.UID},
	})
	switch {
	case err == nil:
		klog.FromContext(ctx).V(2).Info("Pod deleted", "pod", klog.KObj(pod))
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		// Gone already, or replaced by a pod of the same name.
	default:
		return fmt.Errorf("delete pod %s: %w", key, err)
	}
	return nil
}

// start makes the pod's namespace and veth on the node's bridge, gives it its addresses
// and routes, and runs the echo server in it, returning once the server listens.
func (a *Agent) start(ctx context.Context, key cache.ObjectName, pod *corev1.Pod) (_ *sandbox, err error) {
	begin := time.Now()
	slot, ips, err := a.ipam.allocate()
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", key, err)
	}
	sb := &sandbox{uid: string(pod.UID), slot: slot, ips: ips, cfg: echo.Config{Pod: pod.Name, Ports: podPorts(pod)}}
	defer func() {
		if err != nil {
			err = fmt.Errorf("start pod %s: %w", key, err)
			if cerr := a.stopSandbox(context.WithoutCancel(ctx), sb); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
	}()
	uid := strings.ReplaceAll(string(pod.UID), "-", "")
	if sb.ns, err = a.nss.Create(ctx, nsName(pod.Name, uid)); err != nil {
		return nil, err
	}
	hostEnd := "vp" + uid[:min(12, len(uid))]
	if err := netns.Veth(ctx, netns.End{NS: sb.ns, Name: PodDev}, netns.End{NS: a.node.NS, Name: hostEnd}); err != nil {
		return nil, err
	}
	if err := a.node.NS.AttachToBridge(ctx, hostEnd, a.node.Bridge); err != nil {
		return nil, fmt.Errorf("netns %s: %w", a.node.NS, err)
	}
	// The node may still map a reused address to the MAC of the pod that had it last (a
	// neighbour entry on the bridge outlives that pod's veth, and stays REACHABLE up to
	// 30 s): it would send the new pod's traffic nowhere. Forget it.
	var flush []string
	for _, ip := range ips {
		flush = append(flush, fmt.Sprintf("neigh flush to %s dev %s", ip, a.node.Bridge))
	}
	if err := a.node.NS.Batch(ctx, flush...); err != nil {
		return nil, err
	}
	var cmds []string
	for i, ip := range ips {
		c := fmt.Sprintf("addr add %s dev %s", netip.PrefixFrom(ip, a.node.PodCIDRs[i].Bits()), PodDev)
		if ip.Is6() {
			c += " nodad"
		}
		cmds = append(cmds, c)
	}
	for _, gw := range a.node.Gateways {
		cmds = append(cmds, "route replace default via "+gw.String())
	}
	if err := sb.ns.Batch(ctx, cmds...); err != nil {
		return nil, err
	}
	spec, err := echo.Spec(procName(key, uid), sb.ns, sb.cfg)
	if err != nil {
		return nil, err
	}
	if sb.echo, err = a.cfg.Runner.Start(ctx, spec); err != nil {
		return nil, err
	}
	if err := waitListening(ctx, sb.echo, sb.cfg); err != nil {
		return nil, err
	}
	sb.started = metav1.Now().Rfc3339Copy() // the API keeps seconds; compare like with like
	a.mu.Lock()
	a.pods[key] = sb
	a.mu.Unlock()
	// A pod whose server dies turns unready, as a crashed container would.
	p := sb.echo
	a.watchers.Go(func() {
		<-p.Done()
		a.enqueue(key)
	})
	klog.FromContext(ctx).V(2).Info("Pod started", "pod", klog.KObj(pod), "ips", ips, "netns", sb.ns,
		"pid", p.PID(), "duration", time.Since(begin))
	return sb, nil
}

// waitListening waits for the echo server's sockets, or its exit.
func waitListening(ctx context.Context, p *proc.Process, cfg echo.Config) error {
	for {
		ok, err := echo.Listening(p.PID(), cfg)
		if ok {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("echo server exited: %v\n%s", p.State(), p.Log())
		case <-ctx.Done():
			return fmt.Errorf("wait for echo server (pid %d) to listen: %w (last: %v)", p.PID(), ctx.Err(), err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// teardown stops the pod's sandbox, if it has one.
func (a *Agent) teardown(ctx context.Context, key cache.ObjectName) error {
	a.mu.Lock()
	sb := a.pods[key]
	delete(a.pods, key)
	delete(a.notReady, key)
	a.mu.Unlock()
	if sb == nil {
		return nil
	}
	if err := a.stopSandbox(ctx, sb); err != nil {
		return fmt.Errorf("stop pod %s: %w", key, err)
	}
	klog.FromContext(ctx).V(2).Info("Pod stopped", "pod", key, "netns", sb.ns)
	return nil
}

// echoGrace is how long the echo server gets to exit on SIGTERM; it needs milliseconds.
const echoGrace = time.Second

// stopSandbox stops the echo server, deletes the namespace (and with it the veth pair)
// and frees the addresses.
func (a *Agent) stopSandbox(ctx context.Context, sb *sandbox) error {
	var errs []error
	if sb.echo != nil {
		if err := sb.echo.Stop(echoGrace); err != nil && !errors.Is(err, proc.ErrExited) {
			errs = append(errs, err)
		}
	}
	if sb.ns != "" {
		if err := sb.ns.Delete(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err // keep the addresses: the namespace may still hold them
	}
	a.ipam.release(sb.slot)
	return nil
}

// teardownAll stops every sandbox, in parallel.
func (a *Agent) teardownAll(ctx context.Context) error {
	a.mu.Lock()
	keys := make([]cache.ObjectName, 0, len(a.pods))
	for k := range a.pods {
		keys = append(keys, k)
	}
	a.mu.Unlock()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, k := range keys {
		wg.Go(func() {
			if err := a.teardown(ctx, k); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// podPorts are the pod's container port numbers, whatever their protocol; the echo
// server answers on TCP and UDP on each.
func podPorts(pod *corev1.Pod) []uint16 {
	var ports []uint16
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			ports = append(ports, uint16(p.ContainerPort))
		}
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// nsName names a pod's namespace (after the run prefix): readable, unique by UID.
func nsName(pod, uid string) string {
	if len(pod) > 40 {
		pod = pod[:40]
	}
	return "pod-" + pod + "-" + uid[:min(6, len(uid))]
}

// procName names the pod's echo process (and its log file) in the runner.
func procName(key cache.ObjectName, uid string) string {
	n := "pod-" + key.Namespace + "-" + key.Name
	if len(n) > 100 {
		n = n[:100]
	}
	return n + "-" + uid[:min(6, len(uid))]
}

// ipam hands out pod addresses: slot n is the n-th address of every pod CIDR, so a
// pod's IPv4 and IPv6 addresses share their host part.
type ipam struct {
	cidrs []netip.Prefix
	max   int

	mu   sync.Mutex
	used map[int]bool
}

// firstSlot skips the network address and .1/::1, the gateway by lab convention; a
// gateway elsewhere in the range is marked used.
const firstSlot = 2

func newIPAM(cidrs []netip.Prefix, gateways []netip.Addr) (*ipam, error) {
	m := &ipam{cidrs: cidrs, used: map[int]bool{}, max: 1 << 16}
	for i, p := range cidrs {
		host := p.Addr().BitLen() - p.Bits()
		if host < 2 {
			return nil, fmt.Errorf("pod CIDR %s: too small", p)
		}
		if host < 17 {
			m.max = min(m.max, 1<<host-2) // the last slot of an IPv4 range is broadcast
		}
		if off := offset(p, gateways[i]); off >= firstSlot && off <= m.max {
			m.used[off] = true
		}
	}
	return m, nil
}

func (m *ipam) allocate() (int, []netip.Addr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for s := firstSlot; s <= m.max; s++ {
		if m.used[s] {
			continue
		}
		m.used[s] = true
		ips := make([]netip.Addr, len(m.cidrs))
		for i, p := range m.cidrs {
			ips[i] = addrAt(p, s)
		}
		return s, ips, nil
	}
	return 0, nil, fmt.Errorf("pod CIDRs %v: all %d addresses in use", m.cidrs, m.max-firstSlot+1)
}

func (m *ipam) release(slot int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.used, slot)
}

// addrAt is the address n after p's network address.
func addrAt(p netip.Prefix, n int) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := len(b) - 1; i >= 0 && n > 0; i-- {
		sum := int(b[i]) + n
		b[i] = byte(sum)
		n = sum >> 8
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// offset is a's distance from p's network address, -1 if it is far (or outside p).
func offset(p netip.Prefix, a netip.Addr) int {
	if !p.Contains(a) {
		return -1
	}
	base, x := p.Masked().Addr().AsSlice(), a.AsSlice()
	n := 0
	for i := range x {
		if n > 1<<20 {
			return -1
		}
		n = n<<8 + int(x[i]) - int(base[i])
	}
	return n
}
