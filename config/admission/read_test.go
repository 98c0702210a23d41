package admission

import (
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	objs, err := Decode([]byte(`---
apiVersion: berth.dev/v1alpha1
kind: IPPool
metadata: {name: a}
spec: {priority: 10}
---
# only a comment
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Service, metadata: {name: s}}
- {apiVersion: v1, kind: Secret, metadata: {name: p}}
`))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.GetKind()+"/"+o.GetName())
	}
	if got := strings.Join(names, " "); got != "IPPool/a Service/s Secret/p" {
		t.Errorf("objects %s; want IPPool/a Service/s Secret/p", got)
	}
	if p := objs[0].Object["spec"].(map[string]any)["priority"]; p != int64(10) {
		t.Errorf("priority decoded as %T %v; want int64, as the apiserver decodes", p, p)
	}
	for _, tc := range []struct{ in, want string }{
		{"kind: IPPool\nmetadata: {name: a}\n", "document 1: an object needs apiVersion and kind"},
		{"apiVersion: v1\nkind: List\nitems: [{kind: Service}]\n", "document 1, item 0: an object needs apiVersion and kind"},
		{"apiVersion: v1\nkind: Service\nkind: Secret\n", `document 1: yaml: unmarshal errors:`},
		{"- a\n- b\n", "document 1: not an object"},
	} {
		if _, err := Decode([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%q): %v; want %q", tc.in, err, tc.want)
		}
	}
}
