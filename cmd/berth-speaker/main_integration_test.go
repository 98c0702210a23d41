//go:build integration

package main_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/berthlb/berth/lab/controlplane"
)

// TestRefusesWithoutKey: a speaker whose memberlist Secret is missing, or holds no valid
// key, exits with an error that names the Secret, before it joins anything.
func TestRefusesWithoutKey(t *testing.T) {
	cp := controlplane.Start(t, controlplane.WithBerthCRDs())
	bin := filepath.Join(t.TempDir(), "berth-speaker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := controlplane.WriteKubeconfig(cp.Config, kubeconfig); err != nil {
		t.Fatal(err)
	}
	kc := kubernetes.NewForConfigOrDie(cp.Config)
	ctx := t.Context()
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "berth-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	run := func(want ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "--kubeconfig", kubeconfig, "--node-name", "node1",
			"--memberlist-bind-address", "198.18.0.11", "--health-bind-address=").CombinedOutput()
		if err == nil || ctx.Err() != nil {
			t.Fatalf("berth-speaker without a usable key: err %v (ctx %v), want exit 1\n%s", err, ctx.Err(), out)
		}
		for _, w := range want {
			if !strings.Contains(string(out), w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	}
	run("Secret berth-system/berth-memberlist not found", "refusing to start without a key")

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "berth-system", Name: "berth-memberlist"},
		Data: map[string][]byte{"key": []byte("short")}}
	if _, err := kc.CoreV1().Secrets("berth-system").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	run("invalid memberlist encryption key", "5 bytes, want 16, 24 or 32")
}
