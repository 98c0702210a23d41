//go:build integration

package main

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/controller"
	"github.com/berthlb/berth/lab/controlplane"
	"github.com/berthlb/berth/speaker/membership"
)

// TestWatchKeySecret: the speaker follows the Secret berth-memberlist through a real
// apiserver: the keys at start, each rotation step, a rejected update (reported once),
// and a deletion that changes nothing. Another Secret in the namespace is never offered.
func TestWatchKeySecret(t *testing.T) {
	_, kc := memberlistSecretEnv(t)
	ctx := t.Context()
	secrets := kc.CoreV1().Secrets(ns)
	s, err := secrets.Get(ctx, controller.MemberlistSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oldKey, newKey := s.Data["key"], bytes.Repeat([]byte{'n'}, 32)

	list := &fakeList{calls: make(chan struct{}, 10)}
	var mu sync.Mutex
	var rejected []error
	f := &keyFollower{list: list, logger: klog.Background(), source: "Secret " + ns + "/" + controller.MemberlistSecretName,
		reject: func(err error) { mu.Lock(); rejected = append(rejected, err); mu.Unlock() }}
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		watchKeySecret(ctx, kc, ns, f)
	}()

	next := func(what string, want map[string][]byte) {
		t.Helper()
		select {
		case <-list.calls:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: not offered within 10 s", what)
		}
		list.mu.Lock()
		got := list.offered[len(list.offered)-1]
		list.mu.Unlock()
		if len(got) != len(want) {
			t.Fatalf("%s: offered %d entries, want %d", what, len(got), len(want))
		}
		for k, v := range want {
			if !bytes.Equal(got[k], v) {
				t.Fatalf("%s: entry %q differs", what, k)
			}
		}
	}
	patch := func(data map[string][]byte) {
		t.Helper()
		s, err := secrets.Get(ctx, controller.MemberlistSecretName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Data = data
		if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	next("the key at start", map[string][]byte{"key": oldKey})
	if _, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bgp-password"},
		Data: map[string][]byte{"password": []byte("x")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	patch(map[string][]byte{"key": oldKey, "next": newKey})
	next("step 1", map[string][]byte{"key": oldKey, "next": newKey})
	patch(map[string][]byte{"key": newKey, "previous": oldKey, "oops": []byte("short")})
	next("a bad entry", map[string][]byte{"key": newKey, "previous": oldKey, "oops": []byte("short")})
	patch(map[string][]byte{"key": newKey, "previous": oldKey})
	next("step 2", map[string][]byte{"key": newKey, "previous": oldKey})
	mu.Lock() // the rejection was reported before step 2 was offered
	if len(rejected) != 1 || !strings.Contains(rejected[0].Error(), `entry "oops": 5 bytes`) {
		t.Errorf("rejections = %v, want one naming entry oops", rejected)
	}
	mu.Unlock()
	patch(map[string][]byte{"key": newKey})
	next("step 3", map[string][]byte{"key": newKey})

	if err := secrets.Delete(ctx, controller.MemberlistSecretName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Recreated as berth-controller would, with a new key: offered, with its risks logged.
	if err := controller.EnsureMemberlistSecret(ctx, kc, ns); err != nil {
		t.Fatal(err)
	}
	s, err = secrets.Get(ctx, controller.MemberlistSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	next("the recreated Secret", map[string][]byte{"key": s.Data["key"]})
	list.mu.Lock()
	defer list.mu.Unlock()
	for _, e := range list.offered {
		if _, ok := e["password"]; ok {
			t.Error("another Secret's data was offered as memberlist keys")
		}
	}
	if _, err := membership.KeysFrom(list.offered[len(list.offered)-1]); err != nil {
		t.Errorf("the recreated Secret's key: %v", err)
	}
}

// TestDocumentedRotation runs the kubectl commands of docs/speaker.md ("Memberlist keys
// and their rotation") verbatim against a real apiserver, with a real memberlist List
// following the Secret: after each step the List holds the keys the step promises.
func TestDocumentedRotation(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "speaker.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "### Memberlist keys and their rotation")
	_, block, ok2 := strings.Cut(section, "```sh\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("docs/speaker.md: no sh block in the section on key rotation")
	}
	// The block: a preamble (ns=...), then three steps separated by "# ...wait" lines;
	// each step runs in its own shell, after the preamble.
	steps := strings.Split(block, "# ...wait")
	if len(steps) != 3 {
		t.Fatalf("docs/speaker.md: %d steps between waits, want 3:\n%s", len(steps), block)
	}
	preamble, _, _ := strings.Cut(steps[0], "# 1.")
	for i := range steps {
		if i > 0 {
			_, steps[i], _ = strings.Cut(steps[i], "\n") // the rest of the wait line
			steps[i] = preamble + steps[i]
		}
	}

	cp, kc := memberlistSecretEnv(t)
	ctx := t.Context()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := controlplane.WriteKubeconfig(cp.Config, kubeconfig); err != nil {
		t.Fatal(err)
	}
	bin, err := controlplane.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	pathDir := t.TempDir() // kubectl under its own name
	if err := os.Symlink(filepath.Join(bin, controlplane.Kubectl), filepath.Join(pathDir, "kubectl")); err != nil {
		t.Fatal(err)
	}

	o := options{namespace: ns, nodeName: "node1"}
	keys, err := memberlistKeys(ctx, kc, o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	list, err := membership.New(membership.Config{Name: "node1", Bind: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)),
		Keys: keys, Logger: klog.Background()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = list.Shutdown() })
	f := &keyFollower{list: list, logger: klog.Background(), source: "Secret"}
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		watchKeySecret(ctx, kc, ns, f)
	}()

	oldFP := membership.Fingerprint(keys.Primary)
	var newFP string
	for i, script := range steps {
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "PATH="+pathDir+":"+os.Getenv("PATH"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("step %d: %v\n%s\n%s", i+1, err, script, out)
		}
		s, err := kc.CoreV1().Secrets(ns).Get(ctx, controller.MemberlistSecretName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			newFP = membership.Fingerprint(s.Data["next"])
		}
		want := [][]string{{oldFP, newFP}, {newFP, oldFP}, {newFP}}[i]
		var last string
		deadline := time.Now().Add(10 * time.Second)
		for {
			k := list.Keys()
			got := []string{membership.Fingerprint(k.Primary)}
			for _, a := range k.Accepted {
				got = append(got, membership.Fingerprint(a))
			}
			last = fmt.Sprint(got)
			if last == fmt.Sprint(want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("step %d: the List holds %s (primary first), want %v; Secret entries %v", i+1, last, want, secretEntries(s))
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		t.Logf("step %d: primary %s, accepted %v", i+1, want[0], want[1:])
	}

	// The documented command printing the fingerprint of the Secret's primary key.
	_, rest, _ := strings.Cut(section, "sha256sum")
	start := strings.LastIndex(section[:len(section)-len(rest)], "```sh\n")
	fpCmd, _, _ := strings.Cut(section[start+len("```sh\n"):], "```")
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", fpCmd)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "PATH="+pathDir+":"+os.Getenv("PATH"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", fpCmd, err)
	}
	if got := strings.TrimSpace(string(out)); got != newFP {
		t.Errorf("the documented fingerprint command prints %q, berth_memberlist_key_info shows %q", got, newFP)
	}
}

func secretEntries(s *corev1.Secret) []string {
	var out []string
	for k, v := range s.Data {
		out = append(out, fmt.Sprintf("%s (%d bytes)", k, len(v)))
	}
	return out
}

// ns is the namespace memberlistSecretEnv makes.
const ns = "berth-system"

// memberlistSecretEnv starts a control plane with namespace ns holding the memberlist
// Secret as berth-controller creates it, and returns it with an admin client.
func memberlistSecretEnv(t *testing.T) (*controlplane.ControlPlane, kubernetes.Interface) {
	t.Helper()
	cp := controlplane.Start(t)
	kc := kubernetes.NewForConfigOrDie(cp.Config)
	if _, err := kc.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := controller.EnsureMemberlistSecret(t.Context(), kc, ns); err != nil {
		t.Fatal(err)
	}
	return cp, kc
}
