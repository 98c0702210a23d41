//go:build integration

package admission_test

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/config/admission"
	"github.com/berthlb/berth/lab/controlplane"
)

// TestAsTheCluster compares the offline admitter with a real kube-apiserver serving
// berth's CRDs.
func TestAsTheCluster(t *testing.T) {
	cp := controlplane.Start(t, controlplane.WithBerthCRDs())
	c, err := client.New(cp.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := admission.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("corpus", func(t *testing.T) { testCorpus(t, c, a) })
	t.Run("demo", func(t *testing.T) { testDemo(t, c, a) })
}

// testCorpus applies every file of config/testdata/invalid to a real
// kube-apiserver with berth's CRDs, as `kubectl apply` does (fieldValidation=Strict), and
// to the offline admitter: the apiserver must reject it naming the file's field and
// message, and the admitter must give exactly the apiserver's error.
func testCorpus(t *testing.T, c client.Client, a *admission.Admitter) {
	files, err := filepath.Glob("../testdata/invalid/*.yaml")
	if err != nil || len(files) < 40 {
		t.Fatalf("corpus: %d files, %v; want at least 40", len(files), err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			field, want, obj := readCase(t, f)
			serverErr := c.Create(t.Context(), &unstructured.Unstructured{Object: obj}, client.FieldValidation("Strict"))
			if serverErr == nil {
				t.Fatalf("the apiserver accepted %s; want rejected: %s: %s", f, field, want)
			}
			if !apierrors.IsInvalid(serverErr) && !apierrors.IsBadRequest(serverErr) {
				t.Fatalf("the apiserver: %v; want Invalid or BadRequest", serverErr)
			}
			if !strings.Contains(serverErr.Error(), field) || !strings.Contains(serverErr.Error(), want) {
				t.Errorf("the apiserver: %q\nwant it to name %q and contain %q", serverErr, field, want)
			}
			// Every cause must be about the one field the file breaks, save the apiserver's
			// field-less note that it skipped CEL rules after a schema error.
			var status apierrors.APIStatus
			if errors.As(serverErr, &status) && status.Status().Details != nil {
				for _, cause := range status.Status().Details.Causes {
					if cause.Field != field && !strings.Contains(cause.Message, "validation rules were not checked") {
						t.Errorf("cause for %s (%s); want only causes for %s", cause.Field, cause.Message, field)
					}
				}
			}
			_, offlineErr := a.Create(t.Context(), obj)
			if offlineErr == nil {
				t.Fatalf("offline: accepted; the apiserver said %v", serverErr)
			}
			if offlineErr.Error() != serverErr.Error() {
				t.Errorf("offline and the apiserver disagree:\noffline:   %s\napiserver: %s", offlineErr, serverErr)
			}
			if apierrors.ReasonForError(offlineErr) != apierrors.ReasonForError(serverErr) {
				t.Errorf("offline reason %s, the apiserver's %s", apierrors.ReasonForError(offlineErr), apierrors.ReasonForError(serverErr))
			}
		})
	}
}

// testDemo: valid objects (the demo's) come out of the admitter as the
// apiserver stores them, defaults included.
func testDemo(t *testing.T, c client.Client, a *admission.Admitter) {
	objs, err := admission.ReadFile("../../deploy/lab/demo/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, o := range objs {
		if !a.Handles(o.GroupVersionKind()) {
			continue
		}
		n++
		got, err := a.Create(t.Context(), o.Object)
		if err != nil {
			t.Errorf("offline rejected %s %s: %v", o.GetKind(), o.GetName(), err)
			continue
		}
		stored := o.DeepCopy()
		if err := c.Create(t.Context(), stored, client.FieldValidation("Strict")); err != nil {
			t.Fatalf("the apiserver rejected %s %s: %v", o.GetKind(), o.GetName(), err)
		}
		if d := cmp.Diff(stored.Object["spec"], got.Object["spec"]); d != "" {
			t.Errorf("%s %s: spec (-apiserver +offline):\n%s", o.GetKind(), o.GetName(), d)
		}
	}
	if n < 4 {
		t.Errorf("the demo has %d berth objects; want pools, advertisements and peers", n)
	}
}

// readCase reads a corpus file: "# field:" and "# want:" header lines, then the object.
func readCase(t *testing.T, file string) (field, want string, obj map[string]any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "# field: "); ok {
			field = v
		} else if v, ok := strings.CutPrefix(s.Text(), "# want: "); ok {
			want = v
		}
	}
	if field == "" || want == "" {
		t.Fatalf("%s: no '# field:' or '# want:' line", file)
	}
	objs, err := admission.ReadFile(file)
	if err != nil || len(objs) != 1 {
		t.Fatalf("%s: %d objects, %v; want one", file, len(objs), err)
	}
	return field, want, objs[0].Object
}
