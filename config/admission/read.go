package admission

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// ReadFile reads the objects of a YAML or JSON manifest as kubectl does: every document
// of a multi-document stream, and the items of a List.
func ReadFile(path string) ([]*unstructured.Unstructured, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Decode(b)
}

// Decode reads the objects of a manifest. Duplicate keys are an error, as in kubectl;
// whole numbers become int64, as in the apiserver.
func Decode(manifest []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	var objs []*unstructured.Unstructured
	for doc := 1; ; doc++ {
		b, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, err
		}
		j, err := yaml.YAMLToJSONStrict(b)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(bytes.TrimSpace(j)) == 0 || string(bytes.TrimSpace(j)) == "null" {
			continue // an empty document, e.g. after a trailing ---
		}
		var m map[string]any
		if err := utiljson.Unmarshal(j, &m); err != nil {
			return nil, fmt.Errorf("document %d: not an object: %w", doc, err)
		}
		items, isList := m["items"].([]any)
		if !isList {
			items = []any{m}
		}
		for i, item := range items {
			o, ok := item.(map[string]any)
			u := &unstructured.Unstructured{Object: o}
			if !ok || u.GetAPIVersion() == "" || u.GetKind() == "" {
				where := fmt.Sprintf("document %d", doc)
				if isList {
					where += fmt.Sprintf(", item %d", i)
				}
				return nil, fmt.Errorf("%s: an object needs apiVersion and kind", where)
			}
			objs = append(objs, u)
		}
	}
}
