package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/controlplane"
	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
)

// runUp starts the lab daemon (berthctl re-executed as "lab daemon") in its own session,
// detached from the terminal, with stdin and stdout on /dev/null, stderr on a pipe this
// process copies to stderr, and the ready pipe as file descriptor 3. It returns once the
// daemon reports the site ready (printing the kubeconfig and the namespaces), or after
// stopping the daemon when the start fails, times out or is interrupted.
func runUp(ctx context.Context, o upOptions, stdout, stderr io.Writer) error {
	begin := time.Now()
	if err := o.check(); err != nil {
		return err
	}
	if err := lab.Preflight(); err != nil {
		return err
	}
	if err := refuseExisting(ctx, o.runFlags); err != nil {
		return err
	}
	if o.binDir == "" {
		dir, err := controlplane.BinDir()
		if errors.Is(err, controlplane.ErrBinariesMissing) {
			// A fresh machine: build them from the pinned modules, once.
			fmt.Fprintln(os.Stderr, "building the control-plane binaries (the first time takes minutes)")
			dir, err = controlplane.BuildBinaries(ctx, os.Stderr)
		}
		if err != nil {
			return fmt.Errorf("locate the control-plane binaries (-controlplane-dir, or run from the repository): %w", err)
		}
		o.binDir = dir
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find berthctl's binary: %w", err)
	}
	if o.withBerth {
		if err := o.siteFlags.resolveBerth(exe); err != nil {
			return err
		}
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer readyR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return err
	}
	defer errR.Close()
	args := append([]string{"lab", daemonCommand}, o.runFlags.args()...)
	cmd := exec.Command(exe, append(args, o.siteFlags.args()...)...)
	cmd.Dir = "/"
	cmd.Stderr = errW
	cmd.ExtraFiles = []*os.File{readyW} // readyFD
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	readyW.Close()
	errW.Close()
	if err != nil {
		return fmt.Errorf("start the lab daemon: %w", err)
	}

	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(stderr, errR)
	}()
	readyMsg := make(chan []byte, 1)
	go func() {
		// One line; EOF without one means the daemon exited.
		b, _ := bufio.NewReader(readyR).ReadBytes('\n')
		readyMsg <- bytes.TrimSpace(b)
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	timer := time.NewTimer(o.timeout)
	defer timer.Stop()

	var why error
	select {
	case b := <-readyMsg:
		if len(b) > 0 {
			var st labState
			if err := json.Unmarshal(b, &st); err != nil {
				why = fmt.Errorf("the lab daemon's ready message %q: %w", b, err)
				break
			}
			// The daemon moved its stderr to its log before saying ready.
			select {
			case <-copied:
			case <-time.After(time.Second):
			}
			printUp(stdout, st, time.Since(begin))
			return nil
		}
		err := <-exited // it closed the pipe by exiting
		<-copied
		return fmt.Errorf("the lab daemon (pid %d) failed: %v", cmd.Process.Pid, err)
	case <-timer.C:
		why = fmt.Errorf("the lab was not ready within %v", o.timeout)
	case <-ctx.Done():
		why = fmt.Errorf("interrupted: %w", ctx.Err())
	}
	// The daemon closes the site on SIGTERM, also in the middle of starting it.
	fmt.Fprintf(stderr, "%v: stopping the lab daemon (pid %d)\n", why, cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-exited
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if left, _ := leftovers(cctx, o.runFlags); len(left) > 0 {
		why = errors.Join(why, lab.Cleanup(cctx, o.baseDir, o.prefix))
	}
	return why
}

// resolveBerth fills in the defaults of -berth-bin-dir and -deploy-dir as absolute paths
// (the daemon runs in /) and checks that they hold what the lab needs.
func (s *siteFlags) resolveBerth(exe string) error {
	if s.berthBinDir == "" {
		s.berthBinDir = filepath.Dir(exe)
	}
	if s.deployDir == "" {
		root, err := controlplane.RepoRoot()
		if err != nil {
			return fmt.Errorf("-with-berth: find deploy/ (-deploy-dir, or run from the repository): %w", err)
		}
		s.deployDir = filepath.Join(root, "deploy")
	}
	for _, p := range []*string{&s.berthBinDir, &s.deployDir} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	for _, bin := range []string{"berth-controller", "berth-speaker"} {
		if _, err := os.Stat(filepath.Join(s.berthBinDir, bin)); err != nil {
			return fmt.Errorf("-with-berth: %s not in %s: run `make build` (or give -berth-bin-dir)", bin, s.berthBinDir)
		}
	}
	if _, err := os.Stat(filepath.Join(s.deployDir, "base", "kustomization.yaml")); err != nil {
		return fmt.Errorf("-with-berth: %s is not berth's deploy/ directory: %w", s.deployDir, err)
	}
	return nil
}

func printUp(w io.Writer, st labState, took time.Duration) {
	fmt.Fprintf(w, "lab %s is up in %v (daemon pid %d, nodes %s)\n",
		st.Prefix, took.Round(100*time.Millisecond), st.PID, strings.Join(st.Nodes, " "))
	fmt.Fprintf(w, "kubeconfig: %s\n", st.Kubeconfig)
	fmt.Fprintf(w, "namespaces: %s\n", strings.Join(st.Namespaces, " "))
	fmt.Fprintf(w, "log: %s\n", st.Log)
	fmt.Fprintf(w, "\n  export KUBECONFIG=%s\n", st.Kubeconfig)
	if len(st.Demo) > 0 {
		fmt.Fprintf(w, "\nberth runs (logs in %s); the demo Services answer:\n", filepath.Dir(st.Log))
		for _, c := range st.Demo {
			fmt.Fprintf(w, "  %s\n", c)
		}
	}
}

// refuseExisting fails when the run already exists, running or left over from a crash.
func refuseExisting(ctx context.Context, r runFlags) error {
	owner, err := lab.Owner(r.baseDir, r.prefix)
	if err == nil && owner.Alive() {
		return fmt.Errorf("lab %s is already running (daemon pid %d); stop it with `lab down`, or pick another -prefix", r.prefix, owner.PID)
	}
	left, err := leftovers(ctx, r)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("lab %s: a crashed run left %s; remove it with `lab down`", r.prefix, strings.Join(left, ", "))
	}
	return nil
}

// leftovers describes what of the run exists: its run directory, its namespaces and host
// links (named with its prefix).
func leftovers(ctx context.Context, r runFlags) ([]string, error) {
	var left []string
	if _, err := os.Stat(r.runDir()); err == nil {
		left = append(left, "directory "+r.runDir())
	}
	names, err := namespaces(ctx, r.prefix)
	if err != nil {
		return nil, err
	}
	if len(names) > 0 {
		left = append(left, fmt.Sprintf("%d namespaces", len(names)))
	}
	links, err := netns.HostLinks(ctx, r.prefix)
	if err != nil {
		return nil, err
	}
	if len(links) > 0 {
		left = append(left, "host links "+strings.Join(links, " "))
	}
	return left, nil
}

// namespaces lists the namespaces named with prefix: the network's and the pods'.
func namespaces(ctx context.Context, prefix string) ([]string, error) {
	all, err := netns.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range all {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// runDown stops the run's daemon by its recorded PID, which closes the site, and then
// removes whatever is left of the run (all of it after a crash): the processes recorded in
// its run directory, its namespaces and host links, and the directory.
func runDown(ctx context.Context, o downOptions, stdout, stderr io.Writer) error {
	if err := o.check(); err != nil {
		return err
	}
	owner, err := lab.Owner(o.baseDir, o.prefix)
	switch {
	case err == nil && owner.Alive():
		begin := time.Now()
		if err := stopDaemon(owner, o.timeout); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "lab %s: stopped the daemon (pid %d) in %v\n", o.prefix, owner.PID, time.Since(begin).Round(100*time.Millisecond))
	case err == nil:
		fmt.Fprintf(stdout, "lab %s: the daemon (pid %d) is gone\n", o.prefix, owner.PID)
	case !errors.Is(err, fs.ErrNotExist):
		// A damaged record must not keep the run from being removed.
		fmt.Fprintf(stderr, "lab %s: %v\n", o.prefix, err)
	}
	left, err := leftovers(ctx, o.runFlags)
	if err != nil {
		return err
	}
	if len(left) == 0 {
		fmt.Fprintf(stdout, "lab %s: nothing left\n", o.prefix)
		return nil
	}
	// The daemon's last words, if it left its log behind.
	if b, err := os.ReadFile(filepath.Join(o.runDir(), logFile)); err == nil {
		fmt.Fprintf(stderr, "lab %s: the daemon's log ends:\n%s\n", o.prefix, tail(string(b), 20))
	}
	if err := lab.Cleanup(ctx, o.baseDir, o.prefix); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "lab %s: removed %s\n", o.prefix, strings.Join(left, ", "))
	return nil
}

// stopDaemon sends SIGTERM to the recorded daemon and waits for it to exit, killing it
// after timeout. It signals through a pidfd opened while the record still matched, so a
// reused PID is never hit.
func stopDaemon(r proc.Recorded, timeout time.Duration) error {
	fd, err := unix.PidfdOpen(r.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("daemon pid %d: %w", r.PID, err)
	}
	defer unix.Close(fd)
	if !r.Alive() {
		return nil // exited (and maybe replaced) before the pidfd was opened
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGTERM, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("stop daemon pid %d: %w", r.PID, err)
	}
	if exitedWithin(fd, timeout) {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill daemon pid %d: %w", r.PID, err)
	}
	if !exitedWithin(fd, 10*time.Second) {
		return fmt.Errorf("daemon pid %d survived SIGKILL", r.PID)
	}
	return nil
}

// exitedWithin waits until the process of pidfd exits (the pidfd turns readable).
func exitedWithin(pidfd int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left < 0 {
			left = 0
		}
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left.Milliseconds()))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return false
		case n > 0:
			return true
		case left == 0:
			return false
		}
	}
}

// runStatus prints the state of the run and reports whether its daemon runs.
func runStatus(ctx context.Context, r runFlags, w io.Writer) (bool, error) {
	if err := r.check(); err != nil {
		return false, err
	}
	owner, ownerErr := lab.Owner(r.baseDir, r.prefix)
	st, stateErr := readState(r.runDir())
	names, err := namespaces(ctx, r.prefix)
	if err != nil {
		return false, err
	}
	running := ownerErr == nil && owner.Alive()
	switch {
	case running && stateErr != nil:
		fmt.Fprintf(w, "lab %s: starting (daemon pid %d)\n", r.prefix, owner.PID)
	case running:
		fmt.Fprintf(w, "lab %s: running (daemon pid %d, up %v)\n", r.prefix, owner.PID, time.Since(st.Ready).Round(time.Second))
	case ownerErr == nil || len(names) > 0:
		fmt.Fprintf(w, "lab %s: not running, but a crashed run left things behind; `lab down` removes them\n", r.prefix)
	default:
		fmt.Fprintf(w, "lab %s: not running\n", r.prefix)
		if others := otherRuns(r); len(others) > 0 {
			fmt.Fprintf(w, "other runs in %s: %s\n", r.baseDir, strings.Join(others, " "))
		}
		return false, nil
	}
	fmt.Fprintf(w, "run directory: %s\n", r.runDir())
	if stateErr == nil {
		fmt.Fprintf(w, "kubeconfig: %s\n", st.Kubeconfig)
		fmt.Fprintf(w, "apiserver: %s\n", st.Server)
		fmt.Fprintf(w, "log: %s\n", st.Log)
	}
	fmt.Fprintf(w, "namespaces (%d): %s\n", len(names), strings.Join(names, " "))
	recs, err := proc.ReadPidFiles(r.runDir())
	if err != nil {
		return running, err
	}
	slices.SortFunc(recs, func(a, b proc.Recorded) int { return strings.Compare(a.File, b.File) })
	alive := 0
	for _, rec := range recs {
		if rec.Alive() {
			alive++
		}
	}
	fmt.Fprintf(w, "processes (%d, %d alive):\n", len(recs), alive)
	for _, rec := range recs {
		state := "alive"
		if !rec.Alive() {
			state = "gone"
		}
		fmt.Fprintf(w, "  %-40s pid %-8d %s\n", strings.TrimSuffix(filepath.Base(rec.File), ".pid"), rec.PID, state)
	}
	return running, nil
}

// otherRuns lists the prefixes of the other run directories under the base directory.
func otherRuns(r runFlags) []string {
	entries, err := os.ReadDir(r.baseDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		p := e.Name() + "-"
		if e.IsDir() && p != r.prefix && netns.ValidPrefix(p) == nil {
			out = append(out, p)
		}
	}
	return out
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
