package metallb

import (
	"bytes"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

const header = `# berth's objects, converted from MetalLB's by berthctl import metallb.
# Read the notes and warnings, then: berthctl check THIS-FILE, and kubectl apply -f THIS-FILE.
`

// commentWidth is where comments wrap.
const commentWidth = 100

// YAML renders the objects as one multi-document stream: each after comments naming the
// objects it comes from, its notes, and the warnings about the object it converts (the
// same as Findings, for whoever reads the file).
func (r *Result) YAML() []byte {
	var b bytes.Buffer
	b.WriteString(header)
	warned := map[Ref]bool{}
	for _, o := range r.Objects {
		b.WriteString("---\n")
		for _, f := range o.From {
			comment(&b, fmt.Sprintf("From %s (%s).", f, f.Source))
		}
		for _, n := range o.Notes {
			comment(&b, "Note: "+n+".")
		}
		// The warnings go with the first object converted from the same input object,
		// not with Secrets, which a peer's warnings already explain.
		if first := o.From[0]; !warned[first] && o.Object["kind"] != kindSecret {
			warned[first] = true
			for _, f := range r.Findings {
				if f.Object == first && !f.NotConverted {
					comment(&b, "Warning: "+strings.TrimPrefix(f.String(), f.Object.Source+": "+f.Object.String()+": "))
				}
			}
		}
		y, err := yaml.Marshal(o.Object)
		if err != nil { // plain maps of JSON values always marshal
			fmt.Fprintf(&b, "# error: %v\n", err)
			continue
		}
		b.Write(y)
	}
	return b.Bytes()
}

// comment writes s as YAML comment lines, wrapped at commentWidth.
func comment(b *bytes.Buffer, s string) {
	line := "#"
	for _, w := range strings.Fields(s) {
		if len(line)+1+len(w) > commentWidth && line != "#" && line != "#  " {
			b.WriteString(line + "\n")
			line = "#  "
		}
		line += " " + w
	}
	b.WriteString(line + "\n")
}
