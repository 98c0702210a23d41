package controller

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestConditionUpdate(t *testing.T) {
	then := metav1.NewTime(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	now := metav1.NewTime(then.Add(time.Hour))
	cond := func(status metav1.ConditionStatus, reason, msg string, gen int64, at metav1.Time) metav1.Condition {
		return metav1.Condition{Type: ConditionAnnounced, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen, LastTransitionTime: at}
	}
	want := metav1.Condition{Type: ConditionAnnounced, Status: metav1.ConditionTrue, Reason: ReasonAnnounced, Message: "L2 x"}
	for _, tc := range []struct {
		name      string
		have      metav1.Condition
		known     bool
		want      metav1.Condition
		wantWrite bool
	}{
		{name: "absent", want: cond(metav1.ConditionTrue, ReasonAnnounced, "L2 x", 2, now), wantWrite: true},
		{name: "equal", have: cond(metav1.ConditionTrue, ReasonAnnounced, "L2 x", 2, then), known: true,
			want: cond(metav1.ConditionTrue, ReasonAnnounced, "L2 x", 2, then)},
		{name: "message changed keeps the transition time", have: cond(metav1.ConditionTrue, ReasonAnnounced, "L2 y", 2, then), known: true,
			want: cond(metav1.ConditionTrue, ReasonAnnounced, "L2 x", 2, then), wantWrite: true},
		{name: "new generation keeps the transition time", have: cond(metav1.ConditionTrue, ReasonAnnounced, "L2 x", 1, then), known: true,
			want: cond(metav1.ConditionTrue, ReasonAnnounced, "L2 x", 2, then), wantWrite: true},
		{name: "status changed moves the transition time", have: cond(metav1.ConditionFalse, ReasonNotAnnounced, "nobody", 2, then), known: true,
			want: cond(metav1.ConditionTrue, ReasonAnnounced, "L2 x", 2, now), wantWrite: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, write := conditionUpdate(tc.have, tc.known, want, 2, now)
			if write != tc.wantWrite {
				t.Errorf("conditionUpdate() write = %v, want %v", write, tc.wantWrite)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("conditionUpdate() (-want +got):\n%s", d)
			}
		})
	}
}
