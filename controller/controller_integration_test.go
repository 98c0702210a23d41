//go:build integration

package controller_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/controller"
	"github.com/berthlb/berth/lab/controlplane"
)

const berthClass = "berth.dev/lb"

type site struct {
	cp  *controlplane.ControlPlane
	kc  kubernetes.Interface
	crc client.Client
}

func newSite(t *testing.T) *site {
	t.Helper()
	cp := controlplane.Start(t, controlplane.WithBerthCRDs())
	kc, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	return &site{cp: cp, kc: kc, crc: newClient(t, cp)}
}

func scheme(t *testing.T) *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func newClient(t *testing.T, cp *controlplane.ControlPlane) client.Client {
	c, err := client.New(cp.Config, client.Options{Scheme: scheme(t)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runController starts a controller and returns a function that stops it and waits.
func (s *site) runController(t *testing.T, opts controller.Options) (stop func()) {
	t.Helper()
	cache, err := crcache.New(s.cp.Config, crcache.Options{Scheme: scheme(t)})
	if err != nil {
		t.Fatal(err)
	}
	if opts.LoadBalancerClass == "" {
		opts.LoadBalancerClass = berthClass
	}
	opts.Workers = 4
	c, err := controller.New(s.kc, cache, s.crc, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-c.Ready():
	case err := <-done:
		t.Fatalf("controller stopped before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("controller not ready after 30s")
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func (s *site) pool(t *testing.T, name string, mutate func(*v1alpha1.IPPoolSpec), addrs ...string) {
	t.Helper()
	p := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, a := range addrs {
		p.Spec.Addresses = append(p.Spec.Addresses, v1alpha1.AddressRange(a))
	}
	if mutate != nil {
		mutate(&p.Spec)
	}
	if err := s.crc.Create(context.Background(), p); err != nil {
		t.Fatalf("create pool %s: %v", name, err)
	}
}

type svcOpt func(*corev1.Service)

func withClass(c string) svcOpt {
	return func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To(c) }
}

func withAnnotation(k, v string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func withPort(p int32) svcOpt {
	return func(s *corev1.Service) { s.Spec.Ports[0].Port = p }
}

func dualStack(policy corev1.IPFamilyPolicy, fams ...corev1.IPFamily) svcOpt {
	return func(s *corev1.Service) { s.Spec.IPFamilyPolicy = &policy; s.Spec.IPFamilies = fams }
}

func (s *site) service(t *testing.T, ns, name string, opts ...svcOpt) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			AllocateLoadBalancerNodePorts: ptr.To(false),
			Selector:                      map[string]string{"app": name},
			Ports:                         []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	for _, o := range opts {
		o(svc)
	}
	out, err := s.kc.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service %s/%s: %v", ns, name, err)
	}
	return out
}

// updateService reads, changes and writes a Service, again on a conflict: the controller
// writes Services' status at any time (berth.dev/Announced follows the addresses).
func (s *site) updateService(t *testing.T, ns, name string, mutate func(*corev1.Service)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc, err := s.kc.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mutate(svc)
		_, err = s.kc.CoreV1().Services(ns).Update(context.Background(), svc, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("update service %s/%s: %v", ns, name, err)
	}
}

// toClusterIP turns a LoadBalancer Service into a ClusterIP one, which drops its class.
func toClusterIP(svc *corev1.Service) {
	svc.Spec.Type = corev1.ServiceTypeClusterIP
	svc.Spec.LoadBalancerClass = nil
	svc.Spec.AllocateLoadBalancerNodePorts = nil
}

func (s *site) namespace(t *testing.T, name string) string {
	t.Helper()
	_, err := s.kc.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// waitIngress waits until the Service's ingress satisfies ok and returns the Service.
func (s *site) waitIngress(t *testing.T, ns, name string, timeout time.Duration, ok func([]netip.Addr) bool) *corev1.Service {
	t.Helper()
	var svc *corev1.Service
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var err error
		svc, err = s.kc.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ips := ingress(svc)
		last = fmt.Sprintf("ingress %v, conditions %v", ips, conditionSummary(svc))
		return ok(ips), nil
	})
	if err != nil {
		t.Fatalf("service %s/%s: condition not met in %s; last seen %s", ns, name, timeout, last)
	}
	return svc
}

func hasIPs(n int) func([]netip.Addr) bool {
	return func(ips []netip.Addr) bool { return len(ips) == n }
}

func ingress(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		out = append(out, netip.MustParseAddr(in.IP))
	}
	return out
}

func conditionSummary(svc *corev1.Service) string {
	c := meta.FindStatusCondition(svc.Status.Conditions, controller.ConditionAllocated)
	if c == nil {
		return "none"
	}
	return fmt.Sprintf("%s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message)
}

// waitCondition waits for the berth.dev/Allocated condition with the given status and reason.
func (s *site) waitCondition(t *testing.T, ns, name string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	return s.waitConditionOf(t, ns, name, controller.ConditionAllocated, status, reason)
}

// waitConditionOf waits for a Service condition of type typ with that status and reason.
func (s *site) waitConditionOf(t *testing.T, ns, name, typ string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	var got *metav1.Condition
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		svc, err := s.kc.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		last = conditionSummary(svc)
		got = meta.FindStatusCondition(svc.Status.Conditions, typ)
		return got != nil && got.Status == status && got.Reason == reason, nil
	})
	if err != nil {
		t.Fatalf("service %s/%s: want %s=%s %s, last seen %s", ns, name, typ, status, reason, last)
	}
	return got
}

// waitEvent waits for an Event with the reason on the Service and returns its message.
func (s *site) waitEvent(t *testing.T, ns, name, reason string) string {
	t.Helper()
	var msg string
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := s.kc.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{"involvedObject.name": name, "reason": reason}.String()})
		if err != nil {
			return false, err
		}
		if len(evs.Items) > 0 {
			msg = evs.Items[0].Message
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s event on service %s/%s", reason, ns, name)
	}
	return msg
}

func inPrefix(p string) func([]netip.Addr) bool {
	pre := netip.MustParsePrefix(p)
	return func(ips []netip.Addr) bool { return len(ips) == 1 && pre.Contains(ips[0]) }
}

func TestAllocation(t *testing.T) {
	s := newSite(t)
	s.pool(t, "public", nil, "203.0.113.0/28", "2001:db8:113::/64")
	s.pool(t, "proxy", func(p *v1alpha1.IPPoolSpec) {
		p.AutoAssign = ptr.To(false)
		p.IPMode = v1alpha1.IPModeProxy
	}, "198.51.100.0/30")
	s.runController(t, controller.Options{HandleDefaultClass: true})
	ns := s.namespace(t, "alloc")

	t.Run("default class", func(t *testing.T) {
		s.service(t, ns, "web")
		svc := s.waitIngress(t, ns, "web", 10*time.Second, inPrefix("203.0.113.0/28"))
		if m := svc.Status.LoadBalancer.Ingress[0].IPMode; m == nil || *m != corev1.LoadBalancerIPModeVIP {
			t.Errorf("ipMode = %v, want VIP", m)
		}
		c := s.waitCondition(t, ns, "web", metav1.ConditionTrue, controller.EventIPAllocated)
		if !strings.Contains(c.Message, `"public"`) {
			t.Errorf("condition message %q does not name the pool", c.Message)
		}
		if msg := s.waitEvent(t, ns, "web", controller.EventIPAllocated); !strings.Contains(msg, ingress(svc)[0].String()) {
			t.Errorf("event %q does not name the address", msg)
		}
	})
	t.Run("berth class", func(t *testing.T) {
		s.service(t, ns, "classy", withClass(berthClass))
		svc := s.waitIngress(t, ns, "classy", 10*time.Second, inPrefix("203.0.113.0/28"))
		if !slices.Contains(svc.Finalizers, "service.kubernetes.io/load-balancer-cleanup") {
			t.Errorf("finalizers = %v, want the load-balancer cleanup finalizer", svc.Finalizers)
		}
	})
	t.Run("other class is left alone", func(t *testing.T) {
		s.service(t, ns, "foreign", withClass("example.com/other"))
		s.service(t, ns, "marker", withClass(berthClass))
		s.waitIngress(t, ns, "marker", 10*time.Second, hasIPs(1))
		svc, err := s.kc.CoreV1().Services(ns).Get(context.Background(), "foreign", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(svc.Status.LoadBalancer.Ingress) != 0 || len(svc.Status.Conditions) != 0 || len(svc.Finalizers) != 0 {
			t.Errorf("foreign-class service was touched: %+v", svc.Status)
		}
	})
	t.Run("requested IP by annotation and by spec", func(t *testing.T) {
		s.service(t, ns, "req-annotation", withAnnotation(controller.AnnotationLoadBalancerIPs, "203.0.113.9"))
		s.waitIngress(t, ns, "req-annotation", 10*time.Second, func(ips []netip.Addr) bool {
			return len(ips) == 1 && ips[0] == netip.MustParseAddr("203.0.113.9")
		})
		s.service(t, ns, "req-spec", func(svc *corev1.Service) { svc.Spec.LoadBalancerIP = "203.0.113.10" })
		s.waitIngress(t, ns, "req-spec", 10*time.Second, func(ips []netip.Addr) bool {
			return len(ips) == 1 && ips[0] == netip.MustParseAddr("203.0.113.10")
		})
	})
	t.Run("requested IP outside every pool", func(t *testing.T) {
		s.service(t, ns, "req-outside", withAnnotation(controller.AnnotationLoadBalancerIPs, "192.0.2.200"))
		c := s.waitCondition(t, ns, "req-outside", metav1.ConditionFalse, "RequestedIPNotInPool")
		if !strings.Contains(c.Message, "192.0.2.200") {
			t.Errorf("condition message %q does not name the address", c.Message)
		}
		s.waitEvent(t, ns, "req-outside", "RequestedIPNotInPool")
	})
	t.Run("bad annotation", func(t *testing.T) {
		s.service(t, ns, "req-garbage", withAnnotation(controller.AnnotationLoadBalancerIPs, "not-an-ip"))
		c := s.waitCondition(t, ns, "req-garbage", metav1.ConditionFalse, controller.EventBadRequest)
		if !strings.Contains(c.Message, controller.AnnotationLoadBalancerIPs) {
			t.Errorf("condition message %q does not name the annotation", c.Message)
		}
	})
	t.Run("pool annotation and ipMode Proxy", func(t *testing.T) {
		s.service(t, ns, "proxied", withAnnotation(controller.AnnotationPool, "proxy"))
		svc := s.waitIngress(t, ns, "proxied", 10*time.Second, inPrefix("198.51.100.0/30"))
		if m := svc.Status.LoadBalancer.Ingress[0].IPMode; m == nil || *m != corev1.LoadBalancerIPModeProxy {
			t.Errorf("ipMode = %v, want Proxy", m)
		}
		// Without NodePorts (the helper's default) only the receiving node's endpoints
		// can take its traffic: a condition and a Warning say so.
		c := s.waitConditionOf(t, ns, "proxied", controller.ConditionProxyNodePorts, metav1.ConditionFalse, controller.EventProxyWithoutNodePorts)
		if !strings.Contains(c.Message, "allocateLoadBalancerNodePorts") {
			t.Errorf("condition message %q does not name the field", c.Message)
		}
		s.waitEvent(t, ns, "proxied", controller.EventProxyWithoutNodePorts)
		s.service(t, ns, "proxied-np", withAnnotation(controller.AnnotationPool, "proxy"),
			func(svc *corev1.Service) { svc.Spec.AllocateLoadBalancerNodePorts = ptr.To(true) })
		s.waitConditionOf(t, ns, "proxied-np", controller.ConditionProxyNodePorts, metav1.ConditionTrue, controller.ReasonNodePortsAllocated)
		web, err := s.kc.CoreV1().Services(ns).Get(t.Context(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c := meta.FindStatusCondition(web.Status.Conditions, controller.ConditionProxyNodePorts); c != nil {
			t.Errorf("a VIP Service carries %+v", c)
		}
	})
	t.Run("dual-stack", func(t *testing.T) {
		s.service(t, ns, "dual", dualStack(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv6Protocol, corev1.IPv4Protocol))
		svc := s.waitIngress(t, ns, "dual", 10*time.Second, hasIPs(2))
		ips := ingress(svc)
		if !ips[0].Is6() || !ips[1].Is4() {
			t.Errorf("ingress %v, want IPv6 then IPv4 as in spec.ipFamilies", ips)
		}
	})
	t.Run("sharing", func(t *testing.T) {
		s.service(t, ns, "share-a", withAnnotation(controller.AnnotationSharingKey, "k"), withPort(80))
		a := ingress(s.waitIngress(t, ns, "share-a", 10*time.Second, hasIPs(1)))[0]
		s.service(t, ns, "share-b", withAnnotation(controller.AnnotationSharingKey, "k"), withPort(443),
			withAnnotation(controller.AnnotationLoadBalancerIPs, a.String()))
		s.waitIngress(t, ns, "share-b", 10*time.Second, func(ips []netip.Addr) bool { return len(ips) == 1 && ips[0] == a })
		// Same key, same port: refused.
		s.service(t, ns, "share-c", withAnnotation(controller.AnnotationSharingKey, "k"), withPort(80),
			withAnnotation(controller.AnnotationLoadBalancerIPs, a.String()))
		s.waitCondition(t, ns, "share-c", metav1.ConditionFalse, "IPInUse")
		// No key: refused, naming the holder.
		s.service(t, ns, "share-d", withPort(8443), withAnnotation(controller.AnnotationLoadBalancerIPs, a.String()))
		c := s.waitCondition(t, ns, "share-d", metav1.ConditionFalse, "IPInUse")
		if !strings.Contains(c.Message, "share-a") {
			t.Errorf("condition message %q does not name the holder", c.Message)
		}
	})
}

func TestDefaultClassOff(t *testing.T) {
	s := newSite(t)
	s.pool(t, "public", nil, "203.0.113.0/28")
	s.runController(t, controller.Options{HandleDefaultClass: false})
	ns := s.namespace(t, "off")
	s.service(t, ns, "plain")
	s.service(t, ns, "classy", withClass(berthClass))
	s.waitIngress(t, ns, "classy", 10*time.Second, hasIPs(1))
	svc, err := s.kc.CoreV1().Services(ns).Get(context.Background(), "plain", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(svc.Status.LoadBalancer.Ingress) != 0 || len(svc.Finalizers) != 0 || len(svc.Status.Conditions) != 0 {
		t.Errorf("class-less service touched with --handle-default-class=false: finalizers %v, status %+v", svc.Finalizers, svc.Status)
	}

	// A berth Service turned into ClusterIP loses its class; with no upstream loop to
	// clean up, berth's own loop releases it.
	s.updateService(t, ns, "classy", toClusterIP)
	s.waitIngress(t, ns, "classy", 10*time.Second, hasIPs(0))
	s.waitReleased(t, ns, "classy")
}

// TestExhaustionRecovers shows a Service waiting on a full pool getting the freed address
// within 3 s, in both loops, and deletion and type changes freeing addresses.
func TestExhaustionRecovers(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []svcOpt
	}{
		{"default class", nil},
		{"berth class", []svcOpt{withClass(berthClass)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSite(t)
			s.pool(t, "tiny", nil, "203.0.113.0/31")
			s.runController(t, controller.Options{HandleDefaultClass: true})
			ns := s.namespace(t, "full")
			s.service(t, ns, "one", tc.opts...)
			s.service(t, ns, "two", tc.opts...)
			s.waitIngress(t, ns, "one", 10*time.Second, hasIPs(1))
			freed := ingress(s.waitIngress(t, ns, "two", 10*time.Second, hasIPs(1)))[0]
			s.service(t, ns, "three", tc.opts...)
			s.waitCondition(t, ns, "three", metav1.ConditionFalse, "PoolExhausted")
			s.waitEvent(t, ns, "three", "PoolExhausted")

			start := time.Now()
			if err := s.kc.CoreV1().Services(ns).Delete(context.Background(), "two", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			got := ingress(s.waitIngress(t, ns, "three", 3*time.Second, hasIPs(1)))[0]
			t.Logf("exhausted service allocated %s after the release (bound 3s)", time.Since(start))
			if got != freed {
				t.Errorf("three got %s, want the freed %s", got, freed)
			}
			s.waitCondition(t, ns, "three", metav1.ConditionTrue, controller.EventIPAllocated)
			waitGone(t, s.kc, ns, "two")

			// Turning a Service into ClusterIP frees its address too.
			s.service(t, ns, "four", tc.opts...)
			s.waitCondition(t, ns, "four", metav1.ConditionFalse, "PoolExhausted")
			s.updateService(t, ns, "one", toClusterIP)
			s.waitIngress(t, ns, "four", 3*time.Second, hasIPs(1))
			s.waitIngress(t, ns, "one", 10*time.Second, hasIPs(0))
			s.waitReleased(t, ns, "one")
		})
	}
}

// waitReleased waits until a Service that stopped being a LoadBalancer carries nothing of
// berth: no conditions, no cleanup finalizer.
func (s *site) waitReleased(t *testing.T, ns, name string) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		svc, err := s.kc.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		last = fmt.Sprintf("finalizers %v, conditions %v", svc.Finalizers, svc.Status.Conditions)
		return len(svc.Finalizers) == 0 && meta.FindStatusCondition(svc.Status.Conditions, controller.ConditionAllocated) == nil &&
			meta.FindStatusCondition(svc.Status.Conditions, controller.ConditionAnnounced) == nil, nil
	})
	if err != nil {
		t.Fatalf("service %s/%s still carries berth's marks: %s", ns, name, last)
	}
}

func waitGone(t *testing.T, kc kubernetes.Interface, ns, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := kc.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("service %s/%s still there", ns, name)
	}
}

// TestRestartKeepsAddresses stops the controller and starts a new one: every Service keeps
// its addresses, and of two Services showing one address the older keeps it.
func TestRestartKeepsAddresses(t *testing.T) {
	s := newSite(t)
	s.pool(t, "public", nil, "203.0.113.0/28")
	stop := s.runController(t, controller.Options{HandleDefaultClass: true})
	ns := s.namespace(t, "restart")
	for i := range 6 {
		var opts []svcOpt
		if i%2 == 1 {
			opts = append(opts, withClass(berthClass))
		}
		s.service(t, ns, fmt.Sprintf("svc-%d", i), opts...)
	}
	before := map[string]netip.Addr{}
	for i := range 6 {
		name := fmt.Sprintf("svc-%d", i)
		before[name] = ingress(s.waitIngress(t, ns, name, 10*time.Second, hasIPs(1)))[0]
	}
	stop()

	// While the controller is down, a newer Service shows svc-0's address (as after a
	// botched restore); the older svc-0 must keep it.
	// creationTimestamp has 1 s resolution: make dup strictly newer than svc-0.
	svc0, err := s.kc.CoreV1().Services(ns).Get(context.Background(), "svc-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 3*time.Second, true, func(context.Context) (bool, error) {
		return time.Now().Truncate(time.Second).After(svc0.CreationTimestamp.Time), nil
	}); err != nil {
		t.Fatal(err)
	}
	dup := s.service(t, ns, "dup", withClass(berthClass))
	dup.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: before["svc-0"].String(), IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}
	if _, err := s.kc.CoreV1().Services(ns).UpdateStatus(context.Background(), dup, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	s.runController(t, controller.Options{HandleDefaultClass: true})
	got := ingress(s.waitIngress(t, ns, "dup", 10*time.Second, func(ips []netip.Addr) bool {
		return len(ips) == 1 && ips[0] != before["svc-0"]
	}))[0]
	s.waitEvent(t, ns, "dup", controller.EventIPReclaimFailed)
	for name, ip := range before {
		svc, err := s.kc.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if now := ingress(svc); len(now) != 1 || now[0] != ip {
			t.Errorf("%s: ingress %v after restart, want %s", name, now, ip)
		}
		if ip == got {
			t.Errorf("dup got %s, which %s holds", got, name)
		}
	}
}

func (s *site) getPool(t *testing.T, name string) *v1alpha1.IPPool {
	t.Helper()
	var p v1alpha1.IPPool
	if err := s.crc.Get(context.Background(), client.ObjectKey{Name: name}, &p); err != nil {
		t.Fatalf("get pool %s: %v", name, err)
	}
	return &p
}

func (s *site) waitPool(t *testing.T, name string, what string, ok func(*v1alpha1.IPPool) bool) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		var p v1alpha1.IPPool
		err := s.crc.Get(ctx, client.ObjectKey{Name: name}, &p)
		if apierrors.IsNotFound(err) {
			last = "not found"
			return ok(nil), nil
		}
		if err != nil {
			return false, err
		}
		last = fmt.Sprintf("finalizers %v deleting %v status %+v %+v", p.Finalizers, p.DeletionTimestamp != nil, p.Status.IPv4, p.Status.IPv6)
		return ok(&p), nil
	})
	if err != nil {
		t.Fatalf("pool %s: want %s; last seen %s", name, what, last)
	}
}

// TestPoolInUse shows pool use in IPPool.status, a pool in use surviving its deletion
// until its last Service leaves, and new Services going elsewhere meanwhile.
func TestPoolInUse(t *testing.T) {
	s := newSite(t)
	s.pool(t, "old", nil, "203.0.113.0/29", "2001:db8:113::/126")
	s.runController(t, controller.Options{HandleDefaultClass: true})
	ns := s.namespace(t, "inuse")
	s.service(t, ns, "a")
	s.service(t, ns, "b", dualStack(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
	s.waitIngress(t, ns, "a", 10*time.Second, hasIPs(1))
	held := ingress(s.waitIngress(t, ns, "b", 10*time.Second, hasIPs(2)))
	s.waitPool(t, "old", "2 IPv4 and 1 IPv6 in use, with the in-use finalizer", func(p *v1alpha1.IPPool) bool {
		return p != nil && p.Status.IPv4 != nil && p.Status.IPv4.InUse == "2" && p.Status.IPv4.Capacity == "8" &&
			p.Status.IPv6 != nil && p.Status.IPv6.InUse == "1" && slices.Contains(p.Finalizers, "berth.dev/pool-in-use")
	})

	if err := s.crc.Delete(context.Background(), s.getPool(t, "old")); err != nil {
		t.Fatal(err)
	}
	s.pool(t, "new", nil, "198.51.100.0/29")
	s.service(t, ns, "c")
	s.waitIngress(t, ns, "c", 10*time.Second, inPrefix("198.51.100.0/29"))
	p := s.getPool(t, "old")
	if p.DeletionTimestamp == nil {
		t.Fatal("pool old has no deletionTimestamp")
	}
	if got := ingress(s.waitIngress(t, ns, "b", time.Second, hasIPs(2))); !slices.Equal(got, held) {
		t.Errorf("b's addresses moved from %v to %v while its pool was being deleted", held, got)
	}

	for _, name := range []string{"a", "b"} {
		if err := s.kc.CoreV1().Services(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	s.waitPool(t, "old", "gone once no Service holds its addresses", func(p *v1alpha1.IPPool) bool { return p == nil })
}

func TestMain(m *testing.M) {
	ctrllog.SetLogger(klog.NewKlogr())
	os.Exit(m.Run())
}

// TestMetrics checks the pool gauges and the counters against what the test did.
func TestMetrics(t *testing.T) {
	s := newSite(t)
	s.pool(t, "tiny", nil, "203.0.113.0/31", "2001:db8:113::/64")
	reg := prometheus.NewRegistry()
	s.runController(t, controller.Options{HandleDefaultClass: true, Registerer: reg})
	ns := s.namespace(t, "metrics")
	for _, n := range []string{"a", "b", "c"} {
		s.service(t, ns, n, withClass(berthClass))
	}
	s.waitIngress(t, ns, "a", 10*time.Second, hasIPs(1))
	s.waitIngress(t, ns, "b", 10*time.Second, hasIPs(1))
	s.waitCondition(t, ns, "c", metav1.ConditionFalse, "PoolExhausted")

	want := `
# HELP berth_allocator_addresses_capacity Addresses a pool can hand out, by pool and family (an IPv6 /64 is 1.8e19).
# TYPE berth_allocator_addresses_capacity gauge
berth_allocator_addresses_capacity{family="ipv4",pool="tiny"} 2
berth_allocator_addresses_capacity{family="ipv6",pool="tiny"} 1.8446744073709552e+19
# HELP berth_allocator_addresses_in_use Addresses Services hold, by pool and family.
# TYPE berth_allocator_addresses_in_use gauge
berth_allocator_addresses_in_use{family="ipv4",pool="tiny"} 2
berth_allocator_addresses_in_use{family="ipv6",pool="tiny"} 0
# HELP berth_controller_allocations_total Services given new addresses, by pool.
# TYPE berth_controller_allocations_total counter
berth_controller_allocations_total{pool="tiny"} 2
# HELP berth_controller_pending_services Services berth handles that wait for an address because allocation failed (pool exhausted, no pool for the Service, requested IP taken, ...); they are retried when addresses free up.
# TYPE berth_controller_pending_services gauge
berth_controller_pending_services 1
`
	names := []string{"berth_allocator_addresses_capacity", "berth_allocator_addresses_in_use",
		"berth_controller_allocations_total", "berth_controller_pending_services"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	if n := counterValue(t, reg, "berth_controller_allocation_failures_total", "reason", "PoolExhausted"); n < 1 {
		t.Errorf("allocation failures for PoolExhausted = %v, want at least 1", n)
	}

	// A pool overlapping the older one is left out, and counted until it goes.
	const problems = "berth_controller_config_objects_with_problems"
	overlapping := func() float64 { return gaugeValue(t, reg, problems, "kind", "IPPool", "reason", "PoolOverlap") }
	if n := overlapping(); n != 0 {
		t.Errorf("%s{kind=IPPool,reason=PoolOverlap} = %v before any overlap, want 0", problems, n)
	}
	s.pool(t, "tiny-too", nil, "203.0.113.1/32")
	waitValue(t, "overlapping pools", overlapping, 1)
	if err := s.crc.Delete(t.Context(), &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "tiny-too"}}); err != nil {
		t.Fatal(err)
	}
	waitValue(t, "overlapping pools after the deletion", overlapping, 0)
}

// gaugeValue returns the value of a gathered gauge with the labels of kv (name, value, …).
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string, kv ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(kv); i += 2 {
				if labels[kv[i]] != kv[i+1] {
					continue series
				}
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s%v", name, kv)
	return 0
}

// waitValue polls get until it returns want, for up to 10 s.
func waitValue(t *testing.T, what string, get func() float64, want float64) {
	t.Helper()
	var got float64
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		got = get()
		return got == want, nil
	})
	if err != nil {
		t.Fatalf("%s: %v, want %v: %v", what, got, want, err)
	}
}

// counterValue returns the value of a gathered counter with one label set to value.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}

// TestPoolShrink moves only the Service whose address left the pool, with an Event.
func TestPoolShrink(t *testing.T) {
	s := newSite(t)
	s.pool(t, "p", nil, "203.0.113.0/29")
	s.runController(t, controller.Options{HandleDefaultClass: true})
	ns := s.namespace(t, "shrink")
	var held []*corev1.Service
	for _, n := range []string{"a", "b", "c"} {
		s.service(t, ns, n, withClass(berthClass))
		held = append(held, s.waitIngress(t, ns, n, 10*time.Second, hasIPs(1)))
	}
	c := ingress(held[2])[0]
	// Keep every address but c's.
	var keep []v1alpha1.AddressRange
	for _, r := range []string{"203.0.113.0/29"} {
		pre := netip.MustParsePrefix(r)
		for a := pre.Addr(); pre.Contains(a); a = a.Next() {
			if a != c {
				keep = append(keep, v1alpha1.AddressRange(a.String()+"-"+a.String()))
			}
		}
	}
	p := s.getPool(t, "p")
	patch := client.MergeFrom(p.DeepCopy())
	p.Spec.Addresses = keep
	if err := s.crc.Patch(context.Background(), p, patch); err != nil {
		t.Fatal(err)
	}
	moved := ingress(s.waitIngress(t, ns, "c", 10*time.Second, func(ips []netip.Addr) bool { return len(ips) == 1 && ips[0] != c }))[0]
	if !netip.MustParsePrefix("203.0.113.0/29").Contains(moved) {
		t.Errorf("c moved to %s, outside the pool", moved)
	}
	for _, before := range held[:2] {
		now, err := s.kc.CoreV1().Services(ns).Get(context.Background(), before.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ingress(now), ingress(before)) {
			t.Errorf("%s moved from %v to %v though its address stayed in the pool", before.Name, ingress(before), ingress(now))
		}
	}
	if msg := s.waitEvent(t, ns, "c", controller.EventIPAllocated); msg == "" {
		t.Error("no event for the move")
	}
}

// TestDualStackMatrix covers the family policies against single- and dual-stack pools.
func TestDualStackMatrix(t *testing.T) {
	s := newSite(t)
	s.pool(t, "dual", nil, "203.0.113.0/28", "2001:db8:113::/120")
	s.pool(t, "v4only", func(p *v1alpha1.IPPoolSpec) { p.AutoAssign = ptr.To(false) }, "198.51.100.0/28")
	s.runController(t, controller.Options{HandleDefaultClass: true})
	ns := s.namespace(t, "matrix")
	for _, tc := range []struct {
		name       string
		opts       []svcOpt
		wantFams   []bool // true: IPv6
		wantReason string
	}{
		{name: "single-v4", opts: []svcOpt{dualStack(corev1.IPFamilyPolicySingleStack, corev1.IPv4Protocol)}, wantFams: []bool{false}},
		{name: "single-v6", opts: []svcOpt{dualStack(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol)}, wantFams: []bool{true}},
		{name: "prefer-v4-first", opts: []svcOpt{dualStack(corev1.IPFamilyPolicyPreferDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol)}, wantFams: []bool{false, true}},
		{name: "require-v6-first", opts: []svcOpt{dualStack(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv6Protocol, corev1.IPv4Protocol)}, wantFams: []bool{true, false}},
		{name: "prefer-on-v4-pool", opts: []svcOpt{withAnnotation(controller.AnnotationPool, "v4only"),
			dualStack(corev1.IPFamilyPolicyPreferDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol)}, wantFams: []bool{false}},
		{name: "require-on-v4-pool", opts: []svcOpt{withAnnotation(controller.AnnotationPool, "v4only"),
			dualStack(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol)}, wantReason: "FamilyUnavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.service(t, ns, tc.name, tc.opts...)
			if tc.wantReason != "" {
				s.waitCondition(t, ns, tc.name, metav1.ConditionFalse, tc.wantReason)
				return
			}
			svc := s.waitIngress(t, ns, tc.name, 10*time.Second, hasIPs(len(tc.wantFams)))
			for i, ip := range ingress(svc) {
				if ip.Is6() != tc.wantFams[i] {
					t.Errorf("ingress[%d] = %s, want IPv6=%v", i, ip, tc.wantFams[i])
				}
			}
		})
	}
}

// TestMemberlistSecret creates the key once and never replaces it.
func TestMemberlistSecret(t *testing.T) {
	s := newSite(t)
	ctx := context.Background()
	ns := s.namespace(t, "berth-system")
	if err := controller.EnsureMemberlistSecret(ctx, s.kc, ns); err != nil {
		t.Fatal(err)
	}
	first, err := s.kc.CoreV1().Secrets(ns).Get(ctx, controller.MemberlistSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(first.Data[controller.MemberlistSecretKey]); n != 32 {
		t.Fatalf("key is %d bytes, want 32 (AES-256)", n)
	}
	if err := controller.EnsureMemberlistSecret(ctx, s.kc, ns); err != nil {
		t.Fatal(err)
	}
	second, err := s.kc.CoreV1().Secrets(ns).Get(ctx, controller.MemberlistSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if second.ResourceVersion != first.ResourceVersion || string(second.Data[controller.MemberlistSecretKey]) != string(first.Data[controller.MemberlistSecretKey]) {
		t.Error("the second call replaced the key")
	}
}
