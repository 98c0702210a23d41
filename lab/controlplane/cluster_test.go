//go:build integration

package controlplane_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2/ktesting"

	"github.com/berthlb/berth/lab/controlplane"
	"github.com/berthlb/berth/lab/proc"
)

// up starts a control plane for one test and stops it when the test ends.
func up(t *testing.T, opts controlplane.Options) *controlplane.Cluster {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	_, ctx := ktesting.NewTestContext(t)
	start := time.Now()
	c, err := controlplane.Up(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("control plane up in %v (%s)", time.Since(start).Round(time.Millisecond), c.Server)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		if err := c.Down(ctx); err != nil {
			t.Errorf("down: %v", err)
		}
		t.Logf("control plane down in %v", time.Since(start).Round(time.Millisecond))
		for _, p := range c.Runner().Processes() {
			t.Errorf("%s (pid %d) still runs after Down", p.Name(), p.PID())
		}
		if recs, err := proc.ReadPidFiles(c.Dir); err != nil || len(recs) > 0 {
			t.Errorf("pid files left after Down: %v, %v", recs, err)
		}
	})
	return c
}

// TestUp: the whole control plane comes up, its controllers act, ServiceAccount
// kubeconfigs authenticate as the ServiceAccount, and the audit log records what RBAC
// refused, by user.
func TestUp(t *testing.T) {
	c := up(t, controlplane.Options{})
	ctx := t.Context()
	for _, name := range []string{controlplane.Etcd, controlplane.APIServer, controlplane.ControllerManager, controlplane.Scheduler} {
		if c.Process(name) == nil {
			t.Errorf("%s is not running", name)
		}
	}

	// The admin kubeconfig works from a shell.
	out, err := exec.CommandContext(ctx, filepath.Join(c.BinDir, "kubectl"), "--kubeconfig", c.AdminKubeconfig,
		"auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").CombinedOutput()
	if err != nil || string(out) != controlplane.AdminUser {
		t.Errorf("kubectl auth whoami with %s: %q, %v; want %s", c.AdminKubeconfig, out, err, controlplane.AdminUser)
	}

	// The "kubernetes" Service got a ClusterIP from the lab's primary Service range.
	svc, err := c.Client.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ip := netip.MustParseAddr(svc.Spec.ClusterIP); !c.ServiceCIDRs[0].Contains(ip) {
		t.Errorf("kubernetes ClusterIP %s outside %s", ip, c.ServiceCIDRs[0])
	}

	// serviceaccount-controller makes "default" in a new namespace.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "cp-test"}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "default ServiceAccount in cp-test", func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts("cp-test").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})

	// A dual-stack Service gets a ClusterIP in each range.
	pds := corev1.IPFamilyPolicyRequireDualStack
	ds, err := c.Client.CoreV1().Services("cp-test").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "ds"},
		Spec:       corev1.ServiceSpec{IPFamilyPolicy: &pds, Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Spec.ClusterIPs) != 2 {
		t.Errorf("dual-stack Service ClusterIPs = %v, want one per family", ds.Spec.ClusterIPs)
	}

	// A ServiceAccount kubeconfig authenticates as the ServiceAccount; what RBAC refuses
	// it shows up in the audit log under its name.
	path, err := c.ServiceAccountKubeconfig(ctx, "cp-test", "probe", true)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	sa := kubernetes.NewForConfigOrDie(cfg)
	review, err := sa.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	const user = "system:serviceaccount:cp-test:probe"
	if err != nil || review.Status.UserInfo.Username != user {
		t.Fatalf("whoami with %s: %v, %v; want %s", path, review, err, user)
	}
	_, err = sa.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("listing kube-system secrets as %s: %v, want forbidden", user, err)
	}
	var got []controlplane.AuditEvent
	waitFor(t, "the 403 in the audit log", func(context.Context) (bool, error) {
		f, err := c.Forbidden(controlplane.ServiceAccountsIn("cp-test"))
		got = f[user]
		return len(got) > 0, err
	})
	if e := got[0]; e.Verb != "list" || e.ObjectRef == nil || e.ObjectRef.Resource != "secrets" {
		t.Errorf("forbidden event %v, want a list of secrets", e)
	}

	// The controllers and the scheduler run under their own identities without a 403.
	f, err := c.Forbidden(func(u string) bool {
		return strings.HasPrefix(u, "system:serviceaccount:kube-system:") || u == controlplane.SchedulerUser
	})
	if err != nil {
		t.Fatal(err)
	}
	for u, evs := range f {
		t.Logf("%s was refused %d requests, e.g. %v (start-up, before RBAC caught up?)", u, len(evs), evs[0])
	}
	can := c.Client.AuthorizationV1().SubjectAccessReviews()
	r, err := can.Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: controlplane.KubeProxyUser, ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: "list", Group: "discovery.k8s.io", Resource: "endpointslices"}}}, metav1.CreateOptions{})
	if err != nil || !r.Status.Allowed {
		t.Errorf("system:kube-proxy may not list EndpointSlices: %v %v", r, err)
	}

	// namespace-controller finalises a namespace deletion.
	if err := c.Client.CoreV1().Namespaces().Delete(ctx, "cp-test", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "namespace cp-test gone", func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().Namespaces().Get(ctx, "cp-test", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// TestUpFailsWithoutBinaries: a missing binary is an error naming the make target.
func TestUpFailsWithoutBinaries(t *testing.T) {
	_, err := controlplane.Up(t.Context(), controlplane.Options{Dir: t.TempDir(), BinDir: t.TempDir()})
	if !errors.Is(err, controlplane.ErrBinariesMissing) || !strings.Contains(err.Error(), controlplane.MakeTarget) {
		t.Errorf("Up with an empty BinDir: %v; want ErrBinariesMissing naming %q", err, controlplane.MakeTarget)
	}
}

// BenchmarkUp measures a warm start (binaries built, fresh PKI and data) and the stop:
//
//	go test -tags integration -run '^$' -bench Up -benchtime 5x ./lab/controlplane/
func BenchmarkUp(b *testing.B) {
	var up, down time.Duration
	for b.Loop() {
		dir, err := os.MkdirTemp(b.TempDir(), "run")
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		c, err := controlplane.Up(b.Context(), controlplane.Options{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		up += time.Since(start)
		start = time.Now()
		if err := c.Down(b.Context()); err != nil {
			b.Fatal(err)
		}
		down += time.Since(start)
	}
	b.ReportMetric(up.Seconds()/float64(b.N), "s/up")
	b.ReportMetric(down.Seconds()/float64(b.N), "s/down")
}

func waitFor(t *testing.T, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 30*time.Second, true, cond); err != nil {
		t.Fatalf("wait for %s: %v", what, err)
	}
}
