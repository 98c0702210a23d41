package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
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

// inspectCommand runs "status" or "pools" with args and returns the exit code.
func inspectCommand(ctx context.Context, name, cmd string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name+" "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c clusterFlags
	c.register(fs, cmd == "status")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if err := inspect.CheckFormat(c.output); err != nil || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s %s: %v; unexpected arguments: %q\n", name, cmd, err, fs.Args())
		return exitUsage
	}
	cl, err := c.client()
	if err == nil {
		if cmd == "status" {
			err = printStatus(ctx, cl, c, stdout)
		} else {
			err = printPools(ctx, cl, c, stdout)
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
