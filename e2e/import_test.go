//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/config/admission"
	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/importer/metallb"
	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/router"
)

// metallbSite is a MetalLB configuration for part of the lab, as a site migrating to
// berth would export it: an L2 pool on the service segment outside the demo's lan pool, a
// BGP pool announced with a community alias to FRR and BIRD through BGPPeers equal to the
// demo's (named alike, so the converted peers are the demo's own) but for BIRD's TCP-MD5
// password, from a basic-auth Secret as MetalLB takes it, and MetalLB-annotated Services
// of namespace %[2]s. %[1]s names the cluster-scoped objects.
const metallbSite = `
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: %[1]s-l2, namespace: metallb-system}
spec:
  addresses: [198.18.2.176/29, "2001:db8:18:2::3:0/125"]
  autoAssign: false
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: %[1]s-l2, namespace: metallb-system}
spec:
  ipAddressPools: [%[1]s-l2]
  interfaces: [eth1]
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: %[1]s-bgp, namespace: metallb-system}
spec:
  addresses: [198.51.100.64/28]
  autoAssign: false
---
apiVersion: metallb.io/v1beta1
kind: Community
metadata: {name: %[1]s, namespace: metallb-system}
spec:
  communities:
  - {name: lab-import, value: "64512:300"}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: %[1]s-bgp, namespace: metallb-system}
spec:
  ipAddressPools: [%[1]s-bgp]
  communities: [lab-import]
  peers: [frr, bird]
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: frr, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64500, peerAddress: 198.18.0.1, holdTime: 9s, connectTime: 1s}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: bird, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64501, peerAddress: 198.18.0.2, holdTime: 9s, connectTime: 1s, passwordSecret: {name: bird-md5}}
---
apiVersion: v1
kind: Secret
metadata: {name: bird-md5, namespace: metallb-system}
type: kubernetes.io/basic-auth
stringData: {password: ` + importPassword + `}
---
apiVersion: v1
kind: Service
metadata:
  name: l2
  namespace: %[2]s
  annotations:
    metallb.universe.tf/address-pool: %[1]s-l2
    metallb.universe.tf/allow-shared-ip: web
spec:
  type: LoadBalancer
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  selector: {app: web}
  ports:
  - {name: http, port: 80, protocol: TCP, targetPort: 8080}
  - {name: udp, port: 80, protocol: UDP, targetPort: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: l2-alt
  namespace: %[2]s
  annotations:
    metallb.io/address-pool: %[1]s-l2
    metallb.io/allow-shared-ip: web
spec:
  type: LoadBalancer
  selector: {app: web}
  ports:
  - {name: http, port: 81, protocol: TCP, targetPort: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: bgp
  namespace: %[2]s
  annotations:
    metallb.universe.tf/loadBalancerIPs: 198.51.100.70
spec:
  type: LoadBalancer
  selector: {app: web}
  ports:
  - {name: http, port: 80, protocol: TCP, targetPort: 8080}
  - {name: udp, port: 80, protocol: UDP, targetPort: 8080}
`

// importPassword is BIRD's TCP-MD5 password for the nodes' IPv4 sessions in TestImportMetalLB.
const importPassword = "import-md5-secret"

// TestImportMetalLB: a MetalLB configuration converted by the importer and applied with
// kubectl serves as it did: the converted peers equal the demo's but for BIRD's password
// (a Secret copied into berth's namespace), which BIRD then requires of every node and
// gets (its sessions and routes come back); the Services with
// MetalLB's annotations get addresses from the converted pools (two sharing one by
// allow-shared-ip, one asking for its address) and answer the L2 and the routed client,
// and BIRD receives the BGP address with the community the alias named.
func TestImportMetalLB(t *testing.T) {
	ns := namespace(t)
	name := ns // cluster-scoped objects of this test carry its namespace's unique name
	deployment(t, ns, "web", 2)

	objs, err := admission.Decode(fmt.Appendf(nil, metallbSite, name, ns))
	if err != nil {
		t.Fatal(err)
	}
	var in []metallb.Object
	for _, o := range objs {
		in = append(in, metallb.Object{Source: "metallb.yaml", Object: o.Object})
	}
	res := metallb.Convert(in, metallb.Options{})
	// This configuration converts as it is, with one warning: the password is copied.
	for _, f := range res.Findings {
		if f.Field == "spec.passwordSecret" && !f.NotConverted && strings.Contains(f.Message, "as berth-system/bird-md5") {
			t.Logf("expected finding: %s", f)
			continue
		}
		t.Errorf("finding: %s", f)
	}

	// The demo's peers exist: check that the converted ones equal them but for BIRD's
	// password, and apply the rest and that password.
	apply, peers := &metallb.Result{}, &metallb.Result{}
	var birdPeer v1alpha1.BGPPeer
	for _, o := range res.Objects {
		if o.Object["kind"] != "BGPPeer" {
			apply.Objects = append(apply.Objects, o)
			continue
		}
		var conv, demo v1alpha1.BGPPeer
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &conv); err != nil {
			t.Fatal(err)
		}
		if err := env.cr.Get(t.Context(), client.ObjectKey{Name: conv.Name}, &demo); err != nil {
			t.Fatalf("the demo's BGPPeer %s: %v", conv.Name, err)
		}
		if conv.Spec.PeerPort == 0 {
			conv.Spec.PeerPort = 179 // the CRD's default, which the demo's carries
		}
		if conv.Name == "bird" {
			if conv.Spec.Password == nil {
				t.Fatalf("converted BGPPeer bird has no password")
			}
			birdPeer = demo
			peers.Objects = append(peers.Objects, o)
			conv.Spec.Password = nil
		}
		if d := cmp.Diff(demo.Spec, conv.Spec); d != "" {
			t.Errorf("converted BGPPeer %s differs from the demo's (-demo +converted):\n%s", conv.Name, d)
		}
	}
	dir := t.TempDir()
	file, peerFile := filepath.Join(dir, "berth.yaml"), filepath.Join(dir, "peers.yaml")
	if err := os.WriteFile(file, apply.YAML(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(peerFile, peers.YAML(), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("applying %d converted objects:\n%s\nand over the demo's:\n%s", len(apply.Objects), apply.YAML(), peers.YAML())
	t.Cleanup(func() { // before the namespace goes: the pools wait for their Services' addresses
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := env.site.Kubectl(ctx, "delete", "--ignore-not-found", "--wait=false", "-f", file); err != nil {
			t.Errorf("delete the converted objects: %v", err)
		}
	})
	requireBIRDPassword(t, birdPeer) // its cleanup restores the demo's peer
	if err := env.site.Kubectl(t.Context(), "apply", "-f", file, "-f", peerFile); err != nil {
		t.Fatal(err)
	}
	for _, n := range env.site.Nodes() {
		if err := env.site.Network().BIRD.WaitEstablished(t.Context(), n.Addr4); err != nil {
			t.Fatalf("BIRD's session with %s, with the imported password: %v", n.Name, err)
		}
	}
	t.Logf("BIRD's IPv4 sessions with every node are up with the imported TCP-MD5 password")

	l2Pool := []netip.Prefix{netip.MustParsePrefix("198.18.2.176/29"), netip.MustParsePrefix("2001:db8:18:2::3:0/125")}
	l2 := ingress(t, ns, "l2", 2)
	for i, ip := range l2 {
		if !l2Pool[i].Contains(ip) {
			t.Errorf("l2: %s is not from the converted pool %s", ip, l2Pool[i])
		}
	}
	answers(t, l2Client(), l2)
	alt := ingress(t, ns, "l2-alt", 1)
	if alt[0] != l2[0] {
		t.Errorf("l2-alt has %s, l2 %s: allow-shared-ip should have made them share it", alt[0], l2[0])
	}
	replyAt(t, l2Client(), "tcp", netip.AddrPortFrom(alt[0], 81))
	t.Logf("l2 %v and l2-alt %s (shared) answer the L2 client", l2, alt[0])

	bgp := ingress(t, ns, "bgp", 1)
	if want := netip.MustParseAddr("198.51.100.70"); bgp[0] != want {
		t.Fatalf("bgp has %s, want the requested %s", bgp[0], want)
	}
	waitNextHops(t, bgp[0], env.nodes, 30*time.Second)
	answers(t, routedClient(), bgp)
	lab.Eventually(t, 30*time.Second, fmt.Sprintf("BIRD has %s with community 64512:300 from every node", bgp[0]), func(ctx context.Context) (string, bool) {
		routes, err := env.site.Network().BIRD.BGPRoutes(ctx, netns.IPv4)
		if err != nil {
			return err.Error(), false
		}
		var with []string
		for _, r := range routes {
			if r.Prefix == netip.PrefixFrom(bgp[0], 32) && slices.Contains(r.Communities, "64512:300") {
				with = append(with, nodeOf(r.NextHop))
			}
		}
		slices.Sort(with)
		return fmt.Sprint(with), slices.Equal(with, slices.Sorted(slices.Values(env.nodes)))
	})
	t.Logf("bgp %s at FRR via %v, at BIRD with community 64512:300, answers the routed client", bgp[0], env.nodes)
}

// requireBIRDPassword makes BIRD require importPassword on its IPv4 sessions with the
// nodes, so that they stay down until berth uses it; cleanup restores the demo's peer
// (demo, without a password, as the test found it) and BIRD's neighbours, and waits for
// the sessions.
func requireBIRDPassword(t *testing.T, demo v1alpha1.BGPPeer) {
	t.Helper()
	bird := env.site.Network().BIRD
	set := func(ctx context.Context, password string) error {
		for _, n := range env.site.Nodes() {
			if err := bird.RemoveNeighbor(ctx, n.Addr4); err != nil {
				return err
			}
			if err := bird.AddNeighbor(ctx, router.Neighbor{Addr: n.Addr4, ASN: lab.NodeASN, Password: password}); err != nil {
				return err
			}
		}
		return nil
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var cur v1alpha1.BGPPeer
		err := env.cr.Get(ctx, client.ObjectKey{Name: demo.Name}, &cur)
		if err == nil {
			cur.Spec = demo.Spec
			err = env.cr.Update(ctx, &cur)
		}
		if err != nil {
			t.Errorf("restore the demo's BGPPeer %s: %v", demo.Name, err)
		}
		if err := set(ctx, ""); err != nil {
			t.Errorf("restore BIRD's neighbours: %v", err)
		}
		for _, n := range env.site.Nodes() {
			if err := bird.WaitEstablished(ctx, n.Addr4); err != nil {
				t.Errorf("BIRD's session with %s after the test: %v", n.Name, err)
			}
		}
	})
	if err := set(t.Context(), importPassword); err != nil {
		t.Fatal(err)
	}
}
