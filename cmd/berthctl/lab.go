package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"time"

	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/netns"
)

const labUsage = `usage: %[1]s lab <command> [flags]

commands:
  up       start a lab site (control plane, nodes with agent and kube-proxy, FRR and BIRD,
           clients) held by a background daemon, wait until it is ready, and print the
           admin kubeconfig and the namespaces
  down     stop the lab's daemon and remove everything its run made; also after a crash
  status   show whether the lab runs: prefix, namespaces, processes, kubeconfig
           (exit status 3 when it does not run)

Every command takes -prefix (default %[2]q) and -base-dir (default %[3]s); run
"%[1]s lab <command> -h" for the rest. The lab needs root.
`

// defaultPrefix names the namespaces of the lab that berthctl runs when given no -prefix.
// Tests use random "bl…-" prefixes, so the two never collide.
const defaultPrefix = "berth-"

// labCommand dispatches "lab <command>" and returns the exit code.
func labCommand(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		fmt.Fprintf(stderr, labUsage, name, defaultPrefix, lab.DefaultBaseDir)
		return exitUsage
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(name+" lab "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var run func() (int, error)
	switch cmd {
	case "up":
		o := upOptions{}
		o.register(fs)
		run = func() (int, error) { return exitOK, runUp(ctx, o, stdout, stderr) }
	case "down":
		o := downOptions{}
		o.register(fs)
		run = func() (int, error) { return exitOK, runDown(ctx, o, stdout, stderr) }
	case "status":
		o := runFlags{}
		o.register(fs)
		run = func() (int, error) {
			running, err := runStatus(ctx, o, stdout)
			if err == nil && !running {
				return exitNotRunning, nil
			}
			return exitOK, err
		}
	case daemonCommand: // started by up, not by hand
		o := daemonOptions{}
		o.register(fs)
		run = func() (int, error) { return exitOK, runDaemon(ctx, o) }
	case "help", "-h", "-help", "--help":
		fmt.Fprintf(stdout, labUsage, name, defaultPrefix, lab.DefaultBaseDir)
		return exitOK
	default:
		fmt.Fprintf(stderr, "%s lab: unknown command %q\n"+labUsage, name, cmd, name, defaultPrefix, lab.DefaultBaseDir)
		return exitUsage
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s lab %s: unexpected arguments %q\n", name, cmd, fs.Args())
		return exitUsage
	}
	code, err := run()
	if err != nil {
		fmt.Fprintf(stderr, "%s lab %s: %v\n", name, cmd, err)
		return exitError
	}
	return code
}

// runFlags name one lab run: its prefix and the base directory of its run directory.
type runFlags struct {
	prefix  string
	baseDir string
}

func (r *runFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.prefix, "prefix", defaultPrefix,
		"run prefix, the start of every namespace name: 2-10 lower-case letters or digits and a dash")
	fs.StringVar(&r.baseDir, "base-dir", lab.DefaultBaseDir, "directory that holds the run directory")
}

// check validates the prefix and makes the base directory absolute (the daemon runs in /).
func (r *runFlags) check() error {
	if err := netns.ValidPrefix(r.prefix); err != nil {
		return err
	}
	abs, err := filepath.Abs(r.baseDir)
	if err != nil {
		return fmt.Errorf("base directory %q: %w", r.baseDir, err)
	}
	r.baseDir = abs
	return nil
}

// runDir is the run's directory.
func (r runFlags) runDir() string { return lab.RunDir(r.baseDir, r.prefix) }

// args are the flags that name the run, for the daemon's command line.
func (r runFlags) args() []string {
	return []string{"-prefix=" + r.prefix, "-base-dir=" + r.baseDir}
}

// siteFlags configure the site the daemon starts.
type siteFlags struct {
	nodes     int
	binDir    string
	verbosity int
	// withBerth installs berth from deployDir and runs the binaries in berthBinDir.
	withBerth   bool
	berthBinDir string
	deployDir   string
}

func (s *siteFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&s.nodes, "nodes", 3, "number of nodes")
	fs.StringVar(&s.binDir, "controlplane-dir", "",
		"`directory` of the control-plane binaries (default $BERTH_CONTROLPLANE_DIR, or the cache 'make controlplane' fills)")
	fs.IntVar(&s.verbosity, "v", 0, "log verbosity of the lab daemon and the control plane")
	fs.BoolVar(&s.withBerth, "with-berth", false,
		"also install berth from deploy/ with the demo (deploy/lab/demo), run berth-controller and a berth-speaker per node, and print a curl per demo address")
	fs.StringVar(&s.berthBinDir, "berth-bin-dir", "", "`directory` of berth-controller and berth-speaker (default: berthctl's own, as `make build` fills bin/)")
	fs.StringVar(&s.deployDir, "deploy-dir", "", "berth's deploy/ `directory` (default: the checkout holding the working directory)")
}

func (s siteFlags) args() []string {
	return []string{"-nodes=" + strconv.Itoa(s.nodes), "-controlplane-dir=" + s.binDir, "-v=" + strconv.Itoa(s.verbosity),
		"-with-berth=" + strconv.FormatBool(s.withBerth), "-berth-bin-dir=" + s.berthBinDir, "-deploy-dir=" + s.deployDir}
}

type upOptions struct {
	runFlags
	siteFlags
	// timeout bounds the wait for the site to be ready.
	timeout time.Duration
}

func (o *upOptions) register(fs *flag.FlagSet) {
	o.runFlags.register(fs)
	o.siteFlags.register(fs)
	fs.DurationVar(&o.timeout, "timeout", 3*time.Minute, "how long to wait for the site to be ready")
}

type downOptions struct {
	runFlags
	// timeout bounds the daemon's graceful stop, after which it is killed.
	timeout time.Duration
}

func (o *downOptions) register(fs *flag.FlagSet) {
	o.runFlags.register(fs)
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "how long the daemon may take to stop before it is killed")
}

type daemonOptions struct {
	runFlags
	siteFlags
}

func (o *daemonOptions) register(fs *flag.FlagSet) {
	o.runFlags.register(fs)
	o.siteFlags.register(fs)
}
