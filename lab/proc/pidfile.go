package proc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A pid file holds "<pid> <start time>" and then the command line. The start time (in
// clock ticks since boot, /proc/<pid>/stat field 22) tells our process from a later one
// that reused its pid, so Cleanup never signals a stranger.

func writePidFile(path string, pid int, argv []string) error {
	_, start, err := stat(pid)
	if err != nil {
		return fmt.Errorf("pid file %s: %w", path, err)
	}
	body := fmt.Sprintf("%d %d\n%s\n", pid, start, strings.Join(argv, " "))
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		return fmt.Errorf("pid file %s: %w", path, err)
	}
	return nil
}

// stat returns the process's state letter and start time in clock ticks since boot.
func stat(pid int) (state string, start uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, err
	}
	// The command name is in parentheses and may contain spaces; fields follow the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); start time is field 22.
	if len(f) < 20 {
		return "", 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return f[0], start, err
}

func signalAll(pid int, sig syscall.Signal) {
	_ = syscall.Kill(-pid, sig)
	_ = syscall.Kill(pid, sig)
}

// Recorded is a process found in a run directory's pid file.
type Recorded struct {
	PID     int
	Start   uint64
	Command string
	File    string
}

// Alive reports whether the recorded process is still the one running under its pid.
func (r Recorded) Alive() bool {
	state, start, err := stat(r.PID)
	// A zombie has exited already; only its parent's wait is missing.
	return err == nil && start == r.Start && state != "Z" && state != "X"
}

// WriteRecord records a live process (pid, start time, command line) in a file of the pid
// file format, e.g. the owner of a run directory. Name it other than *.pid unless Cleanup
// should stop that process.
func WriteRecord(path string, pid int, argv []string) error { return writePidFile(path, pid, argv) }

// ReadRecord reads one file written by WriteRecord or Runner.Start.
func ReadRecord(path string) (Recorded, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Recorded{}, err
	}
	first, rest, _ := strings.Cut(string(b), "\n")
	r := Recorded{Command: strings.TrimSpace(rest), File: path}
	if _, err := fmt.Sscanf(first, "%d %d", &r.PID, &r.Start); err != nil {
		return Recorded{}, fmt.Errorf("pid file %s: %w", path, err)
	}
	return r, nil
}

// ReadPidFiles returns the processes recorded in dir's pid files. A missing dir has none.
func ReadPidFiles(dir string) ([]Recorded, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.pid"))
	if err != nil {
		return nil, err
	}
	var out []Recorded
	for _, f := range files {
		r, err := ReadRecord(f)
		if errors.Is(err, os.ErrNotExist) {
			continue // removed as its process exited
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Cleanup stops the processes recorded in dir's pid files that are still running (after a
// crash of whatever started them): SIGTERM, then SIGKILL to the process and its group after
// grace. It removes the pid files. Processes whose pid now belongs to another program are
// left alone.
func Cleanup(dir string, grace time.Duration) error {
	recs, err := ReadPidFiles(dir)
	if err != nil {
		return err
	}
	var errs []error
	var live []Recorded
	for _, r := range recs {
		if r.Alive() {
			// While the recorded leader lives, group r.PID can only hold processes it
			// made, so signalling the group reaches its children and no one else.
			signalAll(r.PID, syscall.SIGTERM)
			signalAll(r.PID, syscall.SIGCONT)
			live = append(live, r)
		}
	}
	deadline := time.Now().Add(grace)
	for _, r := range live {
		for r.Alive() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if r.Alive() {
			signalAll(r.PID, syscall.SIGKILL)
			for i := 0; r.Alive() && i < 200; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			if r.Alive() {
				errs = append(errs, fmt.Errorf("cleanup %s: pid %d survived SIGKILL", r.File, r.PID))
				continue
			}
		}
	}
	for _, r := range recs {
		if !r.Alive() {
			if err := os.Remove(r.File); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
