package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
	"github.com/berthlb/berth/inspect"
)

// clusterFlags name the cluster and the output format of the commands that read it.
type clusterFlags struct {
	kubeconfig string
	namespace  string
	output     string
	classes    inspect.Classes
}

func (c *clusterFlags) register(fs *flag.FlagSet, namespaced bool) {
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "path to a kubeconfig (default: $KUBECONFIG, then ~/.kube/config)")
	if namespaced {
		fs.StringVar(&c.namespace, "n", "", "only this namespace's Services (default: all)")
		fs.StringVar(&c.classes.LoadBalancerClass, "load-balancer-class", "berth.dev/lb", "loadBalancerClass berth handles (as berth-controller's flag)")
		fs.BoolVar(&c.classes.HandleDefaultClass, "handle-default-class", true, "berth also handles Services without a class (as berth-controller's flag)")
	}
	fs.StringVar(&c.output, "o", inspect.FormatTable, "output format: table, json or yaml")
}

// client connects to the cluster with berth's types.
func (c clusterFlags) client() (client.Client, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = c.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := errors.Join(clientgoscheme.AddToScheme(scheme), v1alpha1.AddToScheme(scheme)); err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme})
}

// inspectCommand runs "status", "pools" or "explain" with args and returns the exit code.
func inspectCommand(ctx context.Context, name, cmd string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name+" "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c clusterFlags
	c.register(fs, cmd != "pools")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	wantArgs := 0
	if cmd == "explain" {
		wantArgs = 1
	}
	if err := inspect.CheckFormat(c.output); err != nil || fs.NArg() != wantArgs {
		fmt.Fprintf(stderr, "%s %s: %v; want %d arguments, got %q\n", name, cmd, err, wantArgs, fs.Args())
		return exitUsage
	}
	cl, err := c.client()
	if err == nil {
		switch cmd {
		case "status":
			err = printStatus(ctx, cl, c, stdout)
		case "pools":
			err = printPools(ctx, cl, c, stdout)
		case "explain":
			err = printExplanation(ctx, cl, c, fs.Arg(0), stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s %s: %v\n", name, cmd, err)
		return exitError
	}
	return exitOK
}

// printStatus reads the Services, the nodes' NodeAnnouncements and berth's configuration
// and prints every LoadBalancer Service as berth sees it.
func printStatus(ctx context.Context, cl client.Client, c clusterFlags, w io.Writer) error {
	var (
		svcs  corev1.ServiceList
		anns  v1alpha1.NodeAnnouncementList
		pools v1alpha1.IPPoolList
	)
	err := errors.Join(cl.List(ctx, &svcs, client.InNamespace(c.namespace)), cl.List(ctx, &anns), cl.List(ctx, &pools))
	if err != nil {
		return err
	}
	// Pools alone name the pool of an address; peers and advertisements do not matter here.
	snap, _ := config.Build(config.Resources{Pools: pools.Items})
	return inspect.WriteServices(w, c.output, inspect.Services(svcs.Items, anns.Items, snap, c.classes))
}

// printPools prints every pool's use per family.
func printPools(ctx context.Context, cl client.Client, c clusterFlags, w io.Writer) error {
	var pools v1alpha1.IPPoolList
	if err := cl.List(ctx, &pools); err != nil {
		return err
	}
	return inspect.WritePools(w, c.output, inspect.Pools(pools.Items))
}

// printExplanation explains one Service, named "svc/NAME", "service/NAME" or "NAME" in
// the -n namespace (default: "default").
func printExplanation(ctx context.Context, cl client.Client, c clusterFlags, arg string, w io.Writer) error {
	name := arg
	if kind, n, ok := strings.Cut(arg, "/"); ok {
		if kind != "svc" && kind != "service" && kind != "services" {
			return fmt.Errorf("%q: explain takes a Service: svc/NAME", arg)
		}
		name = n
	}
	ns := c.namespace
	if ns == "" {
		ns = corev1.NamespaceDefault
	}
	var (
		in    = inspect.ExplainInput{Service: &corev1.Service{}, Classes: c.classes}
		nsObj corev1.Namespace
		sl    discoveryv1.EndpointSliceList
		nodes corev1.NodeList
		anns  v1alpha1.NodeAnnouncementList
		pools v1alpha1.IPPoolList
		peers v1alpha1.BGPPeerList
		bgp   v1alpha1.BGPAdvertisementList
		l2    v1alpha1.L2AdvertisementList
	)
	if err := cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, in.Service); err != nil {
		return err
	}
	err := errors.Join(cl.Get(ctx, client.ObjectKey{Name: ns}, &nsObj),
		cl.List(ctx, &sl, client.InNamespace(ns), client.MatchingLabels{discoveryv1.LabelServiceName: name}),
		cl.List(ctx, &nodes), cl.List(ctx, &anns), cl.List(ctx, &pools), cl.List(ctx, &peers), cl.List(ctx, &bgp), cl.List(ctx, &l2))
	if err != nil {
		return err
	}
	in.NamespaceLabels, in.Slices, in.Nodes, in.Announcements = nsObj.Labels, sl.Items, nodes.Items, anns.Items
	in.Resources = config.Resources{Pools: pools.Items, Peers: peers.Items, BGPAdvertisements: bgp.Items, L2Advertisements: l2.Items}
	return inspect.WriteExplanation(w, c.output, inspect.Explain(in))
}
