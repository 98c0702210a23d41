package metallb

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/berthlb/berth/config/v1alpha1"
)

// DefaultNamespace is berth's namespace as deploy/ installs it.
const DefaultNamespace = "berth-system"

// Object is one object read from a manifest.
type Object struct {
	// Source says where it was read, for messages: a file name.
	Source string
	Object map[string]any
}

// Options tune the conversion.
type Options struct {
	// Namespace is berth's namespace, the only one berth reads BGP password Secrets from;
	// DefaultNamespace when empty.
	Namespace string
}

// Ref names an object of the input.
type Ref struct {
	Source, Kind, Namespace, Name string
}

func (r Ref) String() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

// Finding is something of the input that the conversion could not carry over as it was.
type Finding struct {
	Object Ref
	// Field is the path of the field in Object ("spec.bfdProfile"); empty for all of it.
	Field   string
	Message string
	// NotConverted is set when Object gave nothing at all.
	NotConverted bool
}

func (f Finding) String() string {
	s := f.Object.Source + ": " + f.Object.String() + ": "
	if f.NotConverted {
		s += "not converted: "
	}
	if f.Field != "" {
		s += f.Field + ": "
	}
	return s + f.Message
}

// Output is one object to apply, with where it comes from.
type Output struct {
	// Object is the object as it is written: a berth object, a Secret or a Service.
	Object map[string]any
	// From are the input objects it comes from, the one it converts first.
	From []Ref
	// Notes explain conversions that keep the meaning but not the form.
	Notes []string
}

// Result is what Convert made of its input.
type Result struct {
	// Objects are in the order they are written: Secrets, IPPools, BGPPeers,
	// BGPAdvertisements, L2Advertisements, Services, each by name.
	Objects  []Output
	Findings []Finding
	// Read counts the MetalLB objects and the Services with MetalLB annotations of the
	// input; Ignored the other objects (other kinds, MetalLB's status kinds, Secrets no
	// peer uses, Services with nothing to change).
	Read, Ignored int
}

// NotConverted counts the input objects that gave nothing.
func (r *Result) NotConverted() int {
	n := 0
	for _, f := range r.Findings {
		if f.NotConverted {
			n++
		}
	}
	return n
}

// input is an object of the input with its reference.
type input struct {
	ref Ref
	obj map[string]any
}

// key is a namespaced name.
type key struct{ ns, name string }

type converter struct {
	opts Options
	res  Result
	// MetalLB's objects by kind, sorted by namespace and name; Services and Secrets too.
	in map[string][]input
	// secrets are the input's Secrets, for BGPPeers' passwordSecret.
	secrets map[key]input
	// names maps the input's objects of each MetalLB kind to their berth names.
	names map[string]map[key]string
	// taken holds the names in use per output kind (berth kinds, and Secret).
	taken map[string]map[string]bool
	// decoded MetalLB objects, for references between them.
	pools   []*poolIn
	peers   []*peerIn
	aliases map[key]aliasIn // community aliases by namespace and alias name
	// copied maps the password Secrets of MetalLB's namespace to their names in berth's.
	copied map[key]string
}

// Convert turns MetalLB's objects and Services among objs into berth's objects. Objects of
// other kinds are counted and left alone. It never fails as a whole: an object it cannot
// convert is reported in Findings with NotConverted set.
func Convert(objs []Object, opts Options) *Result {
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	c := &converter{opts: opts, in: map[string][]input{}, secrets: map[key]input{},
		names: map[string]map[key]string{}, taken: map[string]map[string]bool{}, aliases: map[key]aliasIn{}, copied: map[key]string{}}
	c.read(objs)
	c.name()
	c.convertPools()
	c.convertCommunities()
	c.convertBFDProfiles()
	c.convertPeers()
	c.convertBGPAdvertisements()
	c.convertL2Advertisements()
	c.convertServices()
	c.res.Ignored += len(c.secrets) // those no peer took
	slices.SortStableFunc(c.res.Objects, func(a, b Output) int {
		return cmp.Or(cmp.Compare(kindOrder(a.Object), kindOrder(b.Object)),
			cmp.Compare(nestedString(a.Object, "metadata", "namespace"), nestedString(b.Object, "metadata", "namespace")),
			cmp.Compare(nestedString(a.Object, "metadata", "name"), nestedString(b.Object, "metadata", "name")))
	})
	return &c.res
}

// outputKinds orders the output by kind.
var outputKinds = []string{"Secret", "IPPool", "BGPPeer", "BGPAdvertisement", "L2Advertisement", "Service"}

func kindOrder(o map[string]any) int {
	k, _ := o["kind"].(string)
	if i := slices.Index(outputKinds, k); i >= 0 {
		return i
	}
	return len(outputKinds)
}

func nestedString(o map[string]any, fields ...string) string {
	s, _, _ := unstructured.NestedString(o, fields...)
	return s
}

// read sorts the input by kind and namespaced name. Of two objects with one kind and name
// the later one counts, as it would in the cluster.
func (c *converter) read(objs []Object) {
	seen := map[Ref]int{}
	for _, o := range objs {
		u := unstructured.Unstructured{Object: o.Object}
		gvk := u.GroupVersionKind()
		ref := Ref{Source: o.Source, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
		var kind string
		switch {
		case gvk.Group == group && slices.Contains([]string{kindIPAddressPool, kindL2Adv, kindBGPAdv, kindBGPPeer, kindCommunity, kindBFDProfile}, gvk.Kind):
			kind = gvk.Kind
		case gvk.Group == group && gvk.Kind == kindAddressPool:
			c.res.Read++
			c.fail(ref, "", "AddressPool is the configuration of MetalLB before 0.13: convert it to IPAddressPool and advertisements with MetalLB first (its webhook did so on upgrade), then import those")
			continue
		case gvk.Group == group && slices.Contains(statusKinds, gvk.Kind):
			c.res.Ignored++ // written by MetalLB
			continue
		case gvk.Group == group:
			c.res.Read++
			c.fail(ref, "", "a MetalLB kind the importer does not know")
			continue
		case gvk.Group == "" && gvk.Kind == kindService:
			kind = kindService
		case gvk.Group == "" && gvk.Kind == kindSecret:
			k := key{ref.Namespace, ref.Name}
			if _, dup := c.secrets[k]; dup {
				c.res.Ignored++
			}
			c.secrets[k] = input{ref, o.Object}
			continue
		default:
			c.res.Ignored++
			continue
		}
		id := Ref{Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name}
		if i, dup := seen[id]; dup {
			prev := c.in[kind][i]
			c.warn(ref, "", "also in %s: this later one is converted, as it would replace the other in the cluster", prev.ref.Source)
			c.in[kind][i] = input{ref, o.Object}
			continue
		}
		seen[id] = len(c.in[kind])
		c.in[kind] = append(c.in[kind], input{ref, o.Object})
	}
	for _, ins := range c.in {
		slices.SortFunc(ins, func(a, b input) int {
			return cmp.Or(cmp.Compare(a.ref.Namespace, b.ref.Namespace), cmp.Compare(a.ref.Name, b.ref.Name))
		})
	}
}

// berthKinds maps the MetalLB kinds that become berth objects to those.
var berthKinds = map[string]string{
	kindIPAddressPool: "IPPool",
	kindBGPPeer:       "BGPPeer",
	kindBGPAdv:        "BGPAdvertisement",
	kindL2Adv:         "L2Advertisement",
}

// name gives every MetalLB object that becomes a berth object its berth name: its own, or
// "<namespace>-<name>" when objects of its kind share the name across namespaces.
func (c *converter) name() {
	for _, kind := range slices.Sorted(maps.Keys(berthKinds)) {
		byName := map[string][]input{}
		for _, in := range c.in[kind] {
			byName[in.ref.Name] = append(byName[in.ref.Name], in)
		}
		c.names[kind] = map[key]string{}
		// Unique names first, so that a renamed object never takes another's own name.
		for _, in := range c.in[kind] {
			if len(byName[in.ref.Name]) == 1 {
				c.names[kind][key{in.ref.Namespace, in.ref.Name}] = c.claim(berthKinds[kind], in.ref.Name)
			}
		}
		for _, in := range c.in[kind] {
			group := byName[in.ref.Name]
			if len(group) == 1 {
				continue
			}
			var nss []string
			for _, g := range group {
				nss = append(nss, g.ref.Namespace)
			}
			name := c.claim(berthKinds[kind], in.ref.Namespace+"-"+in.ref.Name)
			c.names[kind][key{in.ref.Namespace, in.ref.Name}] = name
			c.warn(in.ref, "metadata.name", "renamed to %q: berth's %s objects are cluster-scoped, and %q is in namespaces %s",
				name, berthKinds[kind], in.ref.Name, strings.Join(nss, ", "))
		}
	}
}

// claim reserves a name of an output kind: name itself, or with the first free suffix "-2", "-3"...
func (c *converter) claim(kind, name string) string {
	if c.taken[kind] == nil {
		c.taken[kind] = map[string]bool{}
	}
	n := name
	for i := 2; c.taken[kind][n]; i++ {
		n = fmt.Sprintf("%s-%d", name, i)
	}
	c.taken[kind][n] = true
	return n
}

// lookup returns the berth name of the MetalLB object of kind ns/name, or name itself and
// false when the input does not hold it.
func (c *converter) lookup(kind, ns, name string) (string, bool) {
	n, ok := c.names[kind][key{ns, name}]
	if !ok {
		return name, false
	}
	return n, true
}

// namespaces lists the namespaces of the input's objects of a MetalLB kind.
func (c *converter) namespaces(kind string) []string {
	var nss []string
	for _, in := range c.in[kind] {
		if !slices.Contains(nss, in.ref.Namespace) {
			nss = append(nss, in.ref.Namespace)
		}
	}
	return nss
}

func (c *converter) warn(ref Ref, field, format string, args ...any) {
	c.res.Findings = append(c.res.Findings, Finding{Object: ref, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (c *converter) fail(ref Ref, field, format string, args ...any) {
	c.res.Findings = append(c.res.Findings, Finding{Object: ref, Field: field, Message: fmt.Sprintf(format, args...), NotConverted: true})
}

// decodeInput decodes in into out and reports the fields it does not know; false when it
// cannot be decoded at all.
func (c *converter) decodeInput(in input, out any) bool {
	unknown, err := decode(in.obj, out)
	if err != nil {
		c.fail(in.ref, "", "cannot read it: %v", err)
		return false
	}
	for _, f := range unknown {
		c.warn(in.ref, f, "a field the importer does not know: not converted; check whether berth has an equivalent (docs/migrating-from-metallb.md)")
	}
	return true
}

// emit adds a berth object (or a Secret) to the output.
func (c *converter) emit(obj runtime.Object, from []Ref, notes []string) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil { // berth's and core types always convert
		c.fail(from[0], "", "internal error: %T does not convert: %v", obj, err)
		return
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	c.res.Objects = append(c.res.Objects, Output{Object: m, From: from, Notes: notes})
}

// objectNames converts names to the type berth's references take.
func objectNames(names []string) []v1alpha1.ObjectName {
	var out []v1alpha1.ObjectName
	for _, n := range names {
		out = append(out, v1alpha1.ObjectName(n))
	}
	return out
}

// sortedSet sorts names and drops repeats: berth's lists of names are sets.
func sortedSet(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}
