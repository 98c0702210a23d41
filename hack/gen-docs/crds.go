package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// Links for the Kubernetes types the reference names instead of listing their fields.
const (
	labelSelectorURL = "https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/label-selector/"
	conditionURL     = "https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/condition/"
)

// crdsDoc renders crds.md from the CustomResourceDefinitions in config/crd.
func crdsDoc(root string) ([]byte, error) {
	crds, err := readCRDs(filepath.Join(root, "config", "crd"))
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString(header + "# Custom resources\n\n")
	b.WriteString("berth's custom resources as the apiserver sees them, from the CRDs in `config/crd/`.\n" +
		"A field path ends in `[]` for the items of a list. **Required** fields must be set when their\n" +
		"parent is; the apiserver fills in a **Default** when a field is missing. The apiserver also\n" +
		"checks the **Limits** and, on create and update, each object's validation rules (CEL);\n" +
		"problems between objects show in the objects' `Accepted` condition instead.\n" +
		"`LabelSelector` is Kubernetes' [label selector](" + labelSelectorURL + ") and `Condition` its\n" +
		"[condition](" + conditionURL + ").\n\n")
	for _, crd := range crds {
		for _, v := range crd.Spec.Versions {
			fmt.Fprintf(&b, "- [%s](#%s) (`%s/%s`)\n", crd.Spec.Names.Kind, strings.ToLower(crd.Spec.Names.Kind), crd.Spec.Group, v.Name)
		}
	}
	b.WriteString("\n")
	for _, crd := range crds {
		for _, v := range crd.Spec.Versions {
			if err := kindDoc(&b, crd, v); err != nil {
				return nil, fmt.Errorf("%s %s: %w", crd.Spec.Names.Kind, v.Name, err)
			}
		}
	}
	return []byte(b.String()), nil
}

// readCRDs reads every CustomResourceDefinition in dir, sorted by kind.
func readCRDs(dir string) ([]apiextensionsv1.CustomResourceDefinition, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	var crds []apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(data, &crd); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if crd.Kind == "CustomResourceDefinition" { // not kustomization.yaml
			crds = append(crds, crd)
		}
	}
	if len(crds) == 0 {
		return nil, fmt.Errorf("no CustomResourceDefinition in %s", dir)
	}
	sort.Slice(crds, func(i, j int) bool { return crds[i].Spec.Names.Kind < crds[j].Spec.Names.Kind })
	return crds, nil
}

// rule is a CEL validation rule of the object at path.
type rule struct {
	path string
	apiextensionsv1.ValidationRule
}

// kindDoc writes the section of one version of one kind.
func kindDoc(b *strings.Builder, crd apiextensionsv1.CustomResourceDefinition, v apiextensionsv1.CustomResourceDefinitionVersion) error {
	if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
		return fmt.Errorf("no openAPIV3Schema")
	}
	n, root := crd.Spec.Names, *v.Schema.OpenAPIV3Schema
	fmt.Fprintf(b, "## %s\n\n", n.Kind)
	scope := "cluster-scoped"
	if crd.Spec.Scope == apiextensionsv1.NamespaceScoped {
		scope = "namespaced"
	}
	fmt.Fprintf(b, "`apiVersion: %s/%s`, %s; `kubectl get %s`", crd.Spec.Group, v.Name, scope, n.Plural)
	if len(n.ShortNames) > 0 {
		fmt.Fprintf(b, " (or `%s`)", strings.Join(n.ShortNames, "`, `"))
	}
	b.WriteString(".")
	if !v.Served || !v.Storage || v.Deprecated {
		fmt.Fprintf(b, " Served: %t, storage: %t, deprecated: %t.", v.Served, v.Storage, v.Deprecated)
	}
	b.WriteString("\n\n" + prose(root.Description) + "\n\n")
	if len(v.AdditionalPrinterColumns) > 0 {
		var cols []string
		for _, c := range v.AdditionalPrinterColumns {
			cols = append(cols, fmt.Sprintf("%s (`%s`)", c.Name, c.JSONPath))
		}
		b.WriteString("Columns of `kubectl get`: " + strings.Join(cols, ", ") + ".\n\n")
	}

	var rows [][]string
	var rules []rule
	for _, r := range root.XValidations {
		rules = append(rules, rule{n.Kind, r})
	}
	for _, name := range sortedKeys(root.Properties) {
		if name == "apiVersion" || name == "kind" || name == "metadata" {
			continue
		}
		walk(name, root.Properties[name], slices.Contains(root.Required, name), &rows, &rules)
	}
	table(b, []string{"Field", "Type", "Required", "Default", "Limits", "Description"}, rows)
	if len(rules) > 0 {
		fmt.Fprintf(b, "### %s validation rules\n\n", n.Kind)
		for _, r := range rules {
			msg := r.Message
			if msg == "" && r.MessageExpression != "" {
				msg = "message: " + code(r.MessageExpression)
			}
			fmt.Fprintf(b, "- %s: %s", code(r.path), prose(msg))
			if r.FieldPath != "" {
				fmt.Fprintf(b, " (reported at %s)", code(r.FieldPath))
			}
			if r.Reason != nil {
				fmt.Fprintf(b, " (reason %s)", code(string(*r.Reason)))
			}
			b.WriteString("\n\n")
			// Indented four spaces, the block belongs to the list item.
			var cb strings.Builder
			codeBlock(&cb, strings.TrimSpace(r.Rule))
			for _, l := range strings.Split(strings.TrimRight(cb.String(), "\n"), "\n") {
				b.WriteString(strings.TrimRight("    "+l, " ") + "\n")
			}
			b.WriteString("\n")
		}
	}
	return nil
}

// walk adds the rows of the field at path and of the fields inside it, and their rules.
func walk(path string, s apiextensionsv1.JSONSchemaProps, required bool, rows *[][]string, rules *[]rule) {
	req := ""
	if required {
		req = "yes"
	}
	*rows = append(*rows, []string{code(path), code(typeOf(s)), req, value(s.Default), strings.Join(limits(s), ", "), prose(s.Description)})
	for _, r := range s.XValidations {
		*rules = append(*rules, rule{path, r})
	}
	if known(s) != "" {
		return
	}
	for _, name := range sortedKeys(s.Properties) {
		walk(path+"."+name, s.Properties[name], slices.Contains(s.Required, name), rows, rules)
	}
	if s.Items != nil && s.Items.Schema != nil && worthARow(*s.Items.Schema) {
		walk(path+"[]", *s.Items.Schema, false, rows, rules)
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil && worthARow(*s.AdditionalProperties.Schema) {
		walk(path+".<key>", *s.AdditionalProperties.Schema, false, rows, rules)
	}
}

// worthARow says whether the schema of a list's items or a map's values says more than
// its type, which the list's or map's type shows already.
func worthARow(s apiextensionsv1.JSONSchemaProps) bool {
	return known(s) == "" && (s.Description != "" || len(s.Properties) > 0 || len(s.XValidations) > 0 || len(limits(s)) > 0 || s.Default != nil)
}

// known names the Kubernetes types the reference links to instead of listing their fields.
func known(s apiextensionsv1.JSONSchemaProps) string {
	has := func(names ...string) bool {
		for _, n := range names {
			if _, ok := s.Properties[n]; !ok {
				return false
			}
		}
		return true
	}
	switch {
	case s.Type == "object" && len(s.Properties) == 2 && has("matchLabels", "matchExpressions"):
		return "LabelSelector"
	case s.Type == "object" && has("type", "status", "reason", "message", "lastTransitionTime"):
		return "Condition"
	case s.Type == "array" && s.Items != nil && s.Items.Schema != nil && known(*s.Items.Schema) != "":
		return "[]" + known(*s.Items.Schema)
	}
	return ""
}

// typeOf is the field's type as the reference shows it: []string, map[string]string,
// integer (int32)...
func typeOf(s apiextensionsv1.JSONSchemaProps) string {
	if k := known(s); k != "" {
		return k
	}
	switch {
	case s.XIntOrString:
		return "int-or-string"
	case s.Type == "array" && s.Items != nil && s.Items.Schema != nil:
		return "[]" + typeOf(*s.Items.Schema)
	case s.Type == "object" && s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil:
		return "map[string]" + typeOf(*s.AdditionalProperties.Schema)
	case s.Type == "":
		return "any"
	case s.Format != "":
		return s.Type + " (" + s.Format + ")"
	}
	return s.Type
}

// limits lists the schema's constraints but for CEL rules, each as Markdown.
func limits(s apiextensionsv1.JSONSchemaProps) []string {
	var l []string
	if len(s.Enum) > 0 {
		var vs []string
		for _, e := range s.Enum {
			vs = append(vs, value(&e))
		}
		l = append(l, "one of "+strings.Join(vs, ", "))
	}
	if s.Pattern != "" {
		l = append(l, "pattern "+code(s.Pattern))
	}
	if s.Minimum != nil {
		l = append(l, bound(">", s.ExclusiveMinimum, *s.Minimum))
	}
	if s.Maximum != nil {
		l = append(l, bound("<", s.ExclusiveMaximum, *s.Maximum))
	}
	count := func(name string, v *int64) {
		if v != nil {
			l = append(l, fmt.Sprintf("%s %d", name, *v))
		}
	}
	count("minLength", s.MinLength)
	count("maxLength", s.MaxLength)
	count("minItems", s.MinItems)
	count("maxItems", s.MaxItems)
	count("minProperties", s.MinProperties)
	count("maxProperties", s.MaxProperties)
	if s.UniqueItems {
		l = append(l, "unique items")
	}
	if s.XListType != nil && *s.XListType != "atomic" {
		t := "listType " + *s.XListType
		if len(s.XListMapKeys) > 0 {
			t += " (keys " + strings.Join(s.XListMapKeys, ", ") + ")"
		}
		l = append(l, t)
	}
	if s.Nullable {
		l = append(l, "nullable")
	}
	return l
}

// value renders a default or enum value: strings bare, anything else as JSON.
func value(v *apiextensionsv1.JSON) string {
	if v == nil {
		return ""
	}
	var str string
	if json.Unmarshal(v.Raw, &str) == nil && str != "" {
		return code(str)
	}
	return code(string(v.Raw))
}

// bound is a minimum (op ">") or a maximum (op "<"), "≥ 0" when not exclusive.
func bound(op string, exclusive bool, v float64) string {
	if !exclusive {
		op = map[string]string{">": "≥", "<": "≤"}[op]
	}
	return op + " " + strconv.FormatFloat(v, 'f', -1, 64)
}
