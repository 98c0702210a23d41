//go:build integration

package source_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/source"
	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/lab/controlplane"
	"github.com/berthlb/berth/speaker"
)

type env struct {
	c       client.Client
	watcher *source.Watcher
}

func start(t *testing.T) *env {
	t.Helper()
	cp := controlplane.Start(t, controlplane.WithBerthCRDs())
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := cache.New(cp.Config, cache.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	w := source.New(ca, source.WithStatusWriter(c))
	done := make(chan error, 2)
	go func() { done <- ca.Start(ctx) }()
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("watcher or cache: %v", err)
			}
		}
	})
	return &env{c: c, watcher: w}
}

func pool(name string, addrs ...string) *v1alpha1.IPPool {
	p := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, a := range addrs {
		p.Spec.Addresses = append(p.Spec.Addresses, v1alpha1.AddressRange(a))
	}
	return p
}

// createAfter creates obj once the clock has moved past the second of after's
// creationTimestamp, so that obj is strictly newer (timestamps have 1 s resolution).
func (e *env) createAfter(t *testing.T, after client.Object, obj client.Object) {
	t.Helper()
	created := after.GetCreationTimestamp().Time
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 3*time.Second, true, func(context.Context) (bool, error) {
		return time.Now().Truncate(time.Second).After(created), nil
	})
	if err != nil {
		t.Fatalf("clock did not pass %s", created)
	}
	if err := e.c.Create(t.Context(), obj); err != nil {
		t.Fatalf("create %s: %v", obj.GetName(), err)
	}
}

// waitPool waits until the pool's Accepted condition has the given status and returns the pool.
func (e *env) waitPool(t *testing.T, name string, status metav1.ConditionStatus) *v1alpha1.IPPool {
	t.Helper()
	var p v1alpha1.IPPool
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := e.c.Get(ctx, client.ObjectKey{Name: name}, &p); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionAccepted)
		if c == nil {
			last = "no Accepted condition"
			return false, nil
		}
		last = fmt.Sprintf("%s %s: %s (generation %d, observed %d)", c.Status, c.Reason, c.Message, p.Generation, c.ObservedGeneration)
		return c.Status == status && c.ObservedGeneration == p.Generation, nil
	})
	if err != nil {
		t.Fatalf("pool %s: want Accepted=%s, last seen %s", name, status, last)
	}
	return &p
}

func snapshotPools(s *config.Snapshot) []string {
	var names []string
	for _, p := range s.Pools {
		names = append(names, p.Name)
	}
	return names
}

// TestOverlappingPools shows the older pool winning an overlap, the newer one marked with a
// condition while the older keeps working, the same winner whatever order the objects are
// read in, and the condition clearing once the overlap is removed.
func TestOverlappingPools(t *testing.T) {
	e := start(t)
	ctx := t.Context()

	// The older pool has the later name, so only age can make it win.
	older := pool("z-older", "198.18.2.192/27", "2001:db8:18:2::1:0/112")
	if err := e.c.Create(ctx, older); err != nil {
		t.Fatal(err)
	}
	newer := pool("a-newer", "198.18.2.200-198.18.2.210")
	e.createAfter(t, older, newer)

	got := e.waitPool(t, "z-older", metav1.ConditionTrue)
	if got.Status.IPv4 == nil || got.Status.IPv4.Capacity != "32" || got.Status.IPv6 == nil || got.Status.IPv6.Capacity != "65536" {
		t.Errorf("z-older capacity = %+v / %+v, want 32 IPv4 and 65536 IPv6", got.Status.IPv4, got.Status.IPv6)
	}
	lost := e.waitPool(t, "a-newer", metav1.ConditionFalse)
	c := meta.FindStatusCondition(lost.Status.Conditions, v1alpha1.ConditionAccepted)
	if c.Reason != string(config.PoolOverlap) || !strings.Contains(c.Message, `"z-older"`) {
		t.Errorf("a-newer condition = %s: %s, want reason PoolOverlap naming z-older", c.Reason, c.Message)
	}
	if lost.Status.IPv4 != nil {
		t.Errorf("a-newer, left out, reports capacity %+v", lost.Status.IPv4)
	}
	if d := cmp.Diff([]string{"z-older"}, snapshotPools(e.watcher.Snapshot())); d != "" {
		t.Errorf("snapshot pools (-want +got):\n%s", d)
	}

	// Another component reading the same objects in another order picks the same winner.
	var list v1alpha1.IPPoolList
	if err := e.c.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		slices.Reverse(list.Items)
		snap, problems := config.Build(config.Resources{Pools: list.Items})
		if d := cmp.Diff([]string{"z-older"}, snapshotPools(snap)); d != "" {
			t.Errorf("rebuilt snapshot pools (-want +got):\n%s", d)
		}
		if len(problems) != 1 || problems[0].Object.Name != "a-newer" {
			t.Errorf("rebuilt problems = %v, want one for a-newer", problems)
		}
	}

	// With nothing changed, a resync writes nothing.
	before := got.ResourceVersion + "/" + lost.ResourceVersion
	syncs := e.watcher.Syncs()
	e.watcher.Resync()
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return e.watcher.Syncs() > syncs, nil
	}); err != nil {
		t.Fatal("resync did not run")
	}
	var a, z v1alpha1.IPPool
	if err := e.c.Get(ctx, client.ObjectKey{Name: "a-newer"}, &a); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Get(ctx, client.ObjectKey{Name: "z-older"}, &z); err != nil {
		t.Fatal(err)
	}
	if after := z.ResourceVersion + "/" + a.ResourceVersion; after != before {
		t.Errorf("resync with no change wrote status: resourceVersions %s -> %s", before, after)
	}

	// Removing the overlap clears the condition; the older pool is untouched.
	a.Spec.Addresses = []v1alpha1.AddressRange{"198.18.2.224-198.18.2.230"}
	if err := e.c.Update(ctx, &a); err != nil {
		t.Fatal(err)
	}
	fixed := e.waitPool(t, "a-newer", metav1.ConditionTrue)
	if fixed.Status.IPv4 == nil || fixed.Status.IPv4.Capacity != "7" {
		t.Errorf("a-newer capacity = %+v, want 7", fixed.Status.IPv4)
	}
	if d := cmp.Diff([]string{"a-newer", "z-older"}, snapshotPools(e.watcher.Snapshot())); d != "" {
		t.Errorf("snapshot pools after fix (-want +got):\n%s", d)
	}
	var z2 v1alpha1.IPPool
	if err := e.c.Get(ctx, client.ObjectKey{Name: "z-older"}, &z2); err != nil {
		t.Fatal(err)
	}
	if z2.ResourceVersion != z.ResourceVersion {
		t.Errorf("z-older was rewritten while a-newer changed")
	}
}

// TestAdvertisementReferences shows a dangling pool reference reported on ResolvedRefs
// while the advertisement keeps serving the pool that exists.
func TestAdvertisementReferences(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	if err := e.c.Create(ctx, pool("lan", "198.18.2.192/26")); err != nil {
		t.Fatal(err)
	}
	adv := &v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "lan"}}
	adv.Spec.IPPools = []v1alpha1.ObjectName{"lan", "missing"}
	if err := e.c.Create(ctx, adv); err != nil {
		t.Fatal(err)
	}
	var got v1alpha1.L2Advertisement
	var last []metav1.Condition
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := e.c.Get(ctx, client.ObjectKey{Name: "lan"}, &got); err != nil {
			return false, err
		}
		last = got.Status.Conditions
		return meta.IsStatusConditionTrue(last, v1alpha1.ConditionAccepted) &&
			meta.IsStatusConditionFalse(last, v1alpha1.ConditionResolvedRefs), nil
	})
	if err != nil {
		t.Fatalf("want Accepted=True, ResolvedRefs=False; last conditions %+v", last)
	}
	c := meta.FindStatusCondition(last, v1alpha1.ConditionResolvedRefs)
	if c.Reason != string(config.PoolNotFound) || !strings.Contains(c.Message, `"missing"`) {
		t.Errorf("ResolvedRefs = %s: %s, want PoolNotFound naming \"missing\"", c.Reason, c.Message)
	}
	snap := e.watcher.Snapshot()
	if len(snap.L2Advertisements) != 1 || !slices.Equal(snap.L2Advertisements[0].Pools, []string{"lan"}) {
		t.Errorf("snapshot L2 advertisements = %+v, want one covering pool lan", snap.L2Advertisements)
	}
}

// TestPeerNodeEntries shows the speakers' entries in a BGPPeer's status (server-side apply,
// one field manager per node) living side by side with the watcher's conditions and its
// count of established sessions: each node changes only its own entry, a removal takes
// only that one, and Established follows.
func TestPeerNodeEntries(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	peer := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor"},
		Spec: v1alpha1.BGPPeerSpec{PeerAddress: "198.18.0.1", MyASN: 64512, PeerASN: 64500}}
	if err := e.c.Create(ctx, peer); err != nil {
		t.Fatal(err)
	}
	since := metav1.NewTime(time.Now().Truncate(time.Second))
	up := v1alpha1.PeerNodeStatus{Node: "n1", State: v1alpha1.SessionEstablished, Since: &since, PrefixesSent: 3}
	down := v1alpha1.PeerNodeStatus{Node: "n2", State: v1alpha1.SessionActive, Since: &since, Reason: speaker.PeerReasonAuthMismatchLikely,
		Message: "fails as a TCP-MD5 password mismatch does (or the peer is down)", Failures: 4,
		RetryInterval: &metav1.Duration{Duration: 40 * time.Second}}
	for _, entry := range []v1alpha1.PeerNodeStatus{up, down} {
		if err := speaker.ApplyPeerNodeStatus(ctx, e.c, entry.Node, "tor", &entry); err != nil {
			t.Fatal(err)
		}
	}
	e.waitPeer(t, "both entries, one established, Accepted kept", func(p *v1alpha1.BGPPeer) bool {
		return len(p.Status.Nodes) == 2 && p.Status.Established == 1 &&
			meta.IsStatusConditionTrue(p.Status.Conditions, v1alpha1.ConditionAccepted)
	})

	// n2 comes up: only its entry changes.
	down.State, down.Reason, down.Message, down.Failures, down.RetryInterval = v1alpha1.SessionEstablished, "", "", 0, nil
	if err := speaker.ApplyPeerNodeStatus(ctx, e.c, "n2", "tor", &down); err != nil {
		t.Fatal(err)
	}
	p := e.waitPeer(t, "two established", func(p *v1alpha1.BGPPeer) bool { return p.Status.Established == 2 })
	for _, n := range p.Status.Nodes {
		if n.Node == "n1" && n.PrefixesSent != 3 {
			t.Errorf("n1's entry changed with n2's: %+v", n)
		}
	}

	// n1 no longer holds a session with the peer.
	if err := speaker.ApplyPeerNodeStatus(ctx, e.c, "n1", "tor", nil); err != nil {
		t.Fatal(err)
	}
	e.waitPeer(t, "n2's entry alone", func(p *v1alpha1.BGPPeer) bool {
		return len(p.Status.Nodes) == 1 && p.Status.Nodes[0].Node == "n2" && p.Status.Established == 1
	})

	// A peer that is gone needs nothing.
	if err := e.c.Delete(ctx, peer); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		err := speaker.ApplyPeerNodeStatus(ctx, e.c, "n2", "tor", &down)
		return err == nil && e.c.Get(ctx, client.ObjectKey{Name: "tor"}, &v1alpha1.BGPPeer{}) != nil, err
	}); err != nil {
		t.Fatalf("apply to a deleted peer: %v", err)
	}
}

func (e *env) waitPeer(t *testing.T, what string, ok func(*v1alpha1.BGPPeer) bool) *v1alpha1.BGPPeer {
	t.Helper()
	var p v1alpha1.BGPPeer
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := e.c.Get(ctx, client.ObjectKey{Name: "tor"}, &p); err != nil {
			return false, err
		}
		last = fmt.Sprintf("%+v", p.Status)
		return ok(&p), nil
	})
	if err != nil {
		t.Fatalf("BGPPeer tor: want %s; last status %s", what, last)
	}
	return &p
}
