package allocator

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

// epoch is the creation time of the first object; later ones are minutes after it.
var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func ipPool(name string, addrs ...string) v1alpha1.IPPool {
	p := v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(epoch)}}
	for _, a := range addrs {
		p.Spec.Addresses = append(p.Spec.Addresses, v1alpha1.AddressRange(a))
	}
	return p
}

type poolEdit = func(*v1alpha1.IPPoolSpec)

func with(p v1alpha1.IPPool, edits ...poolEdit) v1alpha1.IPPool {
	for _, e := range edits {
		e(&p.Spec)
	}
	return p
}

func priority(n int32) poolEdit { return func(s *v1alpha1.IPPoolSpec) { s.Priority = n } }

func manual(s *v1alpha1.IPPoolSpec) { s.AutoAssign = ptr.To(false) }

func avoidBuggy(s *v1alpha1.IPPoolSpec) { s.AvoidBuggyIPs = true }

func proxy(s *v1alpha1.IPPoolSpec) { s.IPMode = v1alpha1.IPModeProxy }

func forServices(k, v string) poolEdit {
	return func(s *v1alpha1.IPPoolSpec) {
		s.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{k: v}}
	}
}

func forNamespaces(k, v string) poolEdit {
	return func(s *v1alpha1.IPPoolSpec) {
		s.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{k: v}}
	}
}

func snapshot(t testing.TB, pools ...v1alpha1.IPPool) *config.Snapshot {
	t.Helper()
	snap, problems := config.Build(config.Resources{Pools: pools})
	if len(problems) > 0 {
		t.Fatalf("config.Build: %v", problems)
	}
	return snap
}

// newChecked returns an allocator for pools whose invariants are checked when the test ends.
func newChecked(t *testing.T, pools ...v1alpha1.IPPool) *Allocator {
	t.Helper()
	a := New(snapshot(t, pools...))
	t.Cleanup(func() {
		if err := checkInvariants(a); err != nil {
			t.Errorf("invariants: %v", err)
		}
	})
	return a
}

type reqEdit = func(*Request)

// svc is a single-stack IPv4 Service in namespace "default" with port 80/TCP.
func svc(name string, edits ...reqEdit) Request {
	r := Request{
		Key:      Key{Namespace: "default", Name: name},
		Created:  epoch,
		Families: []config.Family{config.IPv4},
		Ports:    []Port{{Protocol: "TCP", Port: 80}},
	}
	for _, e := range edits {
		e(&r)
	}
	return r
}

func stack(p FamilyPolicy, fs ...config.Family) reqEdit {
	return func(r *Request) { r.Policy, r.Families = p, fs }
}

var (
	v4   = config.IPv4
	v6   = config.IPv6
	only = func(f config.Family) reqEdit { return stack(SingleStack, f) }
)

func requesting(ips ...string) reqEdit {
	return func(r *Request) {
		for _, s := range ips {
			r.RequestedIPs = append(r.RequestedIPs, netip.MustParseAddr(s))
		}
	}
}

func inPool(name string) reqEdit { return func(r *Request) { r.Pool = name } }

func labelled(k, v string) reqEdit {
	return func(r *Request) { r.ServiceLabels = labels.Set{k: v} }
}

func inNamespace(ns string, set labels.Set) reqEdit {
	return func(r *Request) { r.Key.Namespace, r.NamespaceLabels = ns, set }
}

func sharingKey(k string) reqEdit { return func(r *Request) { r.SharingKey = k } }

func ports(ps ...Port) reqEdit { return func(r *Request) { r.Ports = ps } }

func local(selector string) reqEdit {
	return func(r *Request) { r.LocalTraffic, r.Selector = true, selector }
}

func created(minutes int) reqEdit {
	return func(r *Request) { r.Created = epoch.Add(time.Duration(minutes) * time.Minute) }
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// outcome is an Allocate or Claim result in a form that diffs well.
type outcome struct {
	Pool    string
	IPs     []string
	IPMode  v1alpha1.IPMode
	Reasons []Reason
	Holder  Key
}

func result(asg Assignment, err error) outcome {
	o := outcome{Pool: asg.Pool, IPMode: asg.IPMode}
	for _, x := range asg.IPs {
		o.IPs = append(o.IPs, x.String())
	}
	for _, e := range flatten(err) {
		var ae *Error
		if !errors.As(e, &ae) {
			o.Reasons = append(o.Reasons, Reason("untyped: "+e.Error()))
			continue
		}
		o.Reasons = append(o.Reasons, ae.Reason)
		if ae.Reason == IPInUse {
			o.Holder = ae.Holder
		}
	}
	return o
}

func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

func got(pool string, ips ...string) outcome {
	return outcome{Pool: pool, IPs: ips, IPMode: v1alpha1.IPModeVIP}
}

func refused(r Reason) outcome { return outcome{Reasons: []Reason{r}} }

func heldBy(name string) outcome {
	return outcome{Reasons: []Reason{IPInUse}, Holder: Key{Namespace: "default", Name: name}}
}

func mustAllocate(t *testing.T, a *Allocator, reqs ...Request) {
	t.Helper()
	for _, r := range reqs {
		if _, err := a.Allocate(r); err != nil {
			t.Fatalf("Allocate(%s): %v", r.Key, err)
		}
	}
}

// usage returns the addresses in use per pool, "pool/4" and "pool/6", leaving out zeros.
func usage(a *Allocator, pools ...string) map[string]int {
	out := map[string]int{}
	for _, p := range pools {
		u, ok := a.Usage(p)
		if !ok {
			continue
		}
		if u.IPv4.InUse > 0 {
			out[p+"/4"] = u.IPv4.InUse
		}
		if u.IPv6.InUse > 0 {
			out[p+"/6"] = u.IPv6.InUse
		}
	}
	return out
}
