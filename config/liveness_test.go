package config

import (
	"slices"
	"testing"
)

func TestDeadNodes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members map[string][]string
		want    []string
	}{
		{name: "all see all", members: map[string][]string{
			"a": {"a", "b", "c"}, "b": {"a", "b", "c"}, "c": {"a", "b", "c"}}},
		{name: "two survivors drop a killed node", members: map[string][]string{
			"a": {"a", "b", "c"}, "b": {"b", "c"}, "c": {"b", "c"}}, want: []string{"a"}},
		{name: "one of two others is no majority", members: map[string][]string{
			"a": {"a", "b", "c"}, "b": {"a", "b", "c"}, "c": {"b", "c"}}},
		{name: "two nodes: the survivor alone is a majority of one", members: map[string][]string{
			"a": {"a", "b"}, "b": {"b"}}, want: []string{"a"}},
		{name: "a stale list of a dead node does not kill the living", members: map[string][]string{
			"a": {"a"}, "b": {"b", "c"}, "c": {"b", "c"}}, want: []string{"a"}},
		{name: "nodes without a list neither vote nor die", members: map[string][]string{
			"a": nil, "b": {"b", "c"}, "c": {"b", "c"}}},
		{name: "alone", members: map[string][]string{"a": {"a"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for n := range DeadNodes(tc.members) {
				got = append(got, n)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("DeadNodes = %v, want %v", got, tc.want)
			}
		})
	}
}
