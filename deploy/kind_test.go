package deploy

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/admission"
	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/controller"
)

// The kind demo (kind/demo.sh) cannot run here (no Docker), so these tests hold what it
// would apply in step with the rest of the repository: they run `demo.sh render`, which
// writes the manifests, the FRR configuration, the images and the helm arguments without
// touching Docker, for a kind network of kindSubnet with FRR at kindFRRIP.
const (
	kindSubnet = "172.18.0.0/16"
	kindFRRIP  = "172.18.0.5"
	kindL2Pool = "172.18.255.240/28" // the subnet's top /28
)

// kindDemo is what `demo.sh render` wrote.
type kindDemo struct {
	helmArgs []string                     // the arguments demo.sh adds to helm upgrade --install
	built    []kindImage                  // images built from a Dockerfile
	pulled   []string                     // images pulled from a registry
	services []string                     // namespace/name of the Services the script waits for: L2 first, then BGP
	berth    []*unstructured.Unstructured // the objects of berth.yaml
	app      []*unstructured.Unstructured // the objects of app.yaml
	frrConf  string
	daemons  string
}

type kindImage struct{ ref, dockerfile string }

func renderKindDemo(t *testing.T) kindDemo {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("bash", filepath.Join("kind", "demo.sh"), "render", dir)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"KIND_SUBNET=" + kindSubnet, "FRR_IP=" + kindFRRIP}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kind/demo.sh render: %v\n%s", err, out)
	}
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("kind/demo.sh render wrote no %s: %v", name, err)
		}
		return string(b)
	}
	decode := func(name string) []*unstructured.Unstructured {
		t.Helper()
		objs, err := admission.Decode([]byte(read(name)))
		if err != nil {
			t.Fatalf("kind/demo.sh render: %s: %v", name, err)
		}
		return objs
	}
	d := kindDemo{
		helmArgs: strings.Split(strings.TrimSpace(read("helm-args")), "\n"), // one per line
		services: strings.Fields(read("services")),
		berth:    decode("berth.yaml"),
		app:      decode("app.yaml"),
		frrConf:  read("frr/frr.conf"),
		daemons:  read("frr/daemons"),
	}
	for _, line := range strings.Split(strings.TrimSpace(read("images")), "\n") {
		switch f := strings.Fields(line); {
		case len(f) == 3 && f[0] == "build":
			d.built = append(d.built, kindImage{f[1], f[2]})
		case len(f) == 2 && f[0] == "pull":
			d.pulled = append(d.pulled, f[1])
		default:
			t.Fatalf("images: cannot read %q", line)
		}
	}
	return d
}

// kindValues reads the chart's values, deploy/helm/berth/values.yaml.
func kindValues(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("helm", "berth", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatalf("deploy/helm/berth/values.yaml: %v", err)
	}
	return values
}

// kindRegistryHost returns the registry host an image reference names, if any.
func kindRegistryHost(ref string) string {
	first, _, found := strings.Cut(ref, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return first
	}
	return ""
}

// TestKindDemoMatchesChart: every --set the demo passes to helm names a value of
// deploy/helm/berth/values.yaml; the images it builds from berth's Dockerfiles are the
// ones it sets in the chart, for every image the chart has; no image names a registry.
func TestKindDemoMatchesChart(t *testing.T) {
	d := renderKindDemo(t)
	values := kindValues(t)

	set := map[string]string{}
	for i := 0; i < len(d.helmArgs); i += 2 {
		if d.helmArgs[i] != "--set" || i+1 == len(d.helmArgs) {
			t.Fatalf("helm arguments: want --set key=value pairs, got %q", d.helmArgs)
		}
		key, val, _ := strings.Cut(d.helmArgs[i+1], "=")
		set[key] = val
		def, ok, _ := unstructured.NestedFieldNoCopy(values, strings.Split(key, ".")...)
		switch _, isMap := def.(map[string]any); {
		case !ok:
			t.Errorf("kind/demo.sh passes --set %s to helm, but deploy/helm/berth/values.yaml has no %s", key, key)
		case isMap:
			t.Errorf("kind/demo.sh passes --set %s to helm, but %s is a map in deploy/helm/berth/values.yaml", key, key)
		}
	}

	built := map[string]bool{} // chart values key of each built image
	for _, img := range d.built {
		bin := filepath.Base(filepath.Dir(img.dockerfile)) // cmd/berth-speaker/Dockerfile
		df, err := os.ReadFile(filepath.Join("..", img.dockerfile))
		if err != nil {
			t.Errorf("kind/demo.sh builds %s from %s: %v", img.ref, img.dockerfile, err)
			continue
		}
		if !strings.Contains(string(df), "./cmd/"+bin) {
			t.Errorf("kind/demo.sh builds %s from %s, which does not build ./cmd/%s", img.ref, img.dockerfile, bin)
		}
		key := strings.TrimPrefix(bin, "berth-") + ".image"
		built[key] = true
		i := strings.LastIndex(img.ref, ":")
		if i < strings.LastIndex(img.ref, "/") {
			i = -1
		}
		repo, tag := img.ref, ""
		if i >= 0 {
			repo, tag = img.ref[:i], img.ref[i+1:]
		}
		if got := set[key+".repository"]; got != repo {
			t.Errorf("kind/demo.sh builds and loads %s, but passes --set %s.repository=%s to helm", img.ref, key, got)
		}
		if got := set[key+".tag"]; got != tag {
			t.Errorf("kind/demo.sh builds and loads %s, but passes --set %s.tag=%s to helm", img.ref, key, got)
		}
		if got := set[key+".pullPolicy"]; got != string(corev1.PullNever) {
			t.Errorf("kind/demo.sh loads %s into the nodes but sets %s.pullPolicy=%q, not Never", img.ref, key, got)
		}
	}
	for name, v := range values {
		if m, ok := v.(map[string]any); ok && m["image"] != nil && !built[name+".image"] {
			t.Errorf("deploy/helm/berth/values.yaml has %s.image, which kind/demo.sh does not build", name)
		}
	}
	refs := slices.Clone(d.pulled)
	for _, img := range d.built {
		refs = append(refs, img.ref)
	}
	for _, ref := range refs {
		if host := kindRegistryHost(ref); host != "" {
			t.Errorf("kind/demo.sh uses the image %s, which names the registry %s: leave the registry to the user", ref, host)
		}
	}
}

// TestKindDemoResourcesMatchCRDs: the kube-apiserver, with config/crd, admits every berth
// object the demo applies (kind and version, schema, CEL rules, no unknown field), the
// admitted objects convert to the API types, and config.Build accepts all of them with no
// problem. The L2 pool is the kind network's top /28 and the BGP peer is FRR.
func TestKindDemoResourcesMatchCRDs(t *testing.T) {
	d := renderKindDemo(t)
	res := kindAdmit(t, d.berth)
	snap, problems := config.Build(res)
	for _, p := range problems {
		t.Errorf("kind/berth.yaml.tmpl: config.Build: %s: %s (%s)", p.Object, p.Message, p.Reason)
	}

	l2 := kindL2Pools(res)
	var found bool
	for _, p := range res.Pools {
		if slices.Contains(p.Spec.Addresses, v1alpha1.AddressRange(kindL2Pool)) {
			found = true
			if !l2[p.Name] {
				t.Errorf("kind/berth.yaml.tmpl: pool %s holds the kind network's addresses, but no L2Advertisement names it", p.Name)
			}
		}
	}
	if !found {
		t.Errorf("kind/berth.yaml.tmpl: no pool of %s, the top /28 of the kind network %s", kindL2Pool, kindSubnet)
	}
	if len(res.Peers) == 0 {
		t.Errorf("kind/berth.yaml.tmpl: no BGPPeer")
	}
	for _, p := range res.Peers {
		if p.Spec.PeerAddress != kindFRRIP {
			t.Errorf("kind/berth.yaml.tmpl: BGPPeer %s peers with %s, not FRR's address %s", p.Name, p.Spec.PeerAddress, kindFRRIP)
		}
		if snap.Peer(p.Name) == nil {
			t.Errorf("kind/berth.yaml.tmpl: BGPPeer %s is not in config.Build's snapshot", p.Name)
		}
	}
}

// kindL2Pools are the pools L2Advertisements name.
func kindL2Pools(res config.Resources) map[string]bool {
	out := map[string]bool{}
	for _, a := range res.L2Advertisements {
		for _, p := range a.Spec.IPPools {
			out[string(p)] = true
		}
	}
	return out
}

// kindAdmit admits the objects of berth.yaml as the kube-apiserver creates them, failing t
// with its message for each it rejects, and converts the admitted ones (defaults applied)
// for config.Build.
func kindAdmit(t *testing.T, objs []*unstructured.Unstructured) config.Resources {
	t.Helper()
	a, err := admission.New()
	if err != nil {
		t.Fatalf("config/crd: %v", err)
	}
	var res config.Resources
	for _, o := range objs {
		admitted, err := a.Create(t.Context(), o.Object)
		if err == nil {
			switch config.Kind(o.GetKind()) {
			case config.KindIPPool:
				err = kindConvert(admitted, &res.Pools)
			case config.KindBGPPeer:
				err = kindConvert(admitted, &res.Peers)
			case config.KindBGPAdvertisement:
				err = kindConvert(admitted, &res.BGPAdvertisements)
			case config.KindL2Advertisement:
				err = kindConvert(admitted, &res.L2Advertisements)
			default:
				err = errors.New("not a kind of berth's configuration")
			}
		}
		if err != nil {
			t.Errorf("kind/berth.yaml.tmpl: %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	return res
}

// kindConvert converts o to a T, failing on a field T lacks, and appends it.
func kindConvert[T any](o *unstructured.Unstructured, list *[]T) error {
	var v T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, &v, true); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}

// TestKindDemoServices: the demo's workload converts to the API types with no unknown
// field; its Services are LoadBalancers that select the echo Pods, take their addresses
// from pools of berth.yaml by berth's pool annotation, one Service per pool, the L2 one from
// an L2-advertised pool and the BGP one from a BGP-advertised pool; they are the Services
// demo.sh waits for, and the workload runs the echo image the script names.
func TestKindDemoServices(t *testing.T) {
	d := renderKindDemo(t)
	res := kindAdmit(t, d.berth)
	bgp := map[string]bool{}
	for _, a := range res.BGPAdvertisements {
		for _, p := range a.Spec.IPPools {
			bgp[string(p)] = true
		}
	}
	l2 := kindL2Pools(res)

	var deployments []appsv1.Deployment
	var services []corev1.Service
	for _, o := range d.app {
		var err error
		switch gvk := o.GroupVersionKind(); gvk {
		case appsv1.SchemeGroupVersion.WithKind("Deployment"):
			err = kindConvert(o, &deployments)
		case corev1.SchemeGroupVersion.WithKind("Service"):
			err = kindConvert(o, &services)
		case corev1.SchemeGroupVersion.WithKind("Namespace"):
			err = kindConvert(o, new([]corev1.Namespace))
		default:
			err = fmt.Errorf("unexpected %s", gvk)
		}
		if err != nil {
			t.Errorf("kind/app.yaml.tmpl: %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	if len(deployments) != 1 {
		t.Fatalf("kind/app.yaml.tmpl: want one Deployment, got %d", len(deployments))
	}
	dep := deployments[0]
	if c := dep.Spec.Template.Spec.Containers; len(c) != 1 || !slices.Contains(d.pulled, c[0].Image) {
		t.Errorf("kind/app.yaml.tmpl: the Deployment runs %v, not an image kind/demo.sh names (%v)", c, d.pulled)
	}

	byName := map[string]corev1.Service{}
	usedPools := map[string]string{}
	for _, svc := range services {
		key := svc.Namespace + "/" + svc.Name
		byName[key] = svc
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			t.Errorf("kind/app.yaml.tmpl: Service %s is of type %q, not LoadBalancer", key, svc.Spec.Type)
		}
		for k, v := range svc.Spec.Selector {
			if dep.Spec.Template.Labels[k] != v {
				t.Errorf("kind/app.yaml.tmpl: Service %s selects %s=%s, which the echo Pods lack", key, k, v)
			}
		}
		pool := svc.Annotations[controller.AnnotationPool]
		if !slices.ContainsFunc(res.Pools, func(p v1alpha1.IPPool) bool { return p.Name == pool }) {
			t.Errorf("kind/app.yaml.tmpl: Service %s: %s: %q is no pool of kind/berth.yaml.tmpl", key, controller.AnnotationPool, pool)
		}
		if other, dup := usedPools[pool]; dup {
			t.Errorf("kind/app.yaml.tmpl: Services %s and %s both take pool %q", other, key, pool)
		}
		usedPools[pool] = key
	}
	for _, p := range res.Pools {
		if _, ok := usedPools[p.Name]; !ok {
			t.Errorf("kind/berth.yaml.tmpl: no Service of kind/app.yaml.tmpl takes its address from pool %s", p.Name)
		}
	}

	if len(d.services) != 2 {
		t.Fatalf("kind/demo.sh waits for Services %v: want the L2 one and the BGP one", d.services)
	}
	for i, want := range []map[string]bool{l2, bgp} {
		svc, ok := byName[d.services[i]]
		if !ok {
			t.Errorf("kind/demo.sh waits for Service %s, which kind/app.yaml.tmpl does not create", d.services[i])
			continue
		}
		if pool := svc.Annotations[controller.AnnotationPool]; !want[pool] {
			t.Errorf("kind/demo.sh reaches Service %s by %s, but its pool %q is not advertised so",
				d.services[i], []string{"ARP on the Docker bridge", "BGP through FRR"}[i], pool)
		}
	}
}

// TestKindDemoFRR: the router accepts what berth's speakers do: it peers from the BGPPeer's
// peerASN with the myASN of berth, accepts sessions from the nodes' subnet (the chart's
// speakers dial and do not listen), takes eBGP routes without a policy, and runs bgpd.
func TestKindDemoFRR(t *testing.T) {
	d := renderKindDemo(t)
	peers := kindAdmit(t, d.berth).Peers
	if len(peers) != 1 {
		t.Fatalf("kind/berth.yaml.tmpl: want one BGPPeer (FRR), got %d", len(peers))
	}
	peer := peers[0].Spec
	if peer.PeerPort != 0 && peer.PeerPort != config.DefaultPeerPort {
		t.Errorf("BGPPeer dials port %d, FRR listens on %d", peer.PeerPort, config.DefaultPeerPort)
	}

	conf := d.frrConf
	match := func(re string) []string { return regexp.MustCompile(`(?m)^\s*` + re + `\s*$`).FindStringSubmatch(conf) }
	// value is the first group of the line re matches, "none" without one.
	value := func(re string) string {
		if m := match(re); m != nil {
			return m[1]
		}
		return "none"
	}
	if got := value(`router bgp (\d+)`); got != fmt.Sprint(peer.PeerASN) {
		t.Errorf("kind/frr/frr.conf.tmpl: router bgp %s, but the BGPPeer's peerASN is %d", got, peer.PeerASN)
	}
	group := match(`bgp listen range (\S+) peer-group (\S+)`)
	if group == nil {
		port, _, _ := unstructured.NestedFieldNoCopy(kindValues(t), "speaker", "bgpListenPort")
		t.Fatalf("kind/frr/frr.conf.tmpl: no bgp listen range, but the speakers dial FRR (speaker.bgpListenPort %v)", port)
	}
	if group[1] != kindSubnet {
		t.Errorf("kind/frr/frr.conf.tmpl: listens to %s, not the kind network %s", group[1], kindSubnet)
	}
	if got := value(`neighbor ` + regexp.QuoteMeta(group[2]) + ` remote-as (\d+)`); got != fmt.Sprint(peer.MyASN) {
		t.Errorf("kind/frr/frr.conf.tmpl: neighbor %s remote-as %s, but the BGPPeer's myASN is %d", group[2], got, peer.MyASN)
	}
	if peer.MyASN != peer.PeerASN && match(`no bgp ebgp-requires-policy`) == nil {
		t.Errorf("kind/frr/frr.conf.tmpl: eBGP without `no bgp ebgp-requires-policy`: FRR would take no route")
	}
	if !regexp.MustCompile(`(?m)^bgpd=yes$`).MatchString(d.daemons) {
		t.Errorf("kind/frr/daemons does not enable bgpd")
	}
}

// TestKindDemoCluster: the cluster has a worker to announce from: kubeadm excludes the
// control-plane node from external load balancers.
func TestKindDemoCluster(t *testing.T) {
	objs, err := admission.ReadFile(filepath.Join("kind", "cluster.yaml"))
	if err != nil || len(objs) != 1 {
		t.Fatalf("kind/cluster.yaml: want one object, got %d (%v)", len(objs), err)
	}
	c := objs[0]
	if c.GetKind() != "Cluster" || c.GetAPIVersion() != "kind.x-k8s.io/v1alpha4" {
		t.Fatalf("kind/cluster.yaml: %s %s is not a kind cluster configuration", c.GetAPIVersion(), c.GetKind())
	}
	nodes, _, _ := unstructured.NestedSlice(c.Object, "nodes")
	var workers int
	for _, n := range nodes {
		if n, _ := n.(map[string]any); n["role"] == "worker" {
			workers++
		}
	}
	if workers == 0 {
		t.Errorf("kind/cluster.yaml: no worker; the control-plane node announces nothing")
	}
}
