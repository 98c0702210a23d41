package config

import (
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/config/v1alpha1"
)

// Kind is a berth resource kind.
type Kind string

// berth's kinds.
const (
	KindIPPool           Kind = "IPPool"
	KindBGPPeer          Kind = "BGPPeer"
	KindBGPAdvertisement Kind = "BGPAdvertisement"
	KindL2Advertisement  Kind = "L2Advertisement"
)

// Reason says why an object is not (fully) in use. Reasons are CamelCase and reused
// verbatim as condition reasons, Event reasons and metric labels.
type Reason string

// Reasons Build reports.
const (
	// Accepted and RefsResolved are the reasons of the True conditions.
	Accepted     Reason = "Accepted"
	RefsResolved Reason = "ResolvedRefs"

	InvalidAddresses      Reason = "InvalidAddresses"
	PoolOverlap           Reason = "PoolOverlap"
	InvalidSelector       Reason = "InvalidSelector"
	InvalidPeer           Reason = "InvalidPeer"
	DuplicatePeer         Reason = "DuplicatePeer"
	InvalidCommunity      Reason = "InvalidCommunity"
	InvalidAdvertisement  Reason = "InvalidAdvertisement"
	AdvertisementConflict Reason = "AdvertisementConflict"
	PoolNotFound          Reason = "PoolNotFound"
	PeerNotFound          Reason = "PeerNotFound"
)

// ObjectRef names one berth object.
type ObjectRef struct {
	Kind Kind
	Name string
}

func (r ObjectRef) String() string { return string(r.Kind) + "/" + r.Name }

// Problem is something wrong with one object. Condition says which condition it turns
// False: v1alpha1.ConditionAccepted (the object is left out) or
// v1alpha1.ConditionResolvedRefs (the object is used, minus what it names that is missing).
type Problem struct {
	Object    ObjectRef
	Condition string
	Reason    Reason
	Message   string
}

func (p Problem) Error() string { return p.Object.String() + ": " + p.Message }

// conditionTypes lists the conditions each kind carries.
func conditionTypes(k Kind) []string {
	if k == KindBGPAdvertisement || k == KindL2Advertisement {
		return []string{v1alpha1.ConditionAccepted, v1alpha1.ConditionResolvedRefs}
	}
	return []string{v1alpha1.ConditionAccepted}
}

// Conditions returns the conditions obj should carry given all of Build's problems: False
// with the first problem's reason and every problem's message, or True. LastTransitionTime
// is left zero; apply them with ApplyConditions so unchanged conditions keep their time.
func Conditions(obj ObjectRef, generation int64, problems []Problem) []metav1.Condition {
	var out []metav1.Condition
	for _, typ := range conditionTypes(obj.Kind) {
		c := metav1.Condition{Type: typ, Status: metav1.ConditionTrue, ObservedGeneration: generation}
		var msgs []string
		for _, p := range problems {
			if p.Object != obj || p.Condition != typ {
				continue
			}
			if len(msgs) == 0 {
				c.Reason = string(p.Reason)
			}
			msgs = append(msgs, p.Message)
		}
		if len(msgs) > 0 {
			c.Status = metav1.ConditionFalse
			c.Message = strings.Join(msgs, "; ")
		} else if typ == v1alpha1.ConditionAccepted {
			c.Reason, c.Message = string(Accepted), "in use"
		} else {
			c.Reason, c.Message = string(RefsResolved), "every referenced object exists"
		}
		out = append(out, c)
	}
	return out
}

// ApplyConditions merges want into *have, keeping the transition time of conditions whose
// status did not change, and reports whether anything changed.
func ApplyConditions(have *[]metav1.Condition, want []metav1.Condition, now metav1.Time) bool {
	changed := false
	for _, c := range want {
		old := meta.FindStatusCondition(*have, c.Type)
		if old != nil && old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message &&
			old.ObservedGeneration == c.ObservedGeneration {
			continue
		}
		c.LastTransitionTime = now
		meta.SetStatusCondition(have, c)
		changed = true
	}
	return changed
}

func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.Object != b.Object {
			if a.Object.Kind != b.Object.Kind {
				return a.Object.Kind < b.Object.Kind
			}
			return a.Object.Name < b.Object.Name
		}
		return a.Condition < b.Condition
	})
}
