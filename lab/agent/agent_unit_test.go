package agent

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/lab/echo"
	"github.com/berthlb/berth/lab/proc"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func TestIPAM(t *testing.T) {
	m, err := newIPAM([]netip.Prefix{pfx("198.19.3.0/24"), pfx("2001:db8:19:3::/64")},
		[]netip.Addr{addr("198.19.3.1"), addr("2001:db8:19:3::1")})
	if err != nil {
		t.Fatal(err)
	}
	var got [][]netip.Addr
	for range 3 {
		_, ips, err := m.allocate()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ips)
	}
	want := [][]netip.Addr{
		{addr("198.19.3.2"), addr("2001:db8:19:3::2")},
		{addr("198.19.3.3"), addr("2001:db8:19:3::3")},
		{addr("198.19.3.4"), addr("2001:db8:19:3::4")},
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("allocate() (-want +got):\n%s", d)
	}
	m.release(3)
	if slot, ips, _ := m.allocate(); slot != 3 || ips[0] != addr("198.19.3.3") {
		t.Errorf("after release(3): slot %d, %v; want slot 3 again", slot, ips)
	}
	// .2 … .254: 253 addresses, 3 taken.
	for i := range 250 {
		if _, _, err := m.allocate(); err != nil {
			t.Fatalf("allocation %d: %v", i+4, err)
		}
	}
	if _, ips, err := m.allocate(); err == nil {
		t.Errorf("allocation past .254 gave %v", ips)
	}
}

func TestIPAMSkipsGateway(t *testing.T) {
	m, err := newIPAM([]netip.Prefix{pfx("198.19.3.0/29")}, []netip.Addr{addr("198.19.3.2")})
	if err != nil {
		t.Fatal(err)
	}
	var got []netip.Addr
	for {
		_, ips, err := m.allocate()
		if err != nil {
			break
		}
		got = append(got, ips[0])
	}
	want := []netip.Addr{addr("198.19.3.3"), addr("198.19.3.4"), addr("198.19.3.5"), addr("198.19.3.6")}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("allocations (-want +got):\n%s", d)
	}
}

// TestPodStatusStable: a status that went through the API once compares equal to the
// next one computed, so a pod with nothing new costs no write; a readiness change flips
// Ready and ContainersReady only, with a new transition time.
func TestPodStatusStable(t *testing.T) {
	r, err := proc.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Start(t.Context(), proc.Spec{Name: "sleep", Path: "sleep", Args: []string{"60"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	sb := &sandbox{ips: []netip.Addr{addr("198.19.1.2"), addr("2001:db8:19:1::2")}, echo: p,
		cfg: echo.Config{Pod: "web-1"}, started: metav1.Now().Rfc3339Copy()}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "web"},
		Spec:       corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{{Name: "echo", Image: "berth.dev/lab-echo"}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBestEffort, Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now().Rfc3339Copy()}}},
	}
	hostIPs := []netip.Addr{addr("198.18.0.11"), addr("2001:db8:18::11")}
	t0 := metav1.Now().Rfc3339Copy()
	first := podStatus(pod, sb, hostIPs, true, t0)
	pod.Status = roundTrip(t, first)

	later := metav1.NewTime(t0.Add(time.Hour))
	if again := podStatus(pod, sb, hostIPs, true, later); !apiequality.Semantic.DeepEqual(pod.Status, again) {
		t.Errorf("unchanged pod, new status (a write):\n%s", cmp.Diff(pod.Status, again))
	}
	if pod.Status.QOSClass != corev1.PodQOSBestEffort || pod.Status.PodIP != "198.19.1.2" || len(pod.Status.PodIPs) != 2 {
		t.Errorf("status %+v: want qosClass kept and both pod IPs", pod.Status)
	}

	unready := podStatus(pod, sb, hostIPs, false, later)
	for _, c := range unready.Conditions {
		changed := c.Type == corev1.PodReady || c.Type == corev1.ContainersReady
		if changed != (c.Status == corev1.ConditionFalse) || changed != c.LastTransitionTime.Equal(&later) {
			t.Errorf("unready pod: condition %+v", c)
		}
	}
	if unready.ContainerStatuses[0].Ready {
		t.Errorf("unready pod: container ready")
	}
}

// roundTrip is what the API does to a status: JSON, times in seconds.
func roundTrip(t *testing.T, st corev1.PodStatus) corev1.PodStatus {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var out corev1.PodStatus
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
