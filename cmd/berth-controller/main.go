// Command berth-controller assigns LoadBalancer IPs from berth's pools: an external
// cloud-controller-manager built on k8s.io/cloud-provider.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/berthlb/berth/version"
)

type options struct {
	kubeconfig         string
	loadBalancerClass  string
	handleDefaultClass bool
	showVersion        bool
}

func main() {
	fs := flag.NewFlagSet("berth-controller", flag.ExitOnError)
	var o options
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "path to a kubeconfig; empty means in-cluster")
	fs.StringVar(&o.loadBalancerClass, "load-balancer-class", "berth.dev/lb", "loadBalancerClass handled by berth")
	fs.BoolVar(&o.handleDefaultClass, "handle-default-class", true, "also handle Services without a loadBalancerClass")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	klog.InitFlags(fs)
	_ = fs.Parse(os.Args[1:])
	if o.showVersion {
		fmt.Println("berth-controller", version.Version)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		klog.ErrorS(err, "berth-controller failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	klog.FromContext(ctx).Info("Starting berth-controller", "version", version.Version, "loadBalancerClass", o.loadBalancerClass)
	return errors.New("the allocation loop is not built yet (issue 4)")
}
