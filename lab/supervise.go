package lab

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/berthlb/berth/lab/proc"
)

// Restart backoff of a Supervised process, as a kubelet's CrashLoopBackOff but shorter: the
// lab's tests crash processes on purpose and wait for them to come back.
const (
	restartFirst  = 250 * time.Millisecond
	restartMax    = 8 * time.Second
	restartStable = 30 * time.Second // a process that ran this long starts the backoff over
)

// Supervised keeps one program running, as a DaemonSet's kubelet would: when it exits
// without being asked to, it is started again after a backoff that doubles from 250 ms to
// 8 s. Stop holds it down (a test's speaker kill must stay killed while it measures), and
// Start brings it back.
type Supervised struct {
	name  string
	start func(context.Context) (*proc.Process, error)
	ctx   context.Context // outlives the start; cancelled by Close

	mu       sync.Mutex
	cur      *proc.Process
	held     bool
	restarts int
	done     chan struct{} // the loop ended
	lastErr  error
}

// supervise starts the program with start, returns once the first start succeeded (or its
// error), and keeps restarting it until Close. start must return a new process each call.
func supervise(ctx context.Context, life context.Context, name string, start func(context.Context) (*proc.Process, error)) (*Supervised, error) {
	p, err := start(ctx)
	if err != nil {
		return nil, err
	}
	s := &Supervised{name: name, start: start, ctx: life, cur: p, done: make(chan struct{})}
	go s.loop(p)
	return s, nil
}

func (s *Supervised) loop(p *proc.Process) {
	defer close(s.done)
	logger := klog.FromContext(s.ctx).WithValues("process", s.name)
	sleep := func(d time.Duration) bool {
		select {
		case <-time.After(d):
			return true
		case <-s.ctx.Done():
			return false
		}
	}
	backoff := restartFirst
	for {
		began := time.Now()
		select {
		case <-p.Done():
		case <-s.ctx.Done():
			return
		}
		if !s.isHeld() {
			if time.Since(began) > restartStable {
				backoff = restartFirst
			}
			logger.Info("Process exited; restarting", "state", p.State(), "after", backoff)
			if !sleep(backoff) {
				return
			}
			backoff = min(2*backoff, restartMax)
		}
		// Held by Stop, before or during the backoff: wait for Start.
		for s.isHeld() {
			backoff = restartFirst
			if !sleep(waitStep) {
				return
			}
		}
		for {
			next, err := s.start(s.ctx)
			if err == nil {
				p = next
				break
			}
			s.mu.Lock()
			s.lastErr = err
			s.mu.Unlock()
			logger.Error(err, "Restart failed", "retryAfter", backoff)
			if !sleep(backoff) {
				return
			}
			backoff = min(2*backoff, restartMax)
		}
		s.mu.Lock()
		s.cur, s.lastErr = p, nil
		s.restarts++
		s.mu.Unlock()
	}
}

func (s *Supervised) isHeld() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// Name names the program, as its log file in the run directory.
func (s *Supervised) Name() string { return s.name }

// Process is the running process (or the last one, while it is held down or restarting).
func (s *Supervised) Process() *proc.Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Restarts counts the starts after the first.
func (s *Supervised) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// Stop holds the program down: it sends sig (SIGTERM for a graceful stop, SIGKILL for a
// crash) and waits until the process has exited; it stays down until Start.
func (s *Supervised) Stop(ctx context.Context, sig syscall.Signal) error {
	s.mu.Lock()
	s.held = true
	p := s.cur
	s.mu.Unlock()
	if err := p.Signal(sig); err != nil && !errors.Is(err, proc.ErrExited) {
		return fmt.Errorf("stop %s: %w", s.name, err)
	}
	select { // an exit status from the signal is what was asked for
	case <-p.Done():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop %s (pid %d): %w", s.name, p.PID(), ctx.Err())
	}
}

// Start ends a Stop and waits until the new process runs.
func (s *Supervised) Start(ctx context.Context) error {
	s.mu.Lock()
	old := s.cur
	held := s.held
	s.held = false
	s.mu.Unlock()
	if !held {
		return nil
	}
	for {
		s.mu.Lock()
		cur, err := s.cur, s.lastErr
		s.mu.Unlock()
		if cur != old {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("start %s: %w (last error: %v)", s.name, ctx.Err(), err)
		case <-s.done:
			return fmt.Errorf("start %s: supervision ended", s.name)
		case <-time.After(waitStep):
		}
	}
}

// Done is closed when supervision ends (the site's Close).
func (s *Supervised) Done() <-chan struct{} { return s.done }
