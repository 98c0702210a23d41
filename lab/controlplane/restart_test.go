//go:build integration

package controlplane_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/berthlb/berth/lab/controlplane"
)

// TestStopStart: a stopped etcd or apiserver starts again as Up started it: clients made
// before work again, on the same address with the same certificates, and see what was
// written before (etcd keeps its data).
func TestStopStart(t *testing.T) {
	c := up(t, controlplane.Options{})
	ctx := t.Context()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "kept"}, Data: map[string]string{"a": "b"}}
	if _, err := c.Client.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	get := func() error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := c.Client.CoreV1().ConfigMaps("default").Get(ctx, "kept", metav1.GetOptions{})
		return err
	}
	for _, name := range []string{controlplane.APIServer, controlplane.Etcd} {
		old := c.Process(name)
		start := time.Now()
		if err := c.Stop(ctx, name); err != nil {
			t.Fatalf("stop %s: %v", name, err)
		}
		stopped := time.Since(start)
		if c.Process(name) != nil {
			t.Errorf("%s runs after Stop", name)
		}
		if err := get(); err == nil {
			t.Errorf("%s stopped, yet a read succeeded", name)
		}
		if err := c.Stop(ctx, name); err == nil {
			t.Errorf("a second Stop of %s succeeded", name)
		}
		start = time.Now()
		if err := c.Start(ctx, name); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		healthy := time.Since(start)
		if p := c.Process(name); p == nil || p == old {
			t.Errorf("%s: not running as a new process after Start", name)
		}
		// The apiserver reconnects to etcd with a backoff of its own.
		if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			return get() == nil, nil
		}); err != nil {
			t.Errorf("after %s came back: %v", name, get())
		}
		t.Logf("%s stopped in %v, healthy again %v after its start, the ConfigMap read after %v", name,
			stopped.Round(time.Millisecond), healthy.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		if err := c.Start(ctx, name); err == nil {
			t.Errorf("Start of a running %s succeeded", name)
		}
	}
	if err := c.Stop(ctx, "no-such-component"); err == nil {
		t.Error("Stop of an unknown component succeeded")
	}
}
