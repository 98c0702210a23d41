//go:build integration

package controller_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/controller"
)

// TestAnnounced plays the speakers by writing NodeAnnouncements by hand and follows the
// berth.dev/Announced condition and its Events on the Services they name.
func TestAnnounced(t *testing.T) {
	s := newSite(t)
	s.pool(t, "lan", nil, "198.18.2.192/26")
	s.pool(t, "routed", func(p *v1alpha1.IPPoolSpec) { p.AutoAssign = ptr.To(false) }, "203.0.113.0/24", "2001:db8:113::/64")
	reg := prometheus.NewRegistry()
	s.runController(t, controller.Options{HandleDefaultClass: true, Registerer: reg})
	ns := s.namespace(t, "announced")
	s.service(t, ns, "web")
	ip := ingress(s.waitIngress(t, ns, "web", 10*time.Second, hasIPs(1)))[0]
	s.service(t, ns, "other", withClass(berthClass), withAnnotation(controller.AnnotationPool, "routed"),
		dualStack(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv6Protocol, corev1.IPv4Protocol))
	otherIPs := ingress(s.waitIngress(t, ns, "other", 10*time.Second, hasIPs(2)))
	web := func(l2 ...string) v1alpha1.AnnouncedService {
		return v1alpha1.AnnouncedService{Namespace: ns, Name: "web", L2: l2, Interfaces: []string{"eth1"}}
	}
	other := func(peers ...string) v1alpha1.AnnouncedService {
		return v1alpha1.AnnouncedService{Namespace: ns, Name: "other", BGP: []string{otherIPs[0].String(), otherIPs[1].String()}, Peers: peers}
	}
	// otherIPs are IPv6 then IPv4, as spec.ipFamilies asks; the message sorts them.
	otherMsg := func(peers string) string {
		return fmt.Sprintf("BGP %s, %s from node-a, node-c to peers %s", otherIPs[1], otherIPs[0], peers)
	}

	c := s.waitAnnounced(t, ns, "web", metav1.ConditionFalse, "")
	if c.Reason != controller.ReasonNotAnnounced || !containsAll(c.Message, ip.String(), "L2Advertisement", "BGPAdvertisement") {
		t.Errorf("unannounced condition %s: %q, want reason NotAnnounced and a message naming the address and what to check", c.Reason, c.Message)
	}

	s.announce(t, "node-a", 0, web(ip.String()))
	s.waitAnnounced(t, ns, "web", metav1.ConditionTrue, fmt.Sprintf("L2 %s from node-a (eth1)", ip))
	if msg := s.waitEvent(t, ns, "web", controller.ReasonAnnounced); msg != fmt.Sprintf("L2 %s from node-a (eth1)", ip) {
		t.Errorf("Announced event %q does not name the node and protocol", msg)
	}

	s.announce(t, "node-a", 0, web(ip.String()), other("frr", "bird"))
	s.announce(t, "node-c", 0, other("frr"))
	s.waitAnnounced(t, ns, "other", metav1.ConditionTrue, otherMsg("bird, frr"))

	// The L2 address moves from node-a to node-b as speakers write it: the new owner
	// first, then the old one lets go.
	s.announce(t, "node-b", 0, web(ip.String()))
	s.waitAnnounced(t, ns, "web", metav1.ConditionTrue, fmt.Sprintf("L2 %s from node-a, node-b (eth1)", ip))
	s.announce(t, "node-a", 0, other("frr", "bird"))
	s.waitAnnounced(t, ns, "web", metav1.ConditionTrue, fmt.Sprintf("L2 %s from node-b (eth1)", ip))
	if msg, want := s.waitEvent(t, ns, "web", controller.EventL2OwnerChanged), fmt.Sprintf("%s: node-a → node-b", ip); msg != want {
		t.Errorf("L2OwnerChanged event %q, want %q", msg, want)
	}

	t.Run("unrelated changes write nothing", func(t *testing.T) {
		before := s.getService(t, ns, "web").ResourceVersion
		writes := counterValue(t, reg, "berth_controller_service_condition_writes_total", "condition", controller.ConditionAnnounced)
		// node-b's own object changes, but not its entry for web; then node-c's entry for
		// other changes twice, the last change marking that all before it were handled.
		s.announce(t, "node-b", 7, web(ip.String()))
		s.announce(t, "node-c", 0, other("frr", "tor"))
		s.waitAnnounced(t, ns, "other", metav1.ConditionTrue, otherMsg("bird, frr, tor"))
		s.announce(t, "node-c", 0, other("frr"))
		s.waitAnnounced(t, ns, "other", metav1.ConditionTrue, otherMsg("bird, frr"))
		if after := s.getService(t, ns, "web").ResourceVersion; after != before {
			t.Errorf("web was written (resourceVersion %s → %s) though its entries did not change", before, after)
		}
		if n := counterValue(t, reg, "berth_controller_service_condition_writes_total", "condition", controller.ConditionAnnounced) - writes; n != 2 {
			t.Errorf("%v Announced condition writes, want 2 (other's two changes)", n)
		}
	})

	s.announce(t, "node-b", 7)
	c = s.waitAnnounced(t, ns, "web", metav1.ConditionFalse, "")
	if c.Reason != controller.ReasonNotAnnounced {
		t.Errorf("reason %s, want %s", c.Reason, controller.ReasonNotAnnounced)
	}
	s.waitEvent(t, ns, "web", controller.ReasonNotAnnounced)
	// Events are written in order: every earlier one is in by now.
	for reason, want := range map[string]eventTally{
		controller.ReasonAnnounced:     {normal: 1},
		controller.EventL2OwnerChanged: {normal: 1},
		controller.ReasonNotAnnounced:  {warning: 1},
	} {
		if got := s.countEvents(t, ns, "web", reason); got != want {
			t.Errorf("%s events on web: %+v, want %+v", reason, got, want)
		}
	}

	t.Run("removed when the Service is no longer a LoadBalancer", func(t *testing.T) {
		s.updateService(t, ns, "other", toClusterIP)
		s.waitNoAnnounced(t, ns, "other")
		// The condition goes with the ingress, before the class loop's release ends.
		s.waitEvent(t, ns, "other", controller.EventIPReleased)
	})
}

// announce writes a node's NodeAnnouncement as its speaker would: create it if missing,
// then write the status.
func (s *site) announce(t *testing.T, node string, version int64, services ...v1alpha1.AnnouncedService) {
	t.Helper()
	ctx := context.Background()
	var na v1alpha1.NodeAnnouncement
	err := s.crc.Get(ctx, client.ObjectKey{Name: node}, &na)
	if apierrors.IsNotFound(err) {
		na = v1alpha1.NodeAnnouncement{ObjectMeta: metav1.ObjectMeta{Name: node}}
		err = s.crc.Create(ctx, &na)
	}
	if err != nil {
		t.Fatalf("node announcement %s: %v", node, err)
	}
	na.Status = v1alpha1.NodeAnnouncementStatus{DecisionVersion: version, Services: services}
	for _, e := range services {
		na.Status.L2 += int32(len(e.L2))
		na.Status.BGP += int32(len(e.BGP))
	}
	if err := s.crc.Status().Update(ctx, &na); err != nil {
		t.Fatalf("status of node announcement %s: %v", node, err)
	}
}

func (s *site) getService(t *testing.T, ns, name string) *corev1.Service {
	t.Helper()
	svc, err := s.kc.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// waitAnnounced waits for berth.dev/Announced with the status and, unless empty, the message.
func (s *site) waitAnnounced(t *testing.T, ns, name string, status metav1.ConditionStatus, msg string) *metav1.Condition {
	t.Helper()
	var got *metav1.Condition
	last := "none"
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		svc, err := s.kc.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got = meta.FindStatusCondition(svc.Status.Conditions, controller.ConditionAnnounced)
		if got == nil {
			return false, nil
		}
		last = fmt.Sprintf("%s %s: %q", got.Status, got.Reason, got.Message)
		return got.Status == status && (msg == "" || got.Message == msg), nil
	})
	if err != nil {
		t.Fatalf("service %s/%s: want %s=%s %q, last seen %s", ns, name, controller.ConditionAnnounced, status, msg, last)
	}
	return got
}

func (s *site) waitNoAnnounced(t *testing.T, ns, name string) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		svc, err := s.kc.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(svc.Status.Conditions, controller.ConditionAnnounced)
		if c != nil {
			last = fmt.Sprintf("%s %s: %q", c.Status, c.Reason, c.Message)
		}
		return c == nil, nil
	})
	if err != nil {
		t.Fatalf("service %s/%s still has %s: %s", ns, name, controller.ConditionAnnounced, last)
	}
}

type eventTally struct{ normal, warning int32 }

// countEvents counts a Service's Events of one reason, repeats included, by type.
func (s *site) countEvents(t *testing.T, ns, name, reason string) eventTally {
	t.Helper()
	evs, err := s.kc.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.name": name, "reason": reason}.String()})
	if err != nil {
		t.Fatal(err)
	}
	var n eventTally
	for _, e := range evs.Items {
		switch e.Type {
		case corev1.EventTypeWarning:
			n.warning += max(e.Count, 1)
		default:
			n.normal += max(e.Count, 1)
		}
	}
	return n
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
