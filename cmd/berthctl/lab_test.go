//go:build integration && privileged

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/controlplane"
	"github.com/berthlb/berth/lab/echo"
	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
)

// warmUpTarget is the goal for a warm `berthctl lab up` (binaries built, caches warm).
const warmUpTarget = 15 * time.Second

// berthctl is the binary under test, built once by TestMain.
var berthctl string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berthctl-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	berthctl = filepath.Join(dir, "berthctl")
	out, err := exec.Command("go", "build", "-o", berthctl, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build -o %s ./cmd/berthctl: %v\n%s", berthctl, err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// labRun is one lab run driven through the berthctl binary.
type labRun struct {
	prefix, baseDir, binDir string
}

// newLabRun checks what the lab needs, failing with the make target or apt package of
// anything missing, and picks a fresh prefix under a base directory of the test's own. Its
// cleanup runs `lab down` whatever happened, so a failed test leaves nothing behind.
func newLabRun(t *testing.T) *labRun {
	t.Helper()
	if err := lab.Preflight(); err != nil {
		t.Fatal(err)
	}
	binDir, err := controlplane.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	// The base directory must be traversable by FRR's user, which t.TempDir is not.
	base, err := os.MkdirTemp("/run", "berth-lab-test-")
	if err != nil {
		t.Fatal(err)
	}
	r := &labRun{prefix: netns.NewPrefix(), baseDir: base, binDir: binDir}
	t.Cleanup(func() {
		if _, err := os.Stat(lab.RunDir(base, r.prefix)); err == nil {
			if t.Failed() {
				if b, err := os.ReadFile(filepath.Join(lab.RunDir(base, r.prefix), logFile)); err == nil {
					t.Logf("daemon log:\n%s", b)
				}
			}
			out, _, code := r.berthctl(t, "down")
			t.Logf("cleanup: lab down (exit %d): %s", code, out)
		}
		os.RemoveAll(base)
	})
	return r
}

// berthctl runs `berthctl lab <cmd>` for the run and returns its stdout, stderr and exit code.
func (r *labRun) berthctl(t *testing.T, cmd string, args ...string) (string, string, int) {
	t.Helper()
	argv := append([]string{"lab", cmd, "-prefix=" + r.prefix, "-base-dir=" + r.baseDir}, args...)
	c := exec.Command(berthctl, argv...)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("berthctl %s: %v", strings.Join(argv, " "), err)
	}
	return stdout.String(), stderr.String(), c.ProcessState.ExitCode()
}

// up runs `lab up`, failing the test unless it succeeds, and returns its output and time.
func (r *labRun) up(t *testing.T) (string, time.Duration) {
	t.Helper()
	begin := time.Now()
	out, errOut, code := r.berthctl(t, "up", "-controlplane-dir="+r.binDir)
	took := time.Since(begin)
	if code != 0 {
		t.Fatalf("lab up: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	return out, took
}

// field returns the value of the "key: value" line of out.
func field(t *testing.T, out, key string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, key+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %q line in:\n%s", key, out)
	return ""
}

// footprint is what the run occupies: its namespaces (with inodes), the processes recorded
// in its run directory and the daemon.
type footprint struct {
	prefix, dir string
	inodes      map[uint64]string
	procs       []proc.Recorded
}

func footprintOf(t *testing.T, r *labRun) footprint {
	t.Helper()
	fp := footprint{prefix: r.prefix, dir: lab.RunDir(r.baseDir, r.prefix), inodes: map[uint64]string{}}
	names, err := netns.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		var st syscall.Stat_t
		if strings.HasPrefix(name, r.prefix) && syscall.Stat(netns.NS(name).Path(), &st) == nil {
			fp.inodes[st.Ino] = name
		}
	}
	if fp.procs, err = proc.ReadPidFiles(fp.dir); err != nil {
		t.Fatal(err)
	}
	owner, err := lab.Owner(r.baseDir, r.prefix)
	if err != nil {
		t.Fatal(err)
	}
	fp.procs = append(fp.procs, owner)
	return fp
}

// assertGone checks that no namespace, mount, host link, recorded process, process inside
// one of the run's namespaces, or run directory is left.
func (fp footprint) assertGone(t *testing.T) {
	t.Helper()
	names, err := netns.List(context.Background())
	if err != nil {
		t.Error(err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, fp.prefix) {
			t.Errorf("namespace %s left", n)
		}
	}
	if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), "/run/netns/"+fp.prefix) {
		t.Errorf("netns mount of %s left", fp.prefix)
	}
	if links, err := netns.HostLinks(context.Background(), fp.prefix); err != nil || len(links) > 0 {
		t.Errorf("host links %v left (%v)", links, err)
	}
	for _, p := range fp.procs {
		if p.Alive() {
			t.Errorf("process %d (%s) left", p.PID, p.Command)
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		link, err := os.Readlink(filepath.Join("/proc", p.Name(), "ns/net"))
		if err != nil {
			continue
		}
		var ino uint64
		if _, err := fmt.Sscanf(link, "net:[%d]", &ino); err == nil && fp.inodes[ino] != "" {
			t.Errorf("process %s still in namespace %s", p.Name(), fp.inodes[ino])
		}
	}
	if _, err := os.Stat(fp.dir); !os.IsNotExist(err) {
		t.Errorf("run directory %s left (%v)", fp.dir, err)
	}
}

func logUpTime(t *testing.T, took time.Duration) {
	t.Helper()
	verdict := "within"
	if took > warmUpTarget {
		verdict = "ABOVE"
	}
	t.Logf("berthctl lab up (warm): %v, %s the %v target", took.Round(10*time.Millisecond), verdict, warmUpTarget)
}

// TestLabUpStatusDown: `lab up` returns with a site that keeps running in its daemon; its
// kubeconfig works from the host (3 Ready nodes), a Pod's echo server (berthctl re-executed
// in the pod's namespace) answers; `lab status` shows the run; `lab down` leaves nothing.
func TestLabUpStatusDown(t *testing.T) {
	r := newLabRun(t)
	out, took := r.up(t)
	t.Logf("lab up:\n%s", out)
	logUpTime(t, took)
	kubeconfig := field(t, out, "kubeconfig")
	namespaces := strings.Fields(field(t, out, "namespaces"))
	if len(namespaces) != 8 {
		t.Errorf("namespaces %v, want switch, frr, bird, 3 nodes and 2 clients", namespaces)
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ready []string
	for _, n := range nodes.Items {
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				ready = append(ready, n.Name)
			}
		}
	}
	if len(ready) != 3 {
		t.Errorf("Ready nodes %v of %d, want 3", ready, len(nodes.Items))
	}

	// A Pod runs berthctl's echo server and answers.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: metav1.NamespaceDefault},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "echo", Image: "berth.dev/lab-echo",
			Ports: []corev1.ContainerPort{{ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
	}
	if _, err := c.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 30*time.Second, "pod echo running with an IP", func(ctx context.Context) (string, bool) {
		p, err := c.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err.Error(), false
		}
		pod = p
		return fmt.Sprintf("phase %s, IP %q", p.Status.Phase, p.Status.PodIP), p.Status.Phase == corev1.PodRunning && p.Status.PodIP != ""
	})
	addr := netip.AddrPortFrom(netip.MustParseAddr(pod.Status.PodIP), 8080)
	reply, err := echo.Ask(ctx, netns.NS(r.prefix+pod.Spec.NodeName), "tcp", addr)
	if err != nil || reply.Pod != "echo" {
		t.Errorf("ask pod echo at %s: %v, %v", addr, reply, err)
	}

	status, errOut, code := r.berthctl(t, "status")
	t.Logf("lab status:\n%s", status)
	if code != 0 {
		t.Errorf("lab status: exit %d, want 0: %s", code, errOut)
	}
	for _, want := range append([]string{"lab " + r.prefix + ": running", "kubeconfig: " + kubeconfig,
		"kube-apiserver", "etcd", "frr-zebra", "bird-bird", "kube-proxy-node3", "pod-default-echo"}, namespaces...) {
		if !strings.Contains(status, want) {
			t.Errorf("lab status lacks %q", want)
		}
	}
	if strings.Contains(status, " gone") {
		t.Errorf("lab status shows processes gone")
	}

	fp := footprintOf(t, r)
	begin := time.Now()
	out, errOut, code = r.berthctl(t, "down")
	t.Logf("lab down in %v: %s", time.Since(begin).Round(10*time.Millisecond), out)
	if code != 0 {
		t.Fatalf("lab down: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "nothing left") {
		t.Errorf("lab down had to clean up after its daemon: %s%s", out, errOut)
	}
	fp.assertGone(t)
	if status, _, code := r.berthctl(t, "status"); code != exitNotRunning || !strings.Contains(status, "not running") {
		t.Errorf("lab status after down: exit %d, %q", code, status)
	}
}

// TestLabDownAfterCrash: after the lab daemon is killed with SIGKILL, `lab status` reports
// the leftovers and `lab down` removes all of them, including FRR's zebra, which runs as
// another user and so outlives the daemon.
func TestLabDownAfterCrash(t *testing.T) {
	r := newLabRun(t)
	_, took := r.up(t)
	logUpTime(t, took)
	fp := footprintOf(t, r)
	owner, err := lab.Owner(r.baseDir, r.prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(owner.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "daemon gone", func(context.Context) (string, bool) {
		return fmt.Sprintf("pid %d alive", owner.PID), !owner.Alive()
	})
	var survivors []string
	for _, p := range fp.procs {
		if p.Alive() {
			survivors = append(survivors, filepath.Base(p.File))
		}
	}
	t.Logf("%d of %d processes outlived the daemon: %v", len(survivors), len(fp.procs), survivors)

	status, _, code := r.berthctl(t, "status")
	t.Logf("lab status:\n%s", status)
	if code != exitNotRunning || !strings.Contains(status, "crashed run") {
		t.Errorf("lab status after the crash: exit %d, want %d and the leftovers", code, exitNotRunning)
	}
	if _, errOut, code := r.berthctl(t, "up", "-controlplane-dir="+r.binDir); code == 0 || !strings.Contains(errOut, "crashed run left") {
		t.Errorf("lab up over a crashed run: exit %d, %q; want a refusal", code, errOut)
	}
	begin := time.Now()
	out, errOut, code := r.berthctl(t, "down")
	t.Logf("lab down in %v: %s", time.Since(begin).Round(10*time.Millisecond), out)
	if code != 0 {
		t.Fatalf("lab down: exit %d: %s", code, errOut)
	}
	fp.assertGone(t)
}

// TestLabUpWithBerth is `make demo`: `lab up -with-berth` installs berth from deploy/ with
// the demo and prints a curl per demo address; each printed command, run as printed
// (curl in the client's namespace), gets an answer from a demo Pod; `lab down` leaves
// nothing, berth's processes included.
func TestLabUpWithBerth(t *testing.T) {
	r := newLabRun(t)
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bins := t.TempDir()
	if _, err := lab.BuildBerth(t.Context(), bins); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	out, errOut, code := r.berthctl(t, "up", "-controlplane-dir="+r.binDir, "-with-berth",
		"-berth-bin-dir="+bins, "-deploy-dir="+filepath.Join(root, "deploy"))
	if code != 0 {
		t.Fatalf("lab up -with-berth: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	t.Logf("lab up -with-berth in %v:\n%s", time.Since(begin).Round(100*time.Millisecond), out)
	var curls []string
	for _, l := range strings.Split(out, "\n") {
		if cmd, ok := strings.CutPrefix(strings.TrimSpace(l), "sudo "); ok && strings.Contains(cmd, "curl") {
			curls = append(curls, cmd)
		}
	}
	if len(curls) != 4 {
		t.Fatalf("%d curl commands, want 4 (echo-l2 and echo-bgp, IPv4 and IPv6):\n%s", len(curls), out)
	}
	for _, cmd := range curls {
		argv := strings.Fields(cmd)
		got, err := exec.CommandContext(t.Context(), argv[0], argv[1:]...).Output()
		if err != nil || !strings.HasPrefix(string(got), "pod=echo-") {
			t.Errorf("%s: %q, %v", cmd, got, err)
		}
	}

	// berthctl status, pools and explain, on the demo as a user would run them: the golden
	// files hold what the demo settles to (addresses, owners and peers are deterministic).
	kubeconfig := field(t, out, "kubeconfig")
	for _, c := range []struct {
		args   []string
		golden string
	}{
		{[]string{"status"}, "demo-status.golden"},
		{[]string{"pools"}, "demo-pools.golden"},
		{[]string{"explain", "-n", "berth-demo", "svc/echo-l2"}, "demo-explain-l2.golden"},
		{[]string{"explain", "-n", "berth-demo", "svc/echo-bgp"}, "demo-explain-bgp.golden"},
	} {
		golden := filepath.Join("testdata", c.golden)
		want, err := os.ReadFile(golden)
		if err != nil && !*update {
			t.Fatal(err)
		}
		var got string
		what := "berthctl " + strings.Join(c.args, " ")
		lab.Eventually(t, 30*time.Second, what+" shows "+c.golden, func(ctx context.Context) (string, bool) {
			b, err := exec.CommandContext(ctx, berthctl, append([]string{c.args[0], "--kubeconfig", kubeconfig}, c.args[1:]...)...).CombinedOutput()
			got = string(b)
			// -update writes what the demo shows once every peer's session is up.
			settled := *update && err == nil && !strings.Contains(got, "Active") && !strings.Contains(got, "mismatch")
			return fmt.Sprintf("%v:\n%s", err, b), err == nil && (got == string(want) || settled)
		})
		if *update {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("%s:\n%s", what, got)
	}

	fp := footprintOf(t, r)
	for _, want := range []string{"berth-controller", "berth-speaker-node1", "berth-speaker-node3"} {
		found := false
		for _, p := range fp.procs {
			found = found || strings.Contains(p.File, want)
		}
		if !found {
			t.Errorf("no process %s recorded in the run directory", want)
		}
	}
	out, errOut, code = r.berthctl(t, "down")
	if code != 0 || !strings.Contains(out, "nothing left") {
		t.Fatalf("lab down: exit %d: %s%s", code, out, errOut)
	}
	fp.assertGone(t)
}
