// Command berthctl inspects and explains berth, and runs the lab. Installed as
// kubectl-berth it is also a kubectl plugin.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/berthlb/berth/version"
)

const usage = `usage: %s <command>

commands:
  status     every LoadBalancer Service: addresses, pool, mode, who announces it, to which
             peers, and what is wrong (-n NAMESPACE, -o table|json|yaml)
  pools      every IPPool's use per family (-o table|json|yaml)
  explain    why a Service has its pool and IPs, which nodes announce it and why the others
             do not, what each peer is sent, and what a node's failure would change
             (svc/NAME, -n NAMESPACE, -o table|json|yaml)
  check      validate berth's objects in FILE... offline, with the messages the cluster gives
  import     convert another load balancer's configuration in FILE... to berth's (import metallb)
  version    print the version
  lab        run the lab, a whole bare-metal site in network namespaces (lab up|down|status)
`

// Exit codes.
const (
	exitOK         = 0
	exitError      = 1
	exitUsage      = 2
	exitNotRunning = 3 // lab status: no lab is running
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, filepath.Base(os.Args[0]), os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches args to a command and returns the exit code.
func run(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		fmt.Fprintf(stderr, usage, name)
		return exitUsage
	}
	switch args[0] {
	case "version", "--version":
		fmt.Fprintln(stdout, name, version.Version)
		return exitOK
	case "lab":
		return labCommand(ctx, name, args[1:], stdout, stderr)
	case "status", "pools", "explain":
		return inspectCommand(ctx, name, args[0], args[1:], stdout, stderr)
	case "check":
		return checkCommand(ctx, name, args[1:], stdout, stderr)
	case "import":
		return importCommand(name, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprintf(stdout, usage, name)
		return exitOK
	default:
		fmt.Fprintf(stderr, "%s: unknown command %q\n"+usage, name, args[0], name)
		return exitUsage
	}
}
