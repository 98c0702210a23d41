package metallb

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/berthlb/berth/config"
)

// Builders of MetalLB manifests for the table below.
func mlb(kind, ns, name, spec string) string {
	version := "v1beta1"
	if kind == kindBGPPeer {
		version = "v1beta2"
	}
	return fmt.Sprintf("---\napiVersion: metallb.io/%s\nkind: %s\nmetadata: {name: %s, namespace: %s}\nspec: %s\n", version, kind, name, ns, spec)
}

func svc(ns, name, annotations, spec string) string {
	return fmt.Sprintf("---\napiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: %s, annotations: %s}\nspec: %s\n", name, ns, annotations, spec)
}

const (
	lanPool = `{addresses: [198.18.2.192/26]}`
	peerOK  = `{myASN: 64512, peerASN: 64500, peerAddress: 198.18.0.1}`
	lbSpec  = `{type: LoadBalancer, ports: [{port: 80}]}`
)

// summary lists the output as "Kind name: spec" lines, the spec as compact YAML.
func summary(r *Result) []string {
	var out []string
	for _, o := range r.Objects {
		part := o.Object["spec"]
		if o.Object["kind"] == kindService {
			part, _, _ = nestedMap(o.Object, "metadata", "annotations")
		}
		if o.Object["kind"] == kindSecret {
			part = "secret"
		}
		y, _ := yaml.Marshal(part)
		out = append(out, fmt.Sprintf("%s %s: %s", o.Object["kind"], nestedString(o.Object, "metadata", "name"),
			strings.Join(strings.Fields(string(y)), " ")))
	}
	return out
}

func nestedMap(o map[string]any, fields ...string) (any, bool, error) {
	m := o
	for _, f := range fields {
		next, ok := m[f].(map[string]any)
		if !ok {
			return nil, false, nil
		}
		m = next
	}
	return m, true, nil
}

// TestImportEdges: one row per way MetalLB's configuration does not map one to one. Each
// row lists the output (kind, name and spec) and the findings, each as a substring of
// "Kind ns/name: [not converted: ]field: message", in order.
func TestImportEdges(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       string
		objects  []string
		findings []string
	}{
		{
			name: "names shared across namespaces",
			in: mlb(kindIPAddressPool, "a", "lan", lanPool) + mlb(kindIPAddressPool, "b", "lan", `{addresses: [198.18.3.0/24]}`) +
				mlb(kindIPAddressPool, "b", "b-lan", `{addresses: [198.18.4.0/24]}`) + mlb(kindL2Adv, "a", "l2", `{ipAddressPools: [lan]}`) +
				mlb(kindL2Adv, "b", "l2", `{}`) + svc("x", "s", `{metallb.universe.tf/address-pool: lan}`, lbSpec) +
				svc("x", "t", `{metallb.universe.tf/address-pool: b-lan}`, lbSpec),
			objects: []string{
				"IPPool a-lan: addresses: - 198.18.2.192/26",
				"IPPool b-lan: addresses: - 198.18.4.0/24",
				"IPPool b-lan-2: addresses: - 198.18.3.0/24",
				"L2Advertisement a-l2: ipPools: - a-lan",
				"L2Advertisement b-l2: ipPools: - b-lan - b-lan-2",
				"Service t: berth.dev/pool: b-lan",
			},
			findings: []string{
				`IPAddressPool a/lan: metadata.name: renamed to "a-lan": berth's IPPool objects are cluster-scoped, and "lan" is in namespaces a, b`,
				`IPAddressPool b/lan: metadata.name: renamed to "b-lan-2"`,
				`L2Advertisement a/l2: metadata.name: renamed to "a-l2"`,
				`L2Advertisement b/l2: metadata.name: renamed to "b-l2"`,
				`Service x/s: not converted: metadata.annotations: address-pool "lan": the input has IPAddressPools of that name in namespaces a, b, renamed a-lan, b-lan-2`,
			},
		},
		{
			name: "pool selectors across namespaces become pool lists",
			in: mlb(kindIPAddressPool, "a", "p", lanPool) + mlb(kindIPAddressPool, "b", "q", `{addresses: [198.18.3.0/24]}`) +
				strings.Replace(mlb(kindIPAddressPool, "a", "r", `{addresses: [198.18.4.0/24]}`), "namespace: a}", "namespace: a, labels: {x: yes-x}}", 1) +
				mlb(kindL2Adv, "a", "l2", `{ipAddressPoolSelectors: [{matchLabels: {x: yes-x}}]}`),
			objects: []string{"IPPool p: addresses: - 198.18.2.192/26", "IPPool q: addresses: - 198.18.3.0/24", "IPPool r: addresses: - 198.18.4.0/24",
				"L2Advertisement l2: ipPools: - r"},
			findings: []string{`L2Advertisement a/l2: spec.ipAddressPoolSelectors: written as the pools they select in the input (r), as the input has pools in several namespaces`},
		},
		{
			name: "pool selectors no selector can merge",
			in: strings.Replace(mlb(kindIPAddressPool, "m", "p", lanPool), "namespace: m}", "namespace: m, labels: {x: yes-x}}", 1) +
				strings.Replace(mlb(kindIPAddressPool, "m", "q", `{addresses: [198.18.3.0/24]}`), "namespace: m}", "namespace: m, labels: {z: w}}", 1) +
				mlb(kindL2Adv, "m", "l2", `{ipAddressPoolSelectors: [{matchLabels: {x: yes-x}}, {matchLabels: {z: w}}]}`) +
				mlb(kindL2Adv, "m", "one-key", `{ipAddressPoolSelectors: [{matchLabels: {x: yes-x}}, {matchExpressions: [{key: x, operator: In, values: [v]}]}]}`),
			objects: []string{"IPPool p: addresses: - 198.18.2.192/26", "IPPool q: addresses: - 198.18.3.0/24",
				"L2Advertisement l2: ipPools: - p - q",
				"L2Advertisement one-key: ipPoolSelector: matchExpressions: - key: x operator: In values: - v - yes-x"},
			findings: []string{`L2Advertisement m/l2: spec.ipAddressPoolSelectors: written as the pools they select in the input (p, q), as berth's one ipPoolSelector cannot say`},
		},
		{
			name: "addresses",
			in: mlb(kindIPAddressPool, "m", "one", `{addresses: [198.18.2.7, "2001:db8::/96"]}`) +
				mlb(kindIPAddressPool, "m", "reversed", `{addresses: [198.18.2.20-198.18.2.10]}`) +
				mlb(kindIPAddressPool, "m", "mixed", `{addresses: ["198.18.2.1-2001:db8::1"]}`) +
				mlb(kindIPAddressPool, "m", "bad", `{addresses: [lan]}`) +
				mlb(kindIPAddressPool, "m", "empty", `{addresses: []}`),
			objects: []string{"IPPool one: addresses: - 198.18.2.7/32 - 2001:db8::/96"},
			findings: []string{
				`IPAddressPool m/bad: not converted: spec.addresses[0]: "lan" is neither a CIDR nor a range`,
				`IPAddressPool m/empty: not converted: spec.addresses: no addresses`,
				`IPAddressPool m/mixed: not converted: spec.addresses[0]: range "198.18.2.1-2001:db8::1" mixes IPv4 and IPv6`,
				`IPAddressPool m/one: spec.addresses[0]: a single address, which MetalLB refuses without a prefix length: written as 198.18.2.7/32`,
				`IPAddressPool m/reversed: not converted: spec.addresses[0]: range "198.18.2.20-198.18.2.10": the first address is greater than the last`,
			},
		},
		{
			name: "priorities and selectors",
			in: mlb(kindIPAddressPool, "m", "only-priority", `{addresses: [198.18.2.0/28], serviceAllocation: {priority: 7}}`) +
				mlb(kindIPAddressPool, "m", "huge", `{addresses: [198.18.2.16/28], serviceAllocation: {priority: 2000000, namespaces: [a]}}`) +
				mlb(kindIPAddressPool, "m", "services", `{addresses: [198.18.2.32/28], serviceAllocation: {priority: 3, serviceSelectors: [{matchLabels: {a: b}}, {matchLabels: {c: d}}]}}`) +
				mlb(kindIPAddressPool, "m", "namespaces", `{addresses: [198.18.2.48/28], serviceAllocation: {namespaces: [b, a], namespaceSelectors: [{matchLabels: {kubernetes.io/metadata.name: c}}]}}`),
			objects: []string{
				"IPPool huge: addresses: - 198.18.2.16/28 namespaceSelector: matchExpressions: - key: kubernetes.io/metadata.name operator: In values: - a priority: 1000000",
				"IPPool namespaces: addresses: - 198.18.2.48/28 namespaceSelector: matchExpressions: - key: kubernetes.io/metadata.name operator: In values: - a - b - c priority: 1000000",
				"IPPool only-priority: addresses: - 198.18.2.0/28 priority: 7",
				"IPPool services: addresses: - 198.18.2.32/28 priority: 3 serviceSelector: matchLabels: a: b c: d",
			},
			findings: []string{
				`IPAddressPool m/huge: spec.serviceAllocation.priority: 2000000 is above berth's highest, 1000000, which it becomes`,
				`IPAddressPool m/services: spec.serviceAllocation.serviceSelectors: MetalLB takes Services any of the selectors match`,
			},
		},
		{
			name: "peers berth cannot take",
			in: mlb(kindBGPPeer, "m", "unnumbered", `{myASN: 64512, peerASN: 64500, interface: eth0}`) +
				mlb(kindBGPPeer, "m", "external", `{myASN: 64512, dynamicASN: external, peerAddress: 198.18.0.1}`) +
				mlb(kindBGPPeer, "m", "both", `{myASN: 64512, peerASN: 64500, peerAddress: 198.18.0.1, password: x, passwordSecret: {name: s}}`) +
				mlb(kindBGPPeer, "m", "no-asn", `{myASN: 64512, peerAddress: 198.18.0.1}`),
			findings: []string{
				`BGPPeer m/both: not converted: spec.passwordSecret: set together with password`,
				`BGPPeer m/external: not converted: spec.dynamicASN: external: berth needs the peer's ASN`,
				`BGPPeer m/no-asn: not converted: spec.peerASN: missing`,
				`BGPPeer m/unnumbered: not converted: spec.interface: BGP unnumbered`,
			},
		},
		{
			name: "peer timers, selectors and features",
			in: mlb(kindBGPPeer, "m", "equal", `{myASN: 64512, peerASN: 64500, peerAddress: 198.18.0.1, holdTime: 9s, keepaliveTime: 9s}`) +
				mlb(kindBGPPeer, "m", "zero", `{myASN: 64512, peerASN: 64500, peerAddress: 198.18.0.2, holdTime: 0s}`) +
				mlb(kindBGPPeer, "m", "nodes", `{myASN: 64512, peerASN: 64500, peerAddress: 198.18.0.3, dualStackAddressFamily: true, holdTime: 3s, `+
					`nodeSelectors: [{matchLabels: {rack: a}}, {matchExpressions: [{key: spine, operator: Exists}]}], newKnob: {x: 1}}`),
			objects: []string{
				"BGPPeer equal: holdTime: 9s keepaliveTime: 3s myASN: 64512 peerASN: 64500 peerAddress: 198.18.0.1",
				"BGPPeer nodes: holdTime: 3s myASN: 64512 nodeSelector: matchExpressions: - key: spine operator: Exists matchLabels: rack: a peerASN: 64500 peerAddress: 198.18.0.3",
				"BGPPeer zero: holdTime: 0s myASN: 64512 peerASN: 64500 peerAddress: 198.18.0.2",
			},
			findings: []string{
				`BGPPeer m/equal: spec.keepaliveTime: 9s is not less than holdTime 9s, which berth requires: set to a third of it, 3s`,
				`BGPPeer m/nodes: spec.newKnob: a field the importer does not know: not converted`,
				`BGPPeer m/nodes: spec.nodeSelectors: MetalLB peers from nodes any of the selectors match`,
				`BGPPeer m/nodes: spec.dualStackAddressFamily: left out`,
				`BGPPeer m/zero: spec.holdTime: 0s turns keepalives off in MetalLB; berth always runs a hold timer`,
			},
		},
		{
			name: "password Secrets",
			in: mlb(kindBGPPeer, "m", "a", `{myASN: 64512, peerASN: 64500, peerAddress: 198.18.0.1, passwordSecret: {name: md5}}`) +
				mlb(kindBGPPeer, "m", "b", `{myASN: 64512, peerASN: 64500, peerAddress: 198.18.0.2, passwordSecret: {name: md5}}`) +
				mlb(kindBGPPeer, "berth-system", "c", `{myASN: 64512, peerASN: 64500, peerAddress: 198.18.0.3, passwordSecret: {name: own}}`) +
				mlb(kindBGPPeer, "m", "d", `{myASN: 64512, peerASN: 64500, peerAddress: 198.18.0.4, passwordSecret: {name: nokey}}`) +
				"---\n{apiVersion: v1, kind: Secret, metadata: {name: nokey, namespace: m}, data: {username: eA==}}\n",
			objects: []string{
				"BGPPeer a: myASN: 64512 password: key: password name: md5 peerASN: 64500 peerAddress: 198.18.0.1",
				"BGPPeer b: myASN: 64512 password: key: password name: md5 peerASN: 64500 peerAddress: 198.18.0.2",
				"BGPPeer c: myASN: 64512 password: key: password name: own peerASN: 64500 peerAddress: 198.18.0.3",
				"BGPPeer d: myASN: 64512 password: key: password name: nokey peerASN: 64500 peerAddress: 198.18.0.4",
			},
			findings: []string{
				`BGPPeer m/a: spec.passwordSecret: berth reads passwords only from Secrets in its namespace: before applying, copy the Secret m/md5 there ` +
					`(without showing the password): kubectl create secret generic md5 -n berth-system --from-literal=password="$(kubectl get secret -n m md5 -o jsonpath='{.data.password}' | base64 -d)"`,
				`Secret m/nokey: data: no key "password", where MetalLB reads the password`,
			},
		},
		{
			name: "communities",
			in: mlb(kindCommunity, "m", "c1", `{communities: [{name: a, value: "1:1"}]}`) +
				mlb(kindCommunity, "m", "c2", `{communities: [{name: a, value: "2:2"}, {name: big, value: "large:1:2:3"}]}`) +
				mlb(kindCommunity, "other-ns", "c3", `{communities: [{name: other, value: "3:3"}]}`) +
				mlb(kindBGPAdv, "m", "ok", `{communities: [a, big, no-export, "1:1"], peers: [nowhere], ipAddressPools: [missing]}`) +
				mlb(kindBGPAdv, "m", "bad", `{communities: [other]}`),
			objects: []string{"BGPAdvertisement ok: communities: - \"1:1\" - no-export ipPools: - missing largeCommunities: - \"1:2:3\" peers: - nowhere"},
			findings: []string{
				`Community m/c2: spec.communities[0]: alias "a" is also defined by Community m/c1, which is used`,
				`BGPAdvertisement m/bad: not converted: spec.communities[0]: "other" is neither an alias of a Community of the input in namespace "m" nor a community`,
				`BGPAdvertisement m/ok: spec.peers[0]: no BGPPeer "nowhere" in the input`,
				`BGPAdvertisement m/ok: spec.ipAddressPools[0]: no IPAddressPool "missing" in the input`,
			},
		},
		{
			name: "interfaces",
			in: mlb(kindL2Adv, "m", "some", `{interfaces: [eth1, "a very long interface name"]}`) +
				mlb(kindL2Adv, "m", "none", `{interfaces: ["bad name"]}`),
			objects: []string{"L2Advertisement some: interfaces: - eth1"},
			findings: []string{
				`L2Advertisement m/none: spec.interfaces[0]: "bad name" is not an interface name berth takes: left out`,
				`L2Advertisement m/none: not converted: spec.interfaces: none is an interface name berth takes`,
				`L2Advertisement m/some: spec.interfaces[1]: "a very long interface name" is not an interface name berth takes: left out`,
			},
		},
		{
			name: "Services",
			in: mlb(kindIPAddressPool, "m", "p", lanPool) +
				svc("x", "both", `{metallb.io/loadBalancerIPs: 198.18.2.200, metallb.universe.tf/loadBalancerIPs: 198.18.2.201}`, lbSpec) +
				svc("x", "berth-too", `{berth.dev/pool: q, metallb.universe.tf/address-pool: p}`, lbSpec) +
				svc("x", "cluster-ip", `{metallb.universe.tf/address-pool: p}`, `{type: ClusterIP, ports: [{port: 80}]}`) +
				svc("x", "class", `{metallb.universe.tf/allow-shared-ip: k, metallb.io/frobnicate: "yes"}`, `{type: LoadBalancer, loadBalancerClass: metallb.io/metallb, ports: [{port: 80}]}`) +
				svc("x", "nowhere", `{metallb.universe.tf/address-pool: nowhere}`, lbSpec),
			objects: []string{
				"IPPool p: addresses: - 198.18.2.192/26",
				"Service berth-too: berth.dev/pool: q",
				"Service both: berth.dev/load-balancer-ips: 198.18.2.200",
				"Service class: berth.dev/sharing-key: k metallb.io/frobnicate: \"yes\"",
				"Service nowhere: berth.dev/pool: nowhere",
			},
			findings: []string{
				`Service x/berth-too: metadata.annotations: already has berth.dev/pool="q", which is kept; metallb.universe.tf/address-pool="p" is dropped`,
				`Service x/both: metadata.annotations: metallb.io/loadBalancerIPs="198.18.2.200" and metallb.universe.tf/loadBalancerIPs="198.18.2.201" differ`,
				`Service x/class: metadata.annotations: metallb.io/frobnicate: a MetalLB annotation the importer does not know`,
				`Service x/class: spec.loadBalancerClass: "metallb.io/metallb": berth serves "berth.dev/lb"`,
				`Service x/cluster-ip: metadata.annotations: MetalLB's annotations on a Service of type "ClusterIP" mean nothing: left alone`,
				`Service x/nowhere: metadata.annotations: address-pool "nowhere": no IPAddressPool of that name in the input`,
			},
		},
		{
			name: "kinds and repeats",
			in: mlb(kindAddressPool, "m", "old", `{protocol: layer2, addresses: [198.18.2.0/24]}`) +
				mlb("ServiceL2Status", "m", "st", `{}`) + mlb("Frobnicator", "m", "f", `{}`) +
				mlb(kindIPAddressPool, "m", "p", lanPool) + mlb(kindIPAddressPool, "m", "p", `{addresses: [198.18.3.0/24]}`) +
				"---\n{apiVersion: apps/v1, kind: Deployment, metadata: {name: controller, namespace: m}}\n",
			objects: []string{"IPPool p: addresses: - 198.18.3.0/24"},
			findings: []string{
				`AddressPool m/old: not converted: AddressPool is the configuration of MetalLB before 0.13`,
				`Frobnicator m/f: not converted: a MetalLB kind the importer does not know`,
				`IPAddressPool m/p: also in test: this later one is converted`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Convert(decodeManifest(t, "test", tc.in), Options{})
			if d := cmp.Diff(tc.objects, summary(r)); d != "" {
				t.Errorf("objects (-want +got):\n%s", d)
			}
			var got []string
			for _, f := range r.Findings {
				got = append(got, strings.TrimPrefix(f.String(), "test: "))
			}
			if len(got) != len(tc.findings) {
				t.Fatalf("findings:\n%s\nwant %d of them:\n%s", strings.Join(got, "\n"), len(tc.findings), strings.Join(tc.findings, "\n"))
			}
			for i, want := range tc.findings {
				if !strings.Contains(got[i], want) {
					t.Errorf("finding %d:\n  %s\nwant it to contain\n  %s", i, got[i], want)
				}
			}
		})
	}
}

// TestImportAnyOf: MetalLB's selector lists as one berth selector, exact or narrower.
func TestImportAnyOf(t *testing.T) {
	sel := func(labels map[string]string, exprs ...metav1.LabelSelectorRequirement) metav1.LabelSelector {
		return metav1.LabelSelector{MatchLabels: labels, MatchExpressions: exprs}
	}
	in := func(k string, vs ...string) metav1.LabelSelectorRequirement {
		return metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpIn, Values: vs}
	}
	for _, tc := range []struct {
		name  string
		sels  []metav1.LabelSelector
		want  *metav1.LabelSelector
		exact bool
	}{
		{"none", nil, nil, true},
		{"one", []metav1.LabelSelector{sel(map[string]string{"a": "b", "c": "d"})}, &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b", "c": "d"}}, true},
		{"one empty among others", []metav1.LabelSelector{sel(map[string]string{"a": "b"}), {}}, &metav1.LabelSelector{}, true},
		{"values of one key", []metav1.LabelSelector{sel(map[string]string{"a": "x"}), sel(nil, in("a", "z", "y"))},
			&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{in("a", "x", "y", "z")}}, true},
		{"two keys: all of them", []metav1.LabelSelector{sel(map[string]string{"a": "x"}), sel(map[string]string{"b": "y"})},
			&metav1.LabelSelector{MatchLabels: map[string]string{"a": "x", "b": "y"}}, false},
		{"one key, two values, another key", []metav1.LabelSelector{sel(map[string]string{"a": "x", "b": "y"}), sel(map[string]string{"a": "z"})},
			&metav1.LabelSelector{MatchLabels: map[string]string{"a": "x", "b": "y"}, MatchExpressions: []metav1.LabelSelectorRequirement{in("a", "z")}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, exact := anyOf(tc.sels)
			if d := cmp.Diff(tc.want, got); d != "" || exact != tc.exact {
				t.Errorf("anyOf() exact %v, want %v (-want +got):\n%s", exact, tc.exact, d)
			}
		})
	}
}

// FuzzImportAddressRange: whatever MetalLB address the importer accepts, berth accepts the
// form it writes (config.ParseRange, as config.Build reads pools), and that form is
// canonical: converting it again changes nothing and notes nothing.
func FuzzImportAddressRange(f *testing.F) {
	for _, o := range read(f, "metallb.yaml") {
		addrs, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "addresses")
		for _, a := range addrs {
			f.Add(a)
		}
	}
	for _, s := range []string{"198.18.2.7", "198.18.2.5/25", " 10.0.0.1 - 10.0.0.9 ", "::ffff:1.2.3.4/128", "2001:db8::1-2001:db8::", "fe80::1%eth0/64", "1.2.3.4-5.6.7.8-9.9.9.9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, _, err := addressRange(s)
		if err != nil {
			return
		}
		if _, err := config.ParseRange(string(r)); err != nil {
			t.Fatalf("addressRange(%q) = %q, which berth refuses: %v", s, r, err)
		}
		again, note, err := addressRange(string(r))
		if err != nil || again != r || note != "" {
			t.Fatalf("addressRange(%q) = %q, not canonical: again %q, note %q, err %v", s, r, again, note, err)
		}
	})
}
