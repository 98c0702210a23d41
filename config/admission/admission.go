// Package admission admits berth's objects offline as the kube-apiserver admits them with
// berth's CRDs: strict decoding (unknown fields), pruning, defaults, the OpenAPI schema and
// the CEL rules, through apiextensions-apiserver's own code, so that a rejection here
// reads exactly as `kubectl apply` would print it.
package admission

import (
	"context"
	"fmt"
	"io/fs"
	"path"

	apiextensionsinternal "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apiextensions-apiserver/pkg/registry/customresource"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/registry/rest"
	"sigs.k8s.io/yaml"

	"github.com/berthlb/berth/config/crd"
)

// Admitter admits objects of the kinds its CRDs define.
type Admitter struct {
	kinds map[schema.GroupVersionKind]*kind
}

// kind is what the apiserver keeps per served version of a CRD.
type kind struct {
	gvk        schema.GroupVersionKind
	structural *structuralschema.Structural
	strategy   rest.RESTCreateStrategy
}

// New reads berth's CRDs.
func New() (*Admitter, error) {
	return FromFS(crd.FS)
}

// FromFS reads every CRD manifest (*.yaml) in fsys.
func FromFS(fsys fs.FS) (*Admitter, error) {
	files, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return nil, err
	}
	a := &Admitter{kinds: map[schema.GroupVersionKind]*kind{}}
	for _, f := range files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		var c apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(b, &c); err != nil {
			return nil, fmt.Errorf("%s: %w", path.Base(f), err)
		}
		if err := a.add(&c); err != nil {
			return nil, fmt.Errorf("%s: %w", path.Base(f), err)
		}
	}
	return a, nil
}

// add prepares each version of c as customresource_handler.go's crdHandler does.
func (a *Admitter) add(c *apiextensionsv1.CustomResourceDefinition) error {
	for _, v := range c.Spec.Versions {
		if !v.Served || v.Schema == nil {
			continue
		}
		var val apiextensionsinternal.CustomResourceValidation
		if err := apiextensionsv1.Convert_v1_CustomResourceValidation_To_apiextensions_CustomResourceValidation(v.Schema, &val, nil); err != nil {
			return err
		}
		s, err := structuralschema.NewStructural(val.OpenAPIV3Schema)
		if err != nil {
			return err
		}
		s = s.DeepCopy()
		if err := structuraldefaulting.PruneDefaults(s); err != nil {
			return err
		}
		validator, _, err := apiservervalidation.NewSchemaValidator(val.OpenAPIV3Schema)
		if err != nil {
			return err
		}
		var status *apiextensionsinternal.CustomResourceSubresourceStatus
		if v.Subresources != nil && v.Subresources.Status != nil {
			status = &apiextensionsinternal.CustomResourceSubresourceStatus{}
		}
		gvk := schema.GroupVersionKind{Group: c.Spec.Group, Version: v.Name, Kind: c.Spec.Names.Kind}
		// Only creates are admitted here: no status validator, scale or field selectors.
		strategy := customresource.NewStrategy(unstructuredTyper{}, c.Spec.Scope == apiextensionsv1.NamespaceScoped,
			gvk, validator, nil, s, status, nil, nil)
		a.kinds[gvk] = &kind{gvk: gvk, structural: s, strategy: strategy}
	}
	return nil
}

// Handles says whether a has the CRD of gvk.
func (a *Admitter) Handles(gvk schema.GroupVersionKind) bool {
	_, ok := a.kinds[gvk]
	return ok
}

// Create admits obj (as decoded from JSON) as a create with kubectl's default
// fieldValidation=Strict and returns it as it would be stored: pruned, defaulted, without
// status. The error is the apiserver's: BadRequest for unknown fields, Invalid for the
// schema and CEL rules.
func (a *Admitter) Create(ctx context.Context, obj map[string]any) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{Object: runtime.DeepCopyJSON(obj)}
	gvk := u.GroupVersionKind()
	k, ok := a.kinds[gvk]
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("no berth kind %s", gvk))
	}
	if unknown := k.coerce(u); len(unknown) > 0 {
		errs := make([]error, len(unknown))
		for i, f := range unknown {
			errs[i] = fmt.Errorf(`unknown field "%s"`, f)
		}
		// As the create handler's transformDecodeError words it.
		return nil, apierrors.NewBadRequest(fmt.Sprintf("%s in version %q cannot be handled as a %s: %v",
			gvk.Kind, gvk.Version, gvk.Kind, runtime.NewStrictDecodingError(errs)))
	}
	structuraldefaulting.Default(u.Object, k.structural)
	// rest.BeforeCreate: cluster-scoped objects lose any namespace; generateName is not
	// supported offline (the name is not known before the server picks it).
	if !k.strategy.NamespaceScoped() {
		u.SetNamespace("")
	}
	k.strategy.PrepareForCreate(ctx, u)
	if errs := k.strategy.Validate(ctx, u); len(errs) > 0 {
		return nil, apierrors.NewInvalid(gvk.GroupKind(), u.GetName(), errs)
	}
	return u, nil
}

// coerce prunes what the schema does not declare and returns its paths, as the
// apiserver's schemaCoercingDecoder does for a strict request.
func (k *kind) coerce(u *unstructured.Unstructured) []string {
	apiVersion, kindName := u.GetAPIVersion(), u.GetKind()
	meta, found, unknown, err := schemaobjectmeta.GetObjectMetaWithOptions(u.Object, schemaobjectmeta.ObjectMetaOptions{ReturnUnknownFieldPaths: true})
	if err != nil {
		return []string{err.Error()}
	}
	unknown = append(unknown, structuralpruning.PruneWithOptions(u.Object, k.structural, true,
		structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})...)
	structuraldefaulting.PruneNonNullableNullsWithoutDefaults(u.Object, k.structural)
	if err, paths := schemaobjectmeta.CoerceWithOptions(nil, u.Object, k.structural, false,
		schemaobjectmeta.CoerceOptions{ReturnUnknownFieldPaths: true}); err != nil {
		unknown = append(unknown, err.Error())
	} else {
		unknown = append(unknown, paths...)
	}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kindName)
	if found {
		_ = schemaobjectmeta.SetObjectMeta(u.Object, meta)
	}
	return unknown
}

// unstructuredTyper names the kind of an Unstructured, all the strategy asks of its typer.
type unstructuredTyper struct{}

func (unstructuredTyper) ObjectKinds(obj runtime.Object) ([]schema.GroupVersionKind, bool, error) {
	return []schema.GroupVersionKind{obj.GetObjectKind().GroupVersionKind()}, false, nil
}

func (unstructuredTyper) Recognizes(schema.GroupVersionKind) bool { return true }
