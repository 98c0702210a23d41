// Package proc starts the lab's programs as child processes, optionally inside a named
// network namespace or as another user, logs their output to a run directory, records
// their PIDs there, and signals exactly the processes it started.
package proc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrExited means the process has already exited, so it cannot be signalled.
var ErrExited = errors.New("process already exited")

// ErrClosed means the Runner was closed and starts nothing more.
var ErrClosed = errors.New("runner closed")

// DefaultGrace is how long Close and Cleanup wait after SIGTERM before SIGKILL.
const DefaultGrace = 3 * time.Second

// Spec describes one program to start.
type Spec struct {
	// Name is unique among the Runner's running processes; it names the log file
	// <dir>/<Name>.log and the pid file <dir>/<Name>.pid.
	Name string
	// Path is the program; a bare name is looked up in PATH on the host, so that no
	// wrapper does its own lookup and the recorded PID is the program's own.
	Path string
	Args []string
	// NetNS runs the program inside this named network namespace (ip netns exec, which
	// execs, so the PID stays the program's).
	NetNS string
	// User runs the program as this user with no capabilities (setpriv, which execs).
	User string
	// Capabilities, when set, run the program as root with only these (e.g. "NET_ADMIN"),
	// and unable to gain more (no_new_privs): what a container whose securityContext
	// drops ALL and adds them gets. Not with User.
	Capabilities []string
	// ReadOnlyRoot runs the program in its own mount namespace where every mount but
	// /proc, /sys and /dev is read-only: what a container with readOnlyRootFilesystem
	// sees, so a write berth would need there fails in the lab too.
	ReadOnlyRoot bool
	// Writable are directories that stay writable under ReadOnlyRoot, as a Pod's volumes.
	Writable []string
	// Dir is the working directory; empty means the Runner's directory.
	Dir string
	// Env is added to the Runner's environment.
	Env []string
}

// readOnlyRootScript remounts every mount outside /proc, /sys, /dev and the writable
// ones ($rw, space-separated) read-only, then execs its arguments.
const readOnlyRootScript = `findmnt -rn -o TARGET | while read -r m; do
	case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
	case "$rw " in *" $m "*) continue ;; esac
	mount -o remount,bind,ro "$m"
done
exec "$@"`

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Runner starts processes and stops every one of them on Close.
type Runner struct {
	dir string

	mu      sync.Mutex
	running map[string]*Process
	closed  bool
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// New returns a Runner that keeps logs and pid files in dir. It starts nothing and
// creates dir only when the first process starts.
func New(dir string) (*Runner, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("proc: run directory %q is not absolute", dir)
	}
	return &Runner{dir: dir, running: map[string]*Process{}}, nil
}

// Dir is the run directory.
func (r *Runner) Dir() string { return r.dir }

// Start starts the program described by s. The process outlives ctx: it runs until it
// exits, is stopped, or the Runner is closed. ctx only bounds the start itself.
func (r *Runner) Start(ctx context.Context, s Spec) (*Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	if !validName.MatchString(s.Name) {
		return nil, fmt.Errorf("start %q: invalid name", s.Name)
	}
	path, err := exec.LookPath(s.Path)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	if path, err = filepath.Abs(path); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	argv := append([]string{path}, s.Args...)
	if s.User != "" {
		u, err := user.Lookup(s.User)
		if err != nil {
			return nil, fmt.Errorf("start %s as %q: %w", s.Name, s.User, err)
		}
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			return nil, fmt.Errorf("start %s as %q: %w (apt-get install util-linux)", s.Name, s.User, err)
		}
		argv = append([]string{setpriv, "--reuid=" + s.User, "--regid=" + u.Gid, "--init-groups", "--"}, argv...)
	}
	if len(s.Capabilities) > 0 {
		if s.User != "" {
			return nil, fmt.Errorf("start %s: both User and Capabilities", s.Name)
		}
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			return nil, fmt.Errorf("start %s with capabilities: %w (apt-get install util-linux)", s.Name, err)
		}
		set := "-all"
		for _, c := range s.Capabilities {
			set += ",+" + strings.ToLower(c)
		}
		// For root, the bounding set is what an exec keeps: the program gets exactly these.
		argv = append([]string{setpriv, "--bounding-set=" + set, "--inh-caps=-all", "--no-new-privs", "--"}, argv...)
	}
	if s.ReadOnlyRoot {
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			return nil, fmt.Errorf("start %s with a read-only root: %w (apt-get install util-linux)", s.Name, err)
		}
		// Remounted before setpriv drops CAP_SYS_ADMIN; every step execs, so the PID
		// stays the program's. The private namespace keeps the host's mounts untouched.
		script := readOnlyRootScript
		for _, w := range s.Writable {
			// Its own mount first, so that the pass below can leave it alone.
			script = "mount --bind " + shellQuote(w) + " " + shellQuote(w) + "\nrw=\"$rw \"" + shellQuote(w) + "\n" + script
		}
		argv = append([]string{unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", "set -e\n" + script, "sh"}, argv...)
	}
	if s.NetNS != "" {
		ip, err := exec.LookPath("ip")
		if err != nil {
			return nil, fmt.Errorf("start %s in netns %s: %w (apt-get install iproute2)", s.Name, s.NetNS, err)
		}
		argv = append([]string{ip, "netns", "exec", s.NetNS}, argv...)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, fmt.Errorf("start %s: %w", s.Name, ErrClosed)
	}
	if p, ok := r.running[s.Name]; ok {
		return nil, fmt.Errorf("start %s: already running as pid %d", s.Name, p.pid)
	}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	logPath := filepath.Join(r.dir, s.Name+".log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	defer logf.Close() // the child holds its own copy

	cmd := &exec.Cmd{
		Path:   argv[0],
		Args:   argv,
		Dir:    s.Dir,
		Env:    append(os.Environ(), s.Env...),
		Stdout: logf,
		Stderr: logf,
		SysProcAttr: &syscall.SysProcAttr{
			// Own process group, so Stop can also reach children the program forked
			// (socat's per-connection children) without touching anyone else.
			Setpgid: true,
			// If the test binary dies, so do its children (cleared by setpriv's uid
			// change; Cleanup handles those from the pid files).
			Pdeathsig: syscall.SIGKILL,
		},
	}
	if cmd.Dir == "" {
		cmd.Dir = r.dir
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	p := &Process{
		name:    s.Name,
		pid:     cmd.Process.Pid,
		cmd:     cmd,
		logPath: logPath,
		pidPath: filepath.Join(r.dir, s.Name+".pid"),
		done:    make(chan struct{}),
	}
	if err := writePidFile(p.pidPath, p.pid, argv); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	r.running[s.Name] = p
	go func() {
		err := cmd.Wait()
		// Reap stragglers of the group (the leader is gone, so the group id cannot have
		// been reused while members remain).
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		_ = os.Remove(p.pidPath)
		r.mu.Lock()
		if r.running[p.name] == p {
			delete(r.running, p.name)
		}
		r.mu.Unlock()
		p.state, p.waitErr = cmd.ProcessState, err
		close(p.done)
	}()
	return p, nil
}

// Processes returns the processes still running.
func (r *Runner) Processes() []*Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Process, 0, len(r.running))
	for _, p := range r.running {
		out = append(out, p)
	}
	return out
}

// Close stops every running process (SIGTERM, then SIGKILL after DefaultGrace) and starts
// no more. It returns after they have all exited.
func (r *Runner) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	var wg sync.WaitGroup
	errs := make(chan error, len(r.Processes()))
	for _, p := range r.Processes() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Stop(DefaultGrace); err != nil && !errors.Is(err, ErrExited) {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// Process is one started program.
type Process struct {
	name    string
	pid     int
	cmd     *exec.Cmd
	logPath string
	pidPath string

	done    chan struct{}
	state   *os.ProcessState // set before done closes
	waitErr error
}

// Name is the Spec's name.
func (p *Process) Name() string { return p.name }

// PID is the program's process id.
func (p *Process) PID() int { return p.pid }

// LogPath is the file that holds the program's stdout and stderr.
func (p *Process) LogPath() string { return p.logPath }

// Log returns the program's output so far, for error messages.
func (p *Process) Log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(log %s: %v)", p.logPath, err)
	}
	return string(b)
}

// Done is closed when the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// State is the exit status, nil while the process runs.
func (p *Process) State() *os.ProcessState {
	if !p.Exited() {
		return nil
	}
	return p.state
}

// Wait waits for the process to exit and returns its status; the error is non-nil when it
// exited unsuccessfully or ctx ended first.
func (p *Process) Wait(ctx context.Context) (*os.ProcessState, error) {
	select {
	case <-p.done:
		if p.waitErr != nil {
			return p.state, fmt.Errorf("%s (pid %d): %w", p.name, p.pid, p.waitErr)
		}
		return p.state, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for %s (pid %d): %w", p.name, p.pid, ctx.Err())
	}
}

// Signal sends sig to the process (not its children).
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return fmt.Errorf("signal %s (pid %d): %w", p.name, p.pid, ErrExited)
	}
	// os.Process signals through a pidfd, so a reaped and reused pid is never hit.
	if err := p.cmd.Process.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			err = ErrExited
		}
		return fmt.Errorf("signal %s (pid %d) with %v: %w", p.name, p.pid, sig, err)
	}
	return nil
}

// Pause stops the process with SIGSTOP, as a hung daemon would be.
func (p *Process) Pause() error { return p.Signal(syscall.SIGSTOP) }

// Resume continues a paused process.
func (p *Process) Resume() error { return p.Signal(syscall.SIGCONT) }

// Kill sends SIGKILL to the process and its group and waits for it to exit.
func (p *Process) Kill() error {
	if p.Exited() {
		return fmt.Errorf("kill %s (pid %d): %w", p.name, p.pid, ErrExited)
	}
	p.killAll()
	<-p.done
	return nil
}

// killAll kills the process and whatever is left of its group; the process itself first,
// since it may have left the group.
func (p *Process) killAll() {
	_ = p.cmd.Process.Kill()
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
}

// Stop sends SIGTERM (and SIGCONT, in case it is paused), waits up to grace for the
// process to exit, then kills it and its group. It returns after the process has exited.
func (p *Process) Stop(grace time.Duration) error {
	if p.Exited() {
		return fmt.Errorf("stop %s (pid %d): %w", p.name, p.pid, ErrExited)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.killAll()
		<-p.done
	}
	return nil
}
