package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/admission"
	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/controller"
)

// checkCommand validates manifests offline: each berth object as the apiserver admits it
// (schema, defaults, CEL rules), then all of them together through config.Build, as the
// controller and speakers would see them, and the berth annotations of Services.
func checkCommand(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name+" check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s check FILE...\n\nValidates berth's objects in the files offline, with the messages the cluster gives.\n"+
			"Objects are checked together, as if applied at once to a cluster holding no other berth objects.\n", name)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	a, err := admission.New()
	if err != nil {
		fmt.Fprintf(stderr, "%s check: berth's CRDs: %v\n", name, err)
		return exitError
	}
	c := checker{admit: a, out: stdout}
	for _, f := range fs.Args() {
		c.file(ctx, f)
	}
	c.build()
	fmt.Fprintf(stdout, "%d objects in %d files: berth's %d (%d rejected, %d with problems); Services %d; others %d\n",
		c.objects, fs.NArg(), c.berth, c.rejected, c.problems, c.services, c.objects-c.berth-c.services)
	if c.failed {
		return exitError
	}
	return exitOK
}

type checker struct {
	admit *admission.Admitter
	out   io.Writer
	res   config.Resources
	// where each admitted object came from, by kind/name, for config.Build's findings
	files                                        map[config.ObjectRef]string
	objects, berth, rejected, problems, services int
	failed                                       bool
}

func (c *checker) report(file, what, format string, args ...any) {
	fmt.Fprintf(c.out, "%s: %s: %s\n", file, what, fmt.Sprintf(format, args...))
	c.failed = true
}

func (c *checker) file(ctx context.Context, file string) {
	objs, err := admission.ReadFile(file)
	if err != nil {
		c.report(file, "unreadable", "%v", err)
		return
	}
	for _, o := range objs {
		c.objects++
		gvk := o.GroupVersionKind()
		switch {
		case c.admit.Handles(gvk):
			c.berth++
			c.object(ctx, file, o)
		case gvk.Group == v1alpha1.GroupVersion.Group:
			c.berth++
			c.rejected++
			c.report(file, gvk.Kind+"/"+o.GetName(), "no matches for kind %q in version %q", gvk.Kind, gvk.GroupVersion())
		case gvk.Group == "metallb.io":
			c.report(file, gvk.Kind+"/"+o.GetName(), "a MetalLB object: convert it with `berthctl import metallb %s`", file)
		case gvk.Group == "" && gvk.Kind == "Service":
			c.services++
			c.service(file, o)
		}
	}
}

// object admits one berth object and keeps it for config.Build.
func (c *checker) object(ctx context.Context, file string, o *unstructured.Unstructured) {
	kind := o.GetKind()
	admitted, err := c.admit.Create(ctx, o.Object)
	if err != nil {
		c.rejected++
		c.report(file, kind+"/"+o.GetName(), "rejected: %v", err)
		return
	}
	ref := config.ObjectRef{Kind: config.Kind(kind), Name: o.GetName()}
	if prev, dup := c.files[ref]; dup {
		c.report(file, ref.String(), "also in %s: the later one replaces it in the cluster", prev)
	}
	if c.files == nil {
		c.files = map[config.ObjectRef]string{}
	}
	c.files[ref] = file
	switch ref.Kind {
	case config.KindIPPool:
		err = appendAs(&c.res.Pools, admitted.Object)
	case config.KindBGPPeer:
		err = appendAs(&c.res.Peers, admitted.Object)
	case config.KindBGPAdvertisement:
		err = appendAs(&c.res.BGPAdvertisements, admitted.Object)
	case config.KindL2Advertisement:
		err = appendAs(&c.res.L2Advertisements, admitted.Object)
	}
	if err != nil {
		c.report(file, ref.String(), "%v", err)
	}
}

// appendAs converts an admitted object to T and appends it to list, also when the
// conversion fails part-way (the error is reported beside what it got).
func appendAs[T any](list *[]T, obj map[string]any) error {
	var v T
	err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj, &v)
	*list = append(*list, v)
	return err
}

// build reports what config.Build finds across the admitted objects, as the condition
// each object would carry.
func (c *checker) build() {
	_, problems := config.Build(c.res)
	flagged := map[config.ObjectRef]bool{}
	for _, p := range problems {
		if !flagged[p.Object] {
			flagged[p.Object] = true
			c.problems++
		}
		c.report(c.files[p.Object], p.Object.String(), "%s=False %s: %s", p.Condition, p.Reason, p.Message)
	}
}

// service checks a Service's berth annotations and spec.loadBalancerIP as
// berth-controller reads them.
func (c *checker) service(file string, o *unstructured.Unstructured) {
	what := "Service/" + o.GetName()
	if ns := o.GetNamespace(); ns != "" {
		what = "Service " + ns + "/" + o.GetName()
	}
	var svc corev1.Service
	err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &svc)
	if err == nil {
		err = controller.CheckService(&svc)
	}
	if err != nil {
		c.report(file, what, "%v", err)
	}
}
