package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/berthlb/berth/controller/allocator"
)

// serviceConditions writes berth's conditions on Services, each with a strategic-merge
// status patch of that one condition, so that loops owning different conditions never
// overwrite each other. It remembers what it wrote: the Service copies callers pass in
// come from informers and may predate the write. Safe for concurrent use.
type serviceConditions struct {
	client kubernetes.Interface
	clock  clock.PassiveClock
	writes *prometheus.CounterVec // by condition type

	mu      sync.Mutex
	written map[conditionKey]writtenCondition
}

type conditionKey struct {
	svc allocator.Key
	typ string
}

// writtenCondition is a condition as last written; present is false once it was removed.
// The UID keeps a Service deleted and created again from inheriting the memory.
type writtenCondition struct {
	uid     types.UID
	present bool
	cond    metav1.Condition
}

func newServiceConditions(client kubernetes.Interface, clk clock.PassiveClock, writes *prometheus.CounterVec) *serviceConditions {
	return &serviceConditions{client: client, clock: clk, writes: writes, written: map[conditionKey]writtenCondition{}}
}

// current returns the Service's condition of that type: as last written, or else as the copy shows.
func (w *serviceConditions) current(svc *corev1.Service, typ string) (metav1.Condition, bool) {
	w.mu.Lock()
	mem, ok := w.written[conditionKey{keyOf(svc), typ}]
	w.mu.Unlock()
	if ok && mem.uid == svc.UID {
		return mem.cond, mem.present
	}
	if c := meta.FindStatusCondition(svc.Status.Conditions, typ); c != nil {
		return *c, true
	}
	return metav1.Condition{}, false
}

// conditionUpdate returns the condition to write over have (known: the Service has it),
// and false when have already says what want says. It stamps the observed generation and
// keeps lastTransitionTime while the status stays.
func conditionUpdate(have metav1.Condition, known bool, want metav1.Condition, generation int64, now metav1.Time) (metav1.Condition, bool) {
	want.ObservedGeneration = generation
	if known && have.Status == want.Status && have.Reason == want.Reason && have.Message == want.Message &&
		have.ObservedGeneration == generation {
		return have, false
	}
	want.LastTransitionTime = now
	if known && have.Status == want.Status {
		want.LastTransitionTime = have.LastTransitionTime
	}
	return want, true
}

// set writes want (type, status, reason, message) when the Service's condition differs;
// it reports whether it wrote.
func (w *serviceConditions) set(ctx context.Context, svc *corev1.Service, want metav1.Condition) (bool, error) {
	cond, changed := w.pending(svc, want)
	if !changed {
		return false, nil
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []metav1.Condition{cond}}})
	if err != nil {
		return false, err
	}
	if err := w.patch(ctx, svc, want.Type, patch); err != nil {
		return false, fmt.Errorf("set condition %s on service %s: %w", want.Type, klog.KObj(svc), err)
	}
	w.remember(svc, writtenCondition{uid: svc.UID, present: true, cond: cond}, want.Type)
	return true, nil
}

// pending returns the condition to write for want (type, status, reason, message), and
// false when the Service already says it. A caller that writes it in a patch of its own
// calls wrote afterwards.
func (w *serviceConditions) pending(svc *corev1.Service, want metav1.Condition) (metav1.Condition, bool) {
	have, known := w.current(svc, want.Type)
	return conditionUpdate(have, known, want, svc.Generation, metav1.NewTime(w.clock.Now()))
}

// wrote records a condition pending returned, written by the caller's own patch.
func (w *serviceConditions) wrote(svc *corev1.Service, cond metav1.Condition) {
	w.writes.WithLabelValues(cond.Type).Inc()
	w.remember(svc, writtenCondition{uid: svc.UID, present: true, cond: cond}, cond.Type)
}

// clear removes the condition of that type from a Service that has it. A Service being
// deleted is left alone: it is going, condition and all.
func (w *serviceConditions) clear(ctx context.Context, svc *corev1.Service, typ string) error {
	if _, has := w.current(svc, typ); !has || svc.DeletionTimestamp != nil {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []map[string]string{
		{"type": typ, "$patch": "delete"}}}})
	if err != nil {
		return err
	}
	if err := w.patch(ctx, svc, typ, patch); err != nil {
		return fmt.Errorf("clear condition %s on service %s: %w", typ, klog.KObj(svc), err)
	}
	w.remember(svc, writtenCondition{uid: svc.UID}, typ)
	return nil
}

// forget drops the memory of a Service's condition once the Service is gone.
func (w *serviceConditions) forget(key allocator.Key, typ string) {
	w.mu.Lock()
	delete(w.written, conditionKey{key, typ})
	w.mu.Unlock()
}

func (w *serviceConditions) remember(svc *corev1.Service, c writtenCondition, typ string) {
	w.mu.Lock()
	w.written[conditionKey{keyOf(svc), typ}] = c
	w.mu.Unlock()
}

// patch sends a status patch; a Service deleted meanwhile needs no condition.
func (w *serviceConditions) patch(ctx context.Context, svc *corev1.Service, typ string, patch []byte) error {
	w.writes.WithLabelValues(typ).Inc()
	_, err := w.client.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}
