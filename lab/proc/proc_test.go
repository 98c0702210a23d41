package proc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func newRunner(t *testing.T) *Runner {
	t.Helper()
	r, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close runner: %v", err)
		}
	})
	return r
}

// procState returns the state letter of /proc/<pid>/stat ("S", "T", …).
func procState(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[0]
}

func TestExitStatusAndLog(t *testing.T) {
	r := newRunner(t)
	p, err := r.Start(t.Context(), Spec{Name: "sh", Path: "sh", Args: []string{"-c", "echo out; echo err >&2; exit 3"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Wait(t.Context())
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("Wait() error = %v, want an *exec.ExitError", err)
	}
	if st.ExitCode() != 3 {
		t.Errorf("exit code = %d, want 3", st.ExitCode())
	}
	if got := p.Log(); got != "out\nerr\n" {
		t.Errorf("log = %q, want %q", got, "out\nerr\n")
	}
	if _, err := os.Stat(filepath.Join(r.Dir(), "sh.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file left after exit: %v", err)
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, ErrExited) {
		t.Errorf("Signal after exit = %v, want ErrExited", err)
	}
}

func TestPauseResumeStop(t *testing.T) {
	r := newRunner(t)
	p, err := r.Start(t.Context(), Spec{Name: "sleep", Path: "sleep", Args: []string{"60"}})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := ReadPidFiles(r.Dir())
	if err != nil || len(recs) != 1 || recs[0].PID != p.PID() || !recs[0].Alive() {
		t.Fatalf("pid files = %+v, %v; want one live record of pid %d", recs, err, p.PID())
	}
	if exe, _ := os.Readlink("/proc/" + strconv.Itoa(p.PID()) + "/exe"); filepath.Base(exe) != "sleep" {
		t.Errorf("pid %d runs %q, want sleep itself", p.PID(), exe)
	}
	if _, err := r.Start(t.Context(), Spec{Name: "sleep", Path: "sleep", Args: []string{"1"}}); err == nil {
		t.Error("second Start with a running name succeeded")
	}
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p.PID(), "T")
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p.PID(), "S")
	if err := p.Pause(); err != nil { // Stop must also end a paused process promptly
		t.Fatal(err)
	}
	start := time.Now()
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop of a paused process took %v; SIGTERM+SIGCONT should end it at once", d)
	}
	if ws := p.State().Sys().(syscall.WaitStatus); ws.Signal() != syscall.SIGTERM {
		t.Errorf("exit = %v, want killed by SIGTERM", p.State())
	}
}

func waitState(t *testing.T, pid int, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		if got = procState(t, pid); got == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("pid %d state = %q, want %q", pid, got, want)
}

func TestStopEscalatesAndReapsChildren(t *testing.T) {
	r := newRunner(t)
	// The shell ignores SIGTERM and has a child; Stop must kill both.
	p, err := r.Start(t.Context(), Spec{Name: "stubborn", Path: "sh",
		Args: []string{"-c", "trap '' TERM; sleep 60 & echo $! ; wait"}})
	if err != nil {
		t.Fatal(err)
	}
	child := waitChildPid(t, p)
	if err := p.Stop(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if ws := p.State().Sys().(syscall.WaitStatus); ws.Signal() != syscall.SIGKILL {
		t.Errorf("exit = %v, want killed by SIGKILL after the grace period", p.State())
	}
	if err := syscall.Kill(child, 0); !errors.Is(err, syscall.ESRCH) {
		waitState(t, child, "Z") // at worst a zombie awaiting init
	}
}

func waitChildPid(t *testing.T, p *Process) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var pid int
		if _, err := fmt.Sscan(strings.TrimSpace(p.Log()), &pid); err == nil && pid > 0 {
			return pid
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no child pid in log %q", p.Log())
	return 0
}

func TestCloseStopsEverything(t *testing.T) {
	r, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var ps []*Process
	for _, n := range []string{"a", "b", "c"} {
		p, err := r.Start(t.Context(), Spec{Name: n, Path: "sleep", Args: []string{"60"}})
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if !p.Exited() {
			t.Errorf("%s still running after Close", p.Name())
		}
	}
	if _, err := r.Start(t.Context(), Spec{Name: "d", Path: "sleep", Args: []string{"1"}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
}

// TestCleanupAfterCrash plays a crashed runner: a pid file left behind, its process alive.
func TestCleanupAfterCrash(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	if err := writePidFile(filepath.Join(dir, "orphan.pid"), cmd.Process.Pid, cmd.Args); err != nil {
		t.Fatal(err)
	}
	// A pid file whose pid was reused by someone else (ourselves) must not be acted on.
	if err := os.WriteFile(filepath.Join(dir, "reused.pid"), []byte(strconv.Itoa(os.Getpid())+" 1\nold\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(dir, time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("recorded process still running after Cleanup")
	}
	recs, err := ReadPidFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 0 {
		t.Errorf("pid files left: %+v", recs)
	}
}
