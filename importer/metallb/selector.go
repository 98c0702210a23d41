package metallb

import (
	"cmp"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MetalLB takes lists of label selectors where any one matching is enough; berth takes one
// selector. anyOf translates a list when one selector can say the same, and otherwise
// errs on the side of selecting less.

// anyOf returns one selector selecting what any of sels selects; nil for none. exact is
// false when no single selector can say that: then sel selects what all of sels select,
// fewer objects than MetalLB did, never more.
func anyOf(sels []metav1.LabelSelector) (sel *metav1.LabelSelector, exact bool) {
	switch len(sels) {
	case 0:
		return nil, true
	case 1:
		return sels[0].DeepCopy(), true
	}
	for _, s := range sels {
		if len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
			return &metav1.LabelSelector{}, true // selects everything
		}
	}
	// Each one a set of values of the same label: one In of their union.
	var k string
	var values []string
	for i, s := range sels {
		sk, sv, ok := oneKey(s)
		if !ok || (i > 0 && sk != k) {
			return allOf(sels), false
		}
		k = sk
		values = append(values, sv...)
	}
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: k, Operator: metav1.LabelSelectorOpIn, Values: sortedSet(values)}}}, true
}

// oneKey returns the label and values of a selector that only asks for one label to have
// one of some values.
func oneKey(s metav1.LabelSelector) (string, []string, bool) {
	switch {
	case len(s.MatchLabels) == 1 && len(s.MatchExpressions) == 0:
		for k, v := range s.MatchLabels {
			return k, []string{v}, true
		}
	case len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 1 && s.MatchExpressions[0].Operator == metav1.LabelSelectorOpIn:
		return s.MatchExpressions[0].Key, s.MatchExpressions[0].Values, true
	}
	return "", nil, false
}

// allOf returns one selector selecting what every one of sels selects.
func allOf(sels []metav1.LabelSelector) *metav1.LabelSelector {
	out := &metav1.LabelSelector{}
	for _, s := range sels {
		for k, v := range s.MatchLabels {
			if have, ok := out.MatchLabels[k]; ok && have != v {
				// Both required: no object has both values, and the selector says so.
				out.MatchExpressions = append(out.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpIn, Values: []string{v}})
				continue
			}
			if out.MatchLabels == nil {
				out.MatchLabels = map[string]string{}
			}
			out.MatchLabels[k] = v
		}
		for _, e := range s.MatchExpressions {
			if !slices.ContainsFunc(out.MatchExpressions, func(o metav1.LabelSelectorRequirement) bool {
				return o.Key == e.Key && o.Operator == e.Operator && slices.Equal(o.Values, e.Values)
			}) {
				out.MatchExpressions = append(out.MatchExpressions, *e.DeepCopy())
			}
		}
	}
	slices.SortStableFunc(out.MatchExpressions, func(a, b metav1.LabelSelectorRequirement) int {
		return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Operator, b.Operator))
	})
	return out
}
