package controller

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/controller/allocator"
)

// stacks are the ipFamilies and ipFamilyPolicy combinations FuzzServiceAnnotations picks
// from; the first six are the ones the apiserver admits.
var stacks = []struct {
	families []corev1.IPFamily
	policy   corev1.IPFamilyPolicy
	admitted bool
}{
	{[]corev1.IPFamily{corev1.IPv4Protocol}, corev1.IPFamilyPolicySingleStack, true},
	{[]corev1.IPFamily{corev1.IPv6Protocol}, corev1.IPFamilyPolicySingleStack, true},
	{[]corev1.IPFamily{corev1.IPv4Protocol}, corev1.IPFamilyPolicyPreferDualStack, true},
	{[]corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}, corev1.IPFamilyPolicyPreferDualStack, true},
	{[]corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}, corev1.IPFamilyPolicyRequireDualStack, true},
	{[]corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}, corev1.IPFamilyPolicyRequireDualStack, true},
	{nil, "", false}, // as read from an old object: IPv4
	{[]corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}, "", false},
	{[]corev1.IPFamily{"IPv5"}, corev1.IPFamilyPolicySingleStack, false},
}

// FuzzServiceAnnotations fuzzes berth's three annotations, spec.loadBalancerIP and the
// Service's IP families, and checks:
//   - requestFor and CheckService agree, to the message;
//   - accepted: every requested address is one written in loadBalancerIP or the
//     annotation, each of them is there, plain (no zone, not IPv4-mapped), of a family the
//     Service allocates, at most one per family; pool and sharing key are the annotations;
//   - refused: the message starts with the field or annotation it is about and quotes the
//     part it could not read;
//   - for the families and policies the apiserver admits, requestFor refuses exactly what
//     the allocator would refuse as an InvalidRequest: what berthctl check passes, the
//     controller does not turn down for the annotations.
func FuzzServiceAnnotations(f *testing.F) {
	f.Add("198.18.2.1", "2001:db8::1", true, "lan", "k", byte(4))
	snap, _ := config.Build(config.Resources{})
	f.Fuzz(func(t *testing.T, lbIP, ips string, hasIPs bool, pool, key string, stack byte) {
		st := stacks[int(stack)%len(stacks)]
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", Annotations: map[string]string{
				AnnotationPool: pool, AnnotationSharingKey: key,
			}},
			Spec: corev1.ServiceSpec{
				Type:           corev1.ServiceTypeLoadBalancer,
				LoadBalancerIP: lbIP,
				IPFamilies:     st.families,
			},
		}
		if st.policy != "" {
			svc.Spec.IPFamilyPolicy = &st.policy
		}
		if hasIPs {
			svc.Annotations[AnnotationLoadBalancerIPs] = ips
		}
		req, err := requestFor(svc, nil)
		if cerr := CheckService(svc); errString(cerr) != errString(err) {
			t.Fatalf("CheckService() = %v, requestFor() = %v", cerr, err)
		}

		// What was written, address by address.
		var written []string
		if lbIP != "" {
			written = append(written, lbIP)
		}
		if hasIPs {
			written = append(written, strings.Split(ips, ",")...)
		}
		parsed := map[netip.Addr]bool{}
		var unreadable []string
		for _, s := range written {
			a, perr := netip.ParseAddr(strings.TrimSpace(s))
			if perr != nil || a.Zone() != "" || a.Is4In6() {
				unreadable = append(unreadable, s)
				continue
			}
			parsed[a] = true
		}

		if err != nil {
			msg := err.Error()
			var from string
			switch {
			case lbIP != "" && strings.HasPrefix(msg, "spec.loadBalancerIP: "):
				from = "spec.loadBalancerIP: "
			case hasIPs && strings.HasPrefix(msg, "annotation "+AnnotationLoadBalancerIPs+": "):
				from = "annotation " + AnnotationLoadBalancerIPs + ": "
			default:
				t.Fatalf("requestFor() = %q, which names neither spec.loadBalancerIP nor the annotation", msg)
			}
			unread := slices.ContainsFunc(unreadable, func(s string) bool {
				return msg == from+strconv.Quote(s)+" is not an IPv4 or IPv6 address"
			})
			family := strings.Contains(msg, "; at most one address per family") ||
				strings.Contains(msg, ", but the Service's IP families are ")
			if !unread && !family {
				t.Fatalf("requestFor() = %q, neither an unreadable %q nor a family problem", msg, unreadable)
			}
		} else {
			if len(unreadable) > 0 {
				t.Fatalf("requestFor() accepted unreadable %q", unreadable)
			}
			if req.Pool != pool || req.SharingKey != key {
				t.Fatalf("requestFor() pool %q, sharing key %q; annotations %q, %q", req.Pool, req.SharingKey, pool, key)
			}
			allowed := req.Families
			if req.Policy == "" || req.Policy == allocator.SingleStack {
				allowed = allowed[:1]
			}
			perFamily := map[config.Family]int{}
			for _, a := range req.RequestedIPs {
				if !parsed[a] {
					t.Fatalf("requestFor() requests %s, which is not written in the Service", a)
				}
				if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
					t.Fatalf("requestFor() requests %v", a)
				}
				if !slices.Contains(allowed, config.FamilyOf(a)) {
					t.Fatalf("requestFor() requests %s, not of the Service's families %v", a, allowed)
				}
				if perFamily[config.FamilyOf(a)]++; perFamily[config.FamilyOf(a)] > 1 {
					t.Fatalf("requestFor() requests %v: two of one family", req.RequestedIPs)
				}
			}
			if len(req.RequestedIPs) != len(parsed) {
				t.Fatalf("requestFor() requests %v of %v written", req.RequestedIPs, written)
			}
		}

		// The allocator judges the same addresses, taken without requestFor's checks.
		if !st.admitted || len(unreadable) > 0 {
			return
		}
		plain := svc.DeepCopy()
		plain.Spec.LoadBalancerIP = ""
		delete(plain.Annotations, AnnotationLoadBalancerIPs)
		areq, perr := requestFor(plain, nil)
		if perr != nil {
			t.Fatalf("requestFor() without requested IPs: %v", perr)
		}
		for _, s := range written {
			if a := netip.MustParseAddr(strings.TrimSpace(s)); !slices.Contains(areq.RequestedIPs, a) {
				areq.RequestedIPs = append(areq.RequestedIPs, a)
			}
		}
		_, aerr := allocator.New(snap).Allocate(areq)
		if invalid := errors.Is(aerr, allocator.InvalidRequest); invalid != (err != nil) {
			t.Fatalf("requestFor() = %v, but the allocator answers %v", err, aerr)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
