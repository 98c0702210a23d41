// Command berth-speaker runs on every node and announces LoadBalancer IPs over BGP or with
// ARP/NDP.
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
	kubeconfig  string
	nodeName    string
	showVersion bool
}

func main() {
	fs := flag.NewFlagSet("berth-speaker", flag.ExitOnError)
	var o options
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "path to a kubeconfig; empty means in-cluster")
	fs.StringVar(&o.nodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (default: $NODE_NAME from the downward API)")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	klog.InitFlags(fs)
	_ = fs.Parse(os.Args[1:])
	if o.showVersion {
		fmt.Println("berth-speaker", version.Version)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		klog.ErrorS(err, "berth-speaker failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if o.nodeName == "" {
		return errors.New("--node-name (or $NODE_NAME) is required")
	}
	klog.FromContext(ctx).Info("Starting berth-speaker", "version", version.Version, "node", o.nodeName)
	return errors.New("the announcement loop is not built yet (issue 5)")
}
