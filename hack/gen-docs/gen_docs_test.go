package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestReferenceUpToDate regenerates docs/reference and compares it with the checkout.
// flags.md needs the binaries built (about 15 s with a warm build cache); -short skips it.
func TestReferenceUpToDate(t *testing.T) {
	root := testRoot(t)
	for _, f := range files {
		t.Run(f.name, func(t *testing.T) {
			if f.name == "flags.md" && testing.Short() {
				t.Skip("builds the binaries; not with -short")
			}
			start := time.Now()
			want, err := f.gen(root)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("generated in %v", time.Since(start).Round(time.Millisecond))
			path := filepath.Join(outDir, f.name)
			got, err := os.ReadFile(filepath.Join(root, path))
			if err != nil {
				t.Fatalf("%v: run make generate", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s is stale: run make generate (or go run ./hack/gen-docs); first difference:\n%s", path, firstDiff(string(got), string(want)))
			}
		})
	}
}

// TestGenerateIsDeterministic renders the reference but flags.md twice: same bytes.
func TestGenerateIsDeterministic(t *testing.T) {
	root := testRoot(t)
	for _, f := range files {
		if f.name == "flags.md" {
			continue // covered by TestReferenceUpToDate: it is built from fixed -h output
		}
		a, errA := f.gen(root)
		b, errB := f.gen(root)
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: two runs differ (errors %v, %v)", f.name, errA, errB)
		}
	}
}

// TestEveryBerthKeyDocumented: every "berth.dev/..." string literal in non-test Go code
// is in annotations.md.
func TestEveryBerthKeyDocumented(t *testing.T) {
	root := testRoot(t)
	doc, err := annotationsDoc(root)
	if err != nil {
		t.Fatal(err)
	}
	gofiles, err := goFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	lits := literalsWithPrefix(gofiles, "berth.dev/")
	if len(lits) == 0 {
		t.Fatal(`found no "berth.dev/" literal: is the module root right?`)
	}
	for _, lit := range sortedKeys(lits) {
		if !bytes.Contains(doc, []byte("`"+lit+"`")) {
			t.Errorf("%q (%s) is not in %s/annotations.md: define it as a constant named Annotation…, …Label, …Finalizer or Condition…, "+
				"with a doc comment, or add it to extras in hack/gen-docs/annotations.go; then run make generate", lit, lits[lit], outDir)
		}
	}
}

// TestParseFlags reads what this Go's flag package prints for every shape of flag.
func TestParseFlags(t *testing.T) {
	fs := flag.NewFlagSet("cmd sub", flag.ContinueOnError)
	var out bytes.Buffer
	fs.SetOutput(&out)
	fs.String("name", "", "no default")
	fs.String("ns", "berth-system", "a quoted default")
	fs.String("dir", "", "`directory` of things (default $SOME_DIR, or none)")
	fs.Bool("on", true, "a bool\nover two lines")
	fs.Bool("x", false, "a one-letter bool")
	fs.Int("v", 0, "a one-letter int")
	fs.Duration("wait", 3*time.Minute, "a duration")
	fs.Float64("qps", 20, "a float")
	if err := fs.Parse([]string{"-h"}); err != flag.ErrHelp {
		t.Fatalf("Parse(-h) = %v, want ErrHelp", err)
	}
	got, ok := parseFlags(out.String())
	if !ok {
		t.Fatalf("parseFlags did not see a flag listing in:\n%s", out.String())
	}
	want := []flagInfo{
		{name: "dir", typ: "directory", usage: "directory of things (default $SOME_DIR, or none)"},
		{name: "name", typ: "string", usage: "no default"},
		{name: "ns", typ: "string", def: "berth-system", usage: "a quoted default"},
		{name: "on", typ: "bool", def: "true", usage: "a bool\nover two lines"},
		{name: "qps", typ: "float", def: "20", usage: "a float"},
		{name: "v", typ: "int", usage: "a one-letter int"},
		{name: "wait", typ: "duration", def: "3m0s", usage: "a duration"},
		{name: "x", typ: "bool", usage: "a one-letter bool"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(flagInfo{})); diff != "" {
		t.Errorf("parseFlags (-want +got):\n%s\nof:\n%s", diff, out.String())
	}
	if _, ok := parseFlags("berthctl dev\n"); ok {
		t.Error("parseFlags took a version line for a flag listing")
	}
}

func TestParseCommands(t *testing.T) {
	usage := "usage: x <command>\n\ncommands:\n  up       start\n           more about up\n  down     stop\n\nEvery command takes -prefix.\n  not a command\n"
	if diff := cmp.Diff([]string{"up", "down"}, parseCommands(usage)); diff != "" {
		t.Errorf("parseCommands (-want +got):\n%s", diff)
	}
	if got := parseCommands("Usage of x:\n  -a string\n"); got != nil {
		t.Errorf("parseCommands of a flag listing = %q, want none", got)
	}
}

func TestProse(t *testing.T) {
	for in, want := range map[string]string{
		"a pattern ending in \"*\" (\"eth*\")": `a pattern ending in "\*" ("eth\*")`,
		"map <key> to `<value>`\nand on":       "map &lt;key> to `<value>` and on",
		"snake_case `node_name`":               "snake\\_case `node_name`",
	} {
		if got := prose(in); got != want {
			t.Errorf("prose(%q) = %q, want %q", in, got, want)
		}
	}
}

func testRoot(t *testing.T) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// firstDiff shows the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl || i >= len(g) || i >= len(w) {
			return fmt.Sprintf("line %d\n  in the checkout: %q\n  generated:       %q", i+1, gl, wl)
		}
	}
	return "(none)"
}
