package berth_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/berthlb/berth/lab"
)

const module = "github.com/berthlb/berth"

type pkg struct {
	ImportPath string
	Deps       []string
}

// TestDependencyArrows enforces the import rules of DESIGN.md: executors never import the
// deciders, config stays free of client-go, the lab is used only by tests, e2e and
// berthctl, and nothing imports e2e.
func TestDependencyArrows(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps=false", "-json=ImportPath,Deps", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	under := func(p, dir string) bool { return p == module+"/"+dir || strings.HasPrefix(p, module+"/"+dir+"/") }
	rules := []struct {
		name      string
		applies   func(p string) bool
		forbidden func(dep string) bool
	}{
		{"executors never import speaker or controller",
			func(p string) bool { return under(p, "bgp") || under(p, "l2") || under(p, "datapath") },
			func(d string) bool { return under(d, "speaker") || under(d, "controller") }},
		{"speaker never imports controller", func(p string) bool { return under(p, "speaker") },
			func(d string) bool { return under(d, "controller") }},
		{"controller never imports speaker or executors", func(p string) bool { return under(p, "controller") },
			func(d string) bool {
				return under(d, "speaker") || under(d, "bgp") || under(d, "l2") || under(d, "datapath")
			}},
		{"config is pure: no client-go", func(p string) bool { return p == module+"/config" },
			func(d string) bool {
				return strings.HasPrefix(d, "k8s.io/client-go/") || strings.HasPrefix(d, "sigs.k8s.io/controller-runtime")
			}},
		{"API types import nothing of berth", func(p string) bool { return p == module+"/config/v1alpha1" },
			func(d string) bool { return strings.HasPrefix(d, module+"/") }},
		{"lab only in tests, e2e and berthctl",
			func(p string) bool { return !under(p, "lab") && !under(p, "e2e") && p != module+"/cmd/berthctl" },
			func(d string) bool { return under(d, "lab") }},
		{"nothing imports e2e", func(p string) bool { return !under(p, "e2e") },
			func(d string) bool { return under(d, "e2e") }},
	}
	for _, p := range pkgs {
		for _, r := range rules {
			if !r.applies(p.ImportPath) {
				continue
			}
			for _, d := range p.Deps {
				if r.forbidden(d) {
					t.Errorf("%s: %s imports %s", r.name, p.ImportPath, d)
				}
			}
		}
	}
}

// TestSpeakerKeepsDeadCodeElimination: built with lab.BuildTags, berth-speaker links no
// golang.org/x/net/trace, whose html/template execution calls methods by reflection and
// makes the linker keep every exported method of every type.
func TestSpeakerKeepsDeadCodeElimination(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", lab.BuildTags, module+"/cmd/berth-speaker").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "golang.org/x/net/trace" {
			t.Errorf("berth-speaker links %s", dep)
		}
	}
}
