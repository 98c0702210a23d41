package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// A key is an annotation, label, finalizer, condition type or class that berth reads or writes.
type key struct {
	key, kind string
	source    string // where it is defined, as Markdown
	doc       string
	exported  bool
}

// Kinds of keys, in the order of annotations.md's sections.
var kinds = []string{"annotation", "label", "finalizer", "condition", "class", "other"}

var kindTitles = map[string]string{
	"annotation": "Annotations",
	"label":      "Labels",
	"finalizer":  "Finalizers",
	"condition":  "Condition types",
	"class":      "Load balancer class",
	"other":      "Other keys",
}

// kindOf classifies a constant by its name (AnnotationPool, ExcludeLabel...); "" when
// the name says nothing.
func kindOf(name string) string {
	n := strings.ToLower(name)
	for _, k := range kinds[:len(kinds)-1] {
		if strings.Contains(n, k) {
			return k
		}
	}
	return ""
}

// qualifiedName matches a prefixed Kubernetes key such as berth.dev/pool.
var qualifiedName = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,}/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)

// extras are the keys that no constant names. Each one's evidence must appear in a
// non-test Go file, so that the list cannot outlive the code.
var extras = []struct {
	key
	evidence string
}{
	{key{key: "berth.dev/lb", kind: "class", source: "`--load-balancer-class` default",
		doc: "berth's own loadBalancerClass, the default of the `--load-balancer-class` flag of berth-controller, berth-speaker and `berthctl status`. " +
			"berth serves Services of this class with its own loop, and Services without a class too unless `--handle-default-class=false`."},
		`"berth.dev/lb"`},
	{key{key: "app.kubernetes.io/name", kind: "label",
		doc: "berth sets it to `berth` on the objects it creates: the memberlist Secret and each node's NodeAnnouncement."},
		`"app.kubernetes.io/name": "berth"`},
	{key{key: "app.kubernetes.io/component", kind: "label",
		doc: "berth sets it to `memberlist` on the memberlist Secret berth-controller creates, and to `speaker` on the NodeAnnouncements the speakers create."},
		`"app.kubernetes.io/component"`},
	{key{key: "kubernetes.io/service-name", kind: "label", source: "`discoveryv1.LabelServiceName`",
		doc: "berth reads it on EndpointSlices (Kubernetes sets it) to find their Service."},
		`discoveryv1.LabelServiceName`},
}

// annotationsDoc renders annotations.md from the string constants of the module's
// non-test Go files whose values are prefixed keys, and from extras.
func annotationsDoc(root string) ([]byte, error) {
	files, err := goFiles(root)
	if err != nil {
		return nil, err
	}
	found := map[string]key{}
	for _, f := range files {
		for _, k := range f.keys {
			if old, ok := found[k.key]; !ok || better(k, old) {
				found[k.key] = k
			}
		}
	}
	for _, e := range extras {
		in := containing(files, e.evidence)
		if len(in) == 0 {
			return nil, fmt.Errorf("%s: %s appears in no Go file any more: update extras in hack/gen-docs/annotations.go", e.key.key, e.evidence)
		}
		if e.source == "" {
			e.source = strings.Join(in, ", ")
		}
		if _, ok := found[e.key.key]; !ok {
			found[e.key.key] = e.key
		}
	}

	var b strings.Builder
	b.WriteString(header + "# Annotations, labels and other keys\n\n")
	b.WriteString("Every annotation, label, finalizer, condition type and class berth reads or writes. Most\n" +
		"are Go constants: the description is their doc comment, and `make generate` finds new ones\n" +
		"by their names (`Annotation…`, `…Label`, `…Finalizer`, `Condition…`). The others are listed\n" +
		"in `hack/gen-docs/annotations.go`.\n\n")
	for _, kind := range kinds {
		var rows [][]string
		for _, name := range sortedKeys(found) {
			if k := found[name]; k.kind == kind {
				rows = append(rows, []string{code(k.key), k.source, prose(k.doc)})
			}
		}
		if len(rows) > 0 {
			fmt.Fprintf(&b, "## %s\n\n", kindTitles[kind])
			table(&b, []string{"Key", "Defined by", "Description"}, rows)
		}
	}
	return []byte(b.String()), nil
}

// better says whether a is the better of two constants of one value: exported, then
// documented, then first by source.
func better(a, b key) bool {
	if a.exported != b.exported {
		return a.exported
	}
	if (a.doc != "") != (b.doc != "") {
		return a.doc != ""
	}
	return a.source < b.source
}

// goFile is a non-test Go file of the module.
type goFile struct {
	path    string // relative to the module root
	src     string
	strings []string // its string literals
	keys    []key    // the keys its constants define
}

// goFiles parses the module's non-test Go files but this generator's, whatever their
// build tags, in a deterministic order.
func goFiles(root string) ([]goFile, error) {
	self := filepath.Join(root, "hack", "gen-docs")
	var files []goFile
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			n := d.Name()
			if path != root && (path == self || n == "testdata" || n == "vendor" || strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		f, err := parseGoFile(path, filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		files = append(files, f)
		return nil
	})
	return files, err
}

// parseGoFile reads one Go file's string literals and the keys its constants define.
func parseGoFile(path, rel string) (goFile, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return goFile{}, err
	}
	file, err := parser.ParseFile(token.NewFileSet(), path, src, parser.ParseComments)
	if err != nil {
		return goFile{}, err
	}
	g := goFile{path: rel, src: string(src)}
	ast.Inspect(file, func(n ast.Node) bool {
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil {
				g.strings = append(g.strings, s)
			}
		}
		return true
	})
	pkg := filepath.ToSlash(filepath.Dir(rel))
	for _, decl := range file.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			doc := vs.Doc
			if doc == nil && len(gd.Specs) == 1 {
				doc = gd.Doc
			}
			for i, name := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil || !qualifiedName.MatchString(v) {
					continue
				}
				kind := kindOf(name.Name)
				if kind == "" && strings.HasPrefix(v, "berth.dev/") {
					kind = "other"
				}
				if kind == "" {
					continue
				}
				g.keys = append(g.keys, key{key: v, kind: kind, doc: doc.Text(),
					source: fmt.Sprintf("`%s.%s` (%s)", filepath.Base(pkg), name.Name, rel), exported: name.IsExported()})
			}
		}
	}
	return g, nil
}

// containing lists the files whose source holds s.
func containing(files []goFile, s string) []string {
	var in []string
	for _, f := range files {
		if strings.Contains(f.src, s) {
			in = append(in, f.path)
		}
	}
	return in
}

// literalsWithPrefix maps the string literals of files that start with prefix to the
// first file that holds each.
func literalsWithPrefix(files []goFile, prefix string) map[string]string {
	lits := map[string]string{}
	for _, f := range files {
		for _, s := range f.strings {
			if _, ok := lits[s]; !ok && strings.HasPrefix(s, prefix) {
				lits[s] = f.path
			}
		}
	}
	return lits
}
