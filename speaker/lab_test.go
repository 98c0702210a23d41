//go:build integration && privileged

package speaker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2/ktesting"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/controlplane"
	"github.com/berthlb/berth/lab/proc"
	"github.com/berthlb/berth/speaker"
)

// world is a lab site running berth-controller and a berth-speaker in every node.
type world struct {
	t        *testing.T
	site     *lab.Site
	bin      lab.Berth
	cr       client.Client
	kc       kubernetes.Interface // the admin, with a rate limit for tests that poll
	speakers map[string]*proc.Process
	nodes    []string
}

// worldOptions shape startWorld.
type worldOptions struct {
	nodes int
	// noController runs no berth-controller: the test writes the memberlist Secret and
	// the Services' ingress itself.
	noController bool
	// noSpeakers starts no speaker: the test calls startSpeaker.
	noSpeakers bool
	// kubeProxy runs kube-proxy in the nodes, so that traffic to LB IPs reaches pods.
	kubeProxy bool
	// routers starts FRR and BIRD; the test adds the nodes as their neighbours.
	routers bool
}

func startWorld(t *testing.T, opts worldOptions) *world {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	base, err := os.MkdirTemp("/run", "berth-speaker-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil { // FRR's user must reach its directory
		t.Fatal(err)
	}
	bins := make(chan error, 1)
	var bin lab.Berth
	go func() {
		var err error
		bin, err = lab.BuildBerth(ctx, t.TempDir())
		bins <- err
	}()
	begin := time.Now()
	site, err := lab.Start(ctx, lab.SiteOptions{Nodes: opts.nodes, BaseDir: base, NoRouters: !opts.routers, NoKubeProxy: !opts.kubeProxy,
		CRDDirs: []string{"../config/crd"}})
	if err != nil {
		<-bins
		t.Fatal(err)
	}
	t.Logf("site up in %v, prefix %s", time.Since(begin).Round(time.Millisecond), site.Prefix())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if api := site.Cluster().Process(controlplane.APIServer); api != nil {
			_ = api.Resume() // a failed outage test must not leave it stopped
		}
		if t.Failed() {
			var b strings.Builder
			site.Report(ctx, &b)
			t.Logf("site report:\n%s", b.String())
		}
		if err := site.Close(ctx); err != nil {
			t.Errorf("close site: %v", err)
		}
	})
	if err := <-bins; err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	cr, err := client.New(func() *rest.Config { c := rest.CopyConfig(site.Config()); c.QPS, c.Burst = 200, 400; return c }(), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(site.Config())
	cfg.QPS, cfg.Burst = 200, 400
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, site: site, bin: bin, cr: cr, kc: kc, speakers: map[string]*proc.Process{}}
	for _, n := range site.Nodes() {
		w.nodes = append(w.nodes, n.Name)
	}
	w.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "berth-system"}})
	if opts.noController {
		w.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "berth-system", Name: "berth-memberlist"},
			Data: map[string][]byte{"key": []byte("0123456789abcdef0123456789abcdef")}})
	} else if _, err := site.StartController(ctx, bin.Controller, "--log-level=verbose"); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 30*time.Second, "memberlist Secret", func(ctx context.Context) (string, bool) {
		_, err := site.Client().CoreV1().Secrets("berth-system").Get(ctx, "berth-memberlist", metav1.GetOptions{})
		return fmt.Sprint(err), err == nil
	})
	w.create(&v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "lan"},
		Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.18.2.192/26", "2001:db8:18:2::1:0/112"}}})
	w.create(&v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "lan"},
		Spec: v1alpha1.L2AdvertisementSpec{AdvertisementTarget: v1alpha1.AdvertisementTarget{IPPools: []v1alpha1.ObjectName{"lan"}},
			Interfaces: []v1alpha1.InterfaceName{"eth1"}}})
	for _, n := range w.nodes {
		if !opts.noSpeakers {
			w.startSpeaker(n)
		}
	}
	return w
}

func (w *world) create(obj client.Object) {
	w.t.Helper()
	if err := w.cr.Create(w.t.Context(), obj); err != nil {
		w.t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

func (w *world) startSpeaker(node string) {
	w.t.Helper()
	_, ctx := ktesting.NewTestContext(w.t)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p, err := w.site.StartSpeaker(ctx, w.bin.Speaker, node, "--log-level=verbose")
	if err != nil {
		w.t.Fatal(err)
	}
	w.speakers[node] = p
}

// decisions reads a speaker's decision endpoint.
func (w *world) decisions(ctx context.Context, node string) (speaker.DecisionsView, error) {
	var v speaker.DecisionsView
	b, err := lab.AskSocket(ctx, w.site.SpeakerSocket(node), "/decisions")
	if err != nil {
		return v, err
	}
	return v, json.Unmarshal(b, &v)
}

// l2 is one speaker's L2 view: IP → owner, and the IPs it announces itself.
type l2 struct {
	owners    map[string]string
	announced map[string]bool
	service   map[string]string // IP → Service name
	services  int
}

func (w *world) l2Views(ctx context.Context, nodes []string) (map[string]l2, error) {
	out := map[string]l2{}
	for _, n := range nodes {
		v, err := w.decisions(ctx, n)
		if err != nil {
			return nil, err
		}
		if !v.Synced {
			return nil, fmt.Errorf("%s not synced", n)
		}
		view := l2{owners: map[string]string{}, announced: map[string]bool{}, service: map[string]string{}, services: len(v.Services)}
		for _, s := range v.Services {
			for _, ip := range s.IPs {
				view.owners[ip.IP] = ip.L2.Owner
				view.service[ip.IP] = s.Name
				if ip.L2.Announce {
					view.announced[ip.IP] = true
				}
			}
		}
		out[n] = view
	}
	return out, nil
}

// agree checks that the speakers on nodes see the same owner for every IP of the want
// Services, and that exactly the owner announces it. It returns the owners.
func agree(views map[string]l2, nodes []string, services int) (map[string]string, string) {
	first := views[nodes[0]]
	for _, n := range nodes {
		v := views[n]
		if v.services != services {
			return nil, fmt.Sprintf("%s sees %d Services, want %d", n, v.services, services)
		}
		if !maps.Equal(v.owners, first.owners) {
			return nil, fmt.Sprintf("%s and %s disagree: %v vs %v", n, nodes[0], v.owners, first.owners)
		}
	}
	for ip, owner := range first.owners {
		var by []string
		for _, n := range nodes {
			if views[n].announced[ip] {
				by = append(by, n)
			}
		}
		if owner != "" && (len(by) != 1 || by[0] != owner) {
			return nil, fmt.Sprintf("%s: owner %s, announced by %v", ip, owner, by)
		}
	}
	return first.owners, ""
}

func (w *world) pod(name, node, app string) {
	w.create(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: ptr.To[int64](0), Containers: []corev1.Container{{
			Name: "echo", Image: "berth.dev/lab-echo",
			Ports: []corev1.ContainerPort{{ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
		}}},
	})
}

func (w *world) service(name, app string, etp corev1.ServiceExternalTrafficPolicy) {
	w.create(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": app},
			ExternalTrafficPolicy: etp,
			Ports:                 []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	})
}

// readyNodes lists the nodes with a ready endpoint of a Service.
func (w *world) readyNodes(ctx context.Context, svc string) []string {
	list, err := w.kc.DiscoveryV1().EndpointSlices("demo").List(ctx,
		metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if e.NodeName != nil && (e.Conditions.Ready == nil || *e.Conditions.Ready) {
				out = append(out, *e.NodeName)
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// others lists the nodes but node, in order.
func (w *world) others(node string) []string {
	var out []string
	for _, n := range w.nodes {
		if n != node {
			out = append(out, n)
		}
	}
	return out
}

// ingressIPs waits for a dual-stack Service's IPv4 and IPv6 ingress IPs.
func (w *world) ingressIPs(t *testing.T, name string) (v4, v6 netip.Addr) {
	t.Helper()
	lab.Eventually(t, 30*time.Second, "Service "+name+" gets an IPv4 and an IPv6 address", func(ctx context.Context) (string, bool) {
		svc, err := w.site.Client().CoreV1().Services("demo").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error(), false
		}
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil && a.Is4() {
				v4 = a
			} else if err == nil {
				v6 = a
			}
		}
		return fmt.Sprintf("%+v", svc.Status), v4.IsValid() && v6.IsValid()
	})
	return v4, v6
}
