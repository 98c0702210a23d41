package config_test

import (
	"cmp"
	"math/big"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

// epoch is the creation time of objects of age 0; age n is n minutes later.
var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func createdAt(age int) time.Time { return epoch.Add(time.Duration(age) * time.Minute) }

func objMeta(name string, age int) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(createdAt(age))}
}

// with returns v after applying edits to it.
func with[T any](v T, edits ...func(*T)) T {
	for _, e := range edits {
		e(&v)
	}
	return v
}

// edit applies f to *p and returns p.
func edit[T any](p *T, f func(*T)) *T {
	f(p)
	return p
}

func ipPool(name string, age int, addrs ...string) v1alpha1.IPPool {
	p := v1alpha1.IPPool{ObjectMeta: objMeta(name, age)}
	for _, a := range addrs {
		p.Spec.Addresses = append(p.Spec.Addresses, v1alpha1.AddressRange(a))
	}
	return p
}

func bgpPeer(name string, age int, addr string) v1alpha1.BGPPeer {
	return v1alpha1.BGPPeer{
		ObjectMeta: objMeta(name, age),
		Spec:       v1alpha1.BGPPeerSpec{MyASN: 64512, PeerASN: 64513, PeerAddress: addr},
	}
}

func bgpAdv(name string, age int, edits ...func(*v1alpha1.BGPAdvertisementSpec)) v1alpha1.BGPAdvertisement {
	a := v1alpha1.BGPAdvertisement{ObjectMeta: objMeta(name, age)}
	for _, e := range edits {
		e(&a.Spec)
	}
	return a
}

func l2Adv(name string, age int, edits ...func(*v1alpha1.L2AdvertisementSpec)) v1alpha1.L2Advertisement {
	a := v1alpha1.L2Advertisement{ObjectMeta: objMeta(name, age)}
	for _, e := range edits {
		e(&a.Spec)
	}
	return a
}

func names(ns ...string) []v1alpha1.ObjectName {
	out := make([]v1alpha1.ObjectName, len(ns))
	for i, n := range ns {
		out[i] = v1alpha1.ObjectName(n)
	}
	return out
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// matchLabels returns a selector requiring the key=value pairs kv.
func matchLabels(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

func matchIn(key string, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: key, Operator: metav1.LabelSelectorOpIn, Values: values},
	}}
}

// badSelector is a selector metav1.LabelSelectorAsSelector rejects.
func badSelector() *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "rack", Operator: "Near", Values: []string{"a"}},
	}}
}

func mustSelector(t *testing.T, s *metav1.LabelSelector) labels.Selector {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		t.Fatalf("LabelSelectorAsSelector(%v): %v", s, err)
	}
	return sel
}

func mustRange(t *testing.T, s string) config.Range {
	t.Helper()
	r, err := config.ParseRange(s)
	if err != nil {
		t.Fatalf("ParseRange(%q): %v", s, err)
	}
	return r
}

func bigInt(t *testing.T, s string) *big.Int {
	t.Helper()
	n, ok := new(big.Int).SetString(s, 0)
	if !ok {
		t.Fatalf("bad big.Int %q", s)
	}
	return n
}

// wantPool is the Pool Build makes of ipPool(name, age, ranges...) with every default:
// capacity is the plain size of the ranges.
func wantPool(t *testing.T, name string, age int, ranges ...string) *config.Pool {
	t.Helper()
	p := &config.Pool{
		Name:              name,
		Created:           createdAt(age),
		AutoAssign:        true,
		IPMode:            v1alpha1.IPModeVIP,
		ServiceSelector:   labels.Everything(),
		NamespaceSelector: labels.Everything(),
		Capacity4:         new(big.Int),
		Capacity6:         new(big.Int),
	}
	for _, s := range ranges {
		r := mustRange(t, s)
		p.Ranges = append(p.Ranges, r)
		c := p.Capacity(r.Family())
		c.Add(c, r.Size())
	}
	return p
}

// wantPeer is the Peer Build makes of bgpPeer(name, age, addr) with every default.
func wantPeer(name string, age int, addr string) *config.Peer {
	return &config.Peer{
		Name:          name,
		Created:       createdAt(age),
		MyASN:         64512,
		PeerASN:       64513,
		Address:       netip.MustParseAddr(addr),
		Port:          179,
		HoldTime:      90 * time.Second,
		KeepaliveTime: 30 * time.Second,
		ConnectTime:   10 * time.Second,
		RestartTime:   120 * time.Second,
		NodeSelector:  labels.Everything(),
	}
}

func everything() config.Target {
	return config.Target{ServiceSelector: labels.Everything(), NodeSelector: labels.Everything()}
}

// wantBGPAdv is the BGPAdvertisement Build makes of bgpAdv(name, age) covering pools,
// with every other default.
func wantBGPAdv(name string, age int, pools ...string) *config.BGPAdvertisement {
	tg := everything()
	tg.Pools = pools
	return &config.BGPAdvertisement{
		Name:                name,
		Created:             createdAt(age),
		Target:              tg,
		AllPeers:            true,
		AggregationLength:   32,
		AggregationLengthV6: 128,
	}
}

func rejected(kind config.Kind, name string, reason config.Reason, msg string) config.Problem {
	return config.Problem{
		Object:    config.ObjectRef{Kind: kind, Name: name},
		Condition: v1alpha1.ConditionAccepted,
		Reason:    reason,
		Message:   msg,
	}
}

func unresolved(kind config.Kind, name string, reason config.Reason, msg string) config.Problem {
	return config.Problem{
		Object:    config.ObjectRef{Kind: kind, Name: name},
		Condition: v1alpha1.ConditionResolvedRefs,
		Reason:    reason,
		Message:   msg,
	}
}

// cmpOpts compares Build's output: addresses by value, big numbers numerically,
// selectors by their canonical string, empty and nil slices and maps alike.
var cmpOpts = gocmp.Options{
	gocmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	gocmp.Comparer(func(a, b *big.Int) bool {
		if a == nil || b == nil {
			return a == b
		}
		return a.Cmp(b) == 0
	}),
	gocmp.Transformer("Selector", func(s labels.Selector) string {
		if s == nil {
			return "<nil>"
		}
		return "{" + s.String() + "}"
	}),
	equateEmpty,
}

// equateEmpty is cmpopts.EquateEmpty minus labels.Selector, which is a slice underneath
// and would be ambiguous with the Selector transformer.
var equateEmpty = gocmp.FilterPath(func(p gocmp.Path) bool {
	ty := p.Last().Type()
	if ty.Kind() != reflect.Slice && ty.Kind() != reflect.Map || ty.Implements(selectorType) {
		return false
	}
	vx, vy := p.Last().Values()
	return vx.IsValid() && vy.IsValid() && vx.Len() == 0 && vy.Len() == 0
}, gocmp.Comparer(func(_, _ any) bool { return true }))

var selectorType = reflect.TypeFor[labels.Selector]()

// snapOpts compares the exported part of Snapshots; snapshot lookups are checked by
// checkLookups.
var snapOpts = gocmp.Options{cmpOpts, cmpopts.IgnoreUnexported(config.Snapshot{})}

// checkLookups checks that Snapshot.Pool and Snapshot.Peer find exactly the accepted
// objects, and nothing for the names in absent.
func checkLookups(t *testing.T, s *config.Snapshot, absent ...string) {
	t.Helper()
	for _, p := range s.Pools {
		if got := s.Pool(p.Name); got != p {
			t.Errorf("Pool(%q) = %p, want the accepted pool %p", p.Name, got, p)
		}
	}
	for _, p := range s.Peers {
		if got := s.Peer(p.Name); got != p {
			t.Errorf("Peer(%q) = %p, want the accepted peer %p", p.Name, got, p)
		}
	}
	for _, n := range absent {
		if got := s.Pool(n); got != nil {
			t.Errorf("Pool(%q) = %+v, want nil", n, got)
		}
		if got := s.Peer(n); got != nil {
			t.Errorf("Peer(%q) = %+v, want nil", n, got)
		}
	}
}

// problemKey is a Problem without its message, for tables that check messages by substring.
type problemKey struct {
	Object    config.ObjectRef
	Condition string
	Reason    config.Reason
}

func keys(ps []config.Problem) []problemKey {
	var out []problemKey
	for _, p := range ps {
		out = append(out, problemKey{p.Object, p.Condition, p.Reason})
	}
	return out
}

// checkRejected checks that problems is exactly one Accepted problem of obj with reason,
// whose message contains msg.
func checkRejected(t *testing.T, problems []config.Problem, obj config.ObjectRef, reason config.Reason, msg string) {
	t.Helper()
	want := []problemKey{{obj, v1alpha1.ConditionAccepted, reason}}
	if d := gocmp.Diff(want, keys(problems)); d != "" {
		t.Errorf("Build() problems (-want +got):\n%s", d)
		return
	}
	if !strings.Contains(problems[0].Message, msg) {
		t.Errorf("Build() problem message = %q, want it to contain %q", problems[0].Message, msg)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// sortProblems sorts ps the way Build documents: by kind, name, then condition.
func sortProblems(ps []config.Problem) {
	slices.SortStableFunc(ps, func(a, b config.Problem) int {
		return cmp.Or(
			strings.Compare(string(a.Object.Kind), string(b.Object.Kind)),
			strings.Compare(a.Object.Name, b.Object.Name),
			strings.Compare(a.Condition, b.Condition),
		)
	})
}
