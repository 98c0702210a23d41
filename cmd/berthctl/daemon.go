package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"

	"github.com/berthlb/berth/lab"
)

// daemonCommand is the hidden "lab" command that `lab up` re-executes berthctl as: the
// lab daemon, which holds the site until SIGTERM (`lab down`) and then closes it.
const daemonCommand = "daemon"

// readyFD is the daemon's file descriptor 3, the write end of a pipe `lab up` reads: the
// daemon writes the state there once the site is ready, then closes it. If it closes
// without writing, the start failed, and the daemon's stderr (also a pipe to `lab up`
// until then) says why.
const readyFD = 3

// Files the daemon writes into the run directory, next to the lab's owner record (the
// daemon's pid and start time, see lab.Owner).
const (
	stateFile = "berthctl.json"
	logFile   = "daemon.log"
)

// labState is what the daemon records about the site it holds.
type labState struct {
	Prefix     string    `json:"prefix"`
	PID        int       `json:"pid"`
	Started    time.Time `json:"started"`
	Ready      time.Time `json:"ready"`
	Kubeconfig string    `json:"kubeconfig"`
	Server     string    `json:"server"`
	Nodes      []string  `json:"nodes"`
	Namespaces []string  `json:"namespaces"`
	Log        string    `json:"log"`
	// Demo are the curl commands that reach the demo Services (with -with-berth).
	Demo []string `json:"demo,omitempty"`
}

func readState(runDir string) (labState, error) {
	var s labState
	b, err := os.ReadFile(filepath.Join(runDir, stateFile))
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", filepath.Join(runDir, stateFile), err)
	}
	return s, nil
}

// runDaemon starts the site, reports it ready on readyFD, and closes it when ctx ends.
// From then on its output goes to the run directory's daemon.log.
func runDaemon(ctx context.Context, o daemonOptions) error {
	begin := time.Now()
	if err := o.check(); err != nil {
		return err
	}
	ready := readyPipe()
	// Until the site is ready stderr is a pipe to `lab up`; should that exit, a write
	// must fail with EPIPE rather than kill the daemon with SIGPIPE. (A handler, unlike
	// SIG_IGN, is not inherited by the daemon's children.)
	pipes := make(chan os.Signal, 1)
	signal.Notify(pipes, syscall.SIGPIPE)
	defer signal.Stop(pipes)
	logger := textlogger.NewLogger(textlogger.NewConfig(textlogger.Verbosity(o.verbosity), textlogger.Output(os.Stderr)))
	ctx = klog.NewContext(ctx, logger)
	site, err := lab.Start(ctx, lab.SiteOptions{Nodes: o.nodes, Prefix: o.prefix, BaseDir: o.baseDir,
		BinDir: o.binDir, Verbosity: o.verbosity})
	if err != nil {
		return err
	}
	var demo []string
	if o.withBerth {
		if demo, err = installDemo(ctx, site, o.siteFlags); err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			return errors.Join(err, site.Close(cctx))
		}
	}
	st := labState{Demo: demo,
		Prefix: site.Prefix(), PID: os.Getpid(), Started: begin, Ready: time.Now(),
		Kubeconfig: site.AdminKubeconfig(), Server: site.Cluster().Server,
		Log: filepath.Join(site.Dir(), logFile),
	}
	for _, n := range site.Nodes() {
		st.Nodes = append(st.Nodes, n.Name)
	}
	for _, ns := range site.Network().Namespaces() {
		st.Namespaces = append(st.Namespaces, ns.Name())
	}
	if err := announce(st, site.Dir(), ready); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		return errors.Join(err, site.Close(cctx))
	}
	logger.Info("Lab ready", "prefix", st.Prefix, "kubeconfig", st.Kubeconfig, "duration", st.Ready.Sub(begin))

	<-ctx.Done()
	logger.Info("Lab stopping", "prefix", st.Prefix)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := site.Close(cctx); err != nil {
		return err
	}
	logger.Info("Lab stopped", "prefix", st.Prefix)
	return nil
}

// installDemo installs berth with the demo on site and returns a curl command per demo
// address, once each answers.
func installDemo(ctx context.Context, site *lab.Site, o siteFlags) ([]string, error) {
	bin := lab.Berth{Controller: filepath.Join(o.berthBinDir, "berth-controller"), Speaker: filepath.Join(o.berthBinDir, "berth-speaker")}
	v := "--log-level=" + strconv.Itoa(max(o.verbosity, 2))
	if _, err := site.InstallBerth(ctx, lab.InstallOptions{Bin: bin, DeployDir: o.deployDir, Demo: true,
		ControllerArgs: []string{v}, SpeakerArgs: []string{v}}); err != nil {
		return nil, err
	}
	addrs, err := site.WaitDemo(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range addrs {
		out = append(out, a.Curl())
	}
	return out, nil
}

// readyPipe returns readyFD as a file, or nil when the daemon was started without it.
func readyPipe() *os.File {
	var st unix.Stat_t
	if err := unix.Fstat(readyFD, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return nil
	}
	// Inherited descriptors are not close-on-exec: without this, every process of the
	// site would hold the pipe open.
	unix.CloseOnExec(readyFD)
	return os.NewFile(readyFD, "ready")
}

// announce writes the state file, moves stderr to the log file (so `lab up`, which reads
// stderr until then, is not held open), and writes the state to ready.
func announce(st labState, runDir string, ready *os.File) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(runDir, stateFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	log, err := os.OpenFile(st.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	defer log.Close()
	for _, fd := range []int{1, 2} {
		if err := unix.Dup3(int(log.Fd()), fd, 0); err != nil {
			return fmt.Errorf("log to %s: %w", st.Log, err)
		}
	}
	if ready == nil {
		return nil
	}
	defer ready.Close()
	if _, err := ready.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("report ready: %w", err)
	}
	return nil
}
