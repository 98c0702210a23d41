package metallb

import (
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// The Service annotations. MetalLB reads them under two prefixes, the newer first; berth
// reads its own (controller/request.go). Vars, not constants: these are not berth's keys.
var (
	metallbPrefixes = []string{"metallb.io/", "metallb.universe.tf/"}
	serviceKeys     = []struct{ metallb, berth string }{
		{"address-pool", "berth.dev/pool"},
		{"loadBalancerIPs", "berth.dev/load-balancer-ips"},
		{"allow-shared-ip", "berth.dev/sharing-key"},
	}
	// allocatedFrom is written by MetalLB to say which pool the addresses came from.
	allocatedFrom = "ip-allocated-from-pool"
	// berthClass is berth's own loadBalancerClass.
	berthClass = "berth.dev/lb"
	// lastApplied is kubectl's copy of what was applied, which still names MetalLB's keys.
	lastApplied = "kubectl.kubernetes.io/last-applied-configuration"
)

func isMetalLBKey(k string) bool {
	return slices.ContainsFunc(metallbPrefixes, func(p string) bool { return strings.HasPrefix(k, p) })
}

func (c *converter) convertServices() {
	for _, in := range c.in[kindService] {
		c.service(in)
	}
}

// service writes a Service with MetalLB's annotations replaced by berth's, and without
// what the cluster fills in, ready for kubectl apply.
func (c *converter) service(in input) {
	u := unstructured.Unstructured{Object: runtime.DeepCopyJSON(in.obj)}
	anns := u.GetAnnotations()
	if !slices.ContainsFunc(slices.Collect(maps.Keys(anns)), isMetalLBKey) {
		c.res.Ignored++ // nothing to change
		return
	}
	c.res.Read++
	ref := in.ref
	if typ, _, _ := unstructured.NestedString(u.Object, "spec", "type"); typ != "LoadBalancer" {
		c.warn(ref, "metadata.annotations", "MetalLB's annotations on a Service of type %q mean nothing: left alone", typ)
		return
	}
	for _, k := range serviceKeys {
		var val, from string
		for _, p := range metallbPrefixes {
			v, ok := anns[p+k.metallb]
			if !ok {
				continue
			}
			delete(anns, p+k.metallb)
			if from == "" {
				val, from = v, p+k.metallb
			} else if v != val {
				c.warn(ref, "metadata.annotations", "%s=%q and %s=%q differ: the first is converted", from, val, p+k.metallb, v)
			}
		}
		if from == "" {
			continue
		}
		switch k.metallb {
		case "address-pool":
			name, ok := c.servicePool(ref, val)
			if !ok {
				return
			}
			val = name
		case "loadBalancerIPs":
			ips := strings.Split(val, ",")
			for i := range ips {
				ips[i] = strings.TrimSpace(ips[i])
			}
			val = strings.Join(ips, ",")
		}
		if have, ok := anns[k.berth]; ok && have != val {
			c.warn(ref, "metadata.annotations", "already has %s=%q, which is kept; %s=%q is dropped", k.berth, have, from, val)
			continue
		}
		anns[k.berth] = val
	}
	for _, p := range metallbPrefixes {
		delete(anns, p+allocatedFrom) // MetalLB's record, not configuration
	}
	for _, k := range slices.Sorted(maps.Keys(anns)) {
		if isMetalLBKey(k) {
			c.warn(ref, "metadata.annotations", "%s: a MetalLB annotation the importer does not know: kept, and berth ignores it", k)
		}
	}
	delete(anns, lastApplied)
	u.SetAnnotations(anns)
	if class, _, _ := unstructured.NestedString(u.Object, "spec", "loadBalancerClass"); class != "" && class != berthClass {
		c.warn(ref, "spec.loadBalancerClass", "%q: berth serves %q, and Services without a class unless run with --handle-default-class=false; "+
			"a Service's class cannot change, so recreate the Service with berth's class (or run berth with --load-balancer-class=%s)", class, berthClass, class)
	}
	// What the cluster fills in, so that the manifest applies cleanly.
	for _, f := range []string{"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink", "finalizers"} {
		unstructured.RemoveNestedField(u.Object, "metadata", f)
	}
	delete(u.Object, "status")
	c.res.Objects = append(c.res.Objects, Output{Object: u.Object, From: []Ref{ref}})
}

// servicePool returns the berth name of the pool a Service names. The Service does not
// say MetalLB's namespace: a name the input holds in several namespaces is ambiguous.
func (c *converter) servicePool(ref Ref, name string) (string, bool) {
	var found []string
	var nss []string
	for _, k := range slices.SortedFunc(maps.Keys(c.names[kindIPAddressPool]), func(a, b key) int { return strings.Compare(a.ns, b.ns) }) {
		if k.name == name {
			found = append(found, c.names[kindIPAddressPool][k])
			nss = append(nss, k.ns)
		}
	}
	switch len(found) {
	case 0:
		c.warn(ref, "metadata.annotations", "address-pool %q: no IPAddressPool of that name in the input; berth's Service waits until an IPPool of that name exists", name)
		return name, true
	case 1:
		return found[0], true
	}
	c.fail(ref, "metadata.annotations", "address-pool %q: the input has IPAddressPools of that name in namespaces %s, renamed %s: name one in berth.dev/pool yourself",
		name, strings.Join(nss, ", "), strings.Join(found, ", "))
	return "", false
}
