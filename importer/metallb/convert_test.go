package metallb

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthlb/berth/config/admission"
	"github.com/berthlb/berth/controller"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s differs (go test -update rewrites it) (-want +got):\n%s", name, d)
	}
}

// read decodes a manifest of testdata as berthctl does.
func read(t testing.TB, file string) []Object {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return decodeManifest(t, "testdata/"+file, string(b))
}

func decodeManifest(t testing.TB, source, manifest string) []Object {
	t.Helper()
	us, err := admission.Decode([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	var objs []Object
	for _, u := range us {
		objs = append(objs, Object{Source: source, Object: u.Object})
	}
	return objs
}

func findings(r *Result) string {
	var b strings.Builder
	for _, f := range r.Findings {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

// TestImportConvert converts a whole MetalLB site (pools of both families with CIDRs and ranges,
// L2 and BGP advertisements with selectors, communities and aliases, peers with an inline
// password, a passwordSecret and BFD, annotated Services) into berth's objects and the
// warnings, both compared with golden files. That the output passes `berthctl check` is
// cmd/berthctl's TestImport.
func TestImportConvert(t *testing.T) {
	r := Convert(read(t, "metallb.yaml"), Options{})
	golden(t, "TestImportConvert.golden", string(r.YAML()))
	golden(t, "TestImportConvert-warnings.golden", findings(r))
	if n := r.NotConverted(); n != 0 {
		t.Errorf("%d objects not converted, want 0", n)
	}
	if r.Read != 16 || r.Ignored != 2 {
		t.Errorf("read %d, ignored %d; want 16 and 2 (a Service without MetalLB annotations, a Secret no peer uses)", r.Read, r.Ignored)
	}
	if strings.Contains(findings(r), "not-for-stderr") || strings.Contains(findings(r), "tor-b-md5-pw") {
		t.Error("a finding shows a password")
	}
}

// TestImportDeterministic: the order of the input changes nothing.
func TestImportDeterministic(t *testing.T) {
	objs := read(t, "metallb.yaml")
	want := Convert(objs, Options{})
	for i := range 5 {
		shuffled := append([]Object(nil), objs...)
		for j := range shuffled { // a fixed permutation per round
			k := (j*7 + i*3) % len(shuffled)
			shuffled[j], shuffled[k] = shuffled[k], shuffled[j]
		}
		got := Convert(shuffled, Options{})
		if d := cmp.Diff(string(want.YAML()), string(got.YAML())); d != "" {
			t.Fatalf("round %d: output depends on the input's order (-want +got):\n%s", i, d)
		}
	}
}

// TestImportServiceKeys: the annotations the importer writes are the ones berth-controller reads.
func TestImportServiceKeys(t *testing.T) {
	want := map[string]string{
		"address-pool":    controller.AnnotationPool,
		"loadBalancerIPs": controller.AnnotationLoadBalancerIPs,
		"allow-shared-ip": controller.AnnotationSharingKey,
	}
	for _, k := range serviceKeys {
		if want[k.metallb] != k.berth {
			t.Errorf("%s becomes %s, berth-controller reads %s", k.metallb, k.berth, want[k.metallb])
		}
	}
}
