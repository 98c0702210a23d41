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
	// restartTimeout bounds one start (a speaker's waits for its socket).
	restartTimeout = time.Minute
)

// Supervised keeps one program running, as a DaemonSet's kubelet would: when it exits
// without being asked to, it is started again after a backoff that doubles from 250 ms to
// 8 s. Stop holds it down (a test's speaker kill must stay killed while it measures), and
// Start brings it back at once.
type Supervised struct {
	name   string
	start  func(context.Context) (*proc.Process, error)
	ctx    context.Context // ends with the site, or Close
	cancel context.CancelFunc
	done   chan struct{} // the loop ended

	mu       sync.Mutex
	cur      *proc.Process
	held     bool
	stopped  *proc.Process // the process Stop ended: its exit is no crash
	starting chan struct{} // closed when the start in flight returns; nil when none
	restarts int
	lastErr  error
}

// supervise starts the program with start, returns once the first start succeeded (or its
// error), and keeps restarting it until life ends or Close. start must return a new
// process each call.
func supervise(ctx context.Context, life context.Context, name string, start func(context.Context) (*proc.Process, error)) (*Supervised, error) {
	p, err := start(ctx)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(life)
	s := &Supervised{name: name, start: start, ctx: sctx, cancel: cancel, cur: p, done: make(chan struct{})}
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
		s.mu.Lock()
		asked := s.stopped == p
		s.mu.Unlock()
		if asked {
			backoff = restartFirst
		} else {
			if time.Since(began) > restartStable {
				backoff = restartFirst
			}
			logger.Info("Process exited; restarting", "state", p.State(), "after", backoff)
			if !sleep(backoff) {
				return
			}
			backoff = min(2*backoff, restartMax)
		}
		for {
			// Held by Stop (before or during the backoff): wait for Start.
			for s.isHeld() {
				if !sleep(waitStep) {
					return
				}
			}
			next, err := s.startOnce()
			if errors.Is(err, errHeld) {
				continue
			}
			if err == nil {
				// Published as the current process: a Stop that came during the start
				// signals it and the loop sees it exit as asked.
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
	}
}

// errHeld: startOnce found the program held down.
var errHeld = errors.New("held down")

// startOnce runs one bounded start, visible to Stop as in flight, unless the program is
// held down. A started process becomes the current one before Stop may look at it.
func (s *Supervised) startOnce() (*proc.Process, error) {
	ch := make(chan struct{})
	s.mu.Lock()
	if s.held {
		s.mu.Unlock()
		return nil, errHeld
	}
	s.starting = ch
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, restartTimeout)
	defer cancel()
	p, err := s.start(ctx)
	s.mu.Lock()
	if err == nil {
		s.cur, s.lastErr = p, nil
		s.restarts++
	}
	s.starting = nil
	s.mu.Unlock()
	close(ch)
	return p, err
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

// Stop holds the program down: it waits for a start in flight, sends sig to the process
// (SIGTERM for a graceful stop, SIGKILL for a crash) and waits until it has exited; it
// stays down until Start.
func (s *Supervised) Stop(ctx context.Context, sig syscall.Signal) error {
	s.mu.Lock()
	s.held = true
	starting := s.starting
	s.mu.Unlock()
	if starting != nil {
		select {
		case <-starting:
		case <-ctx.Done():
			return fmt.Errorf("stop %s: a restart in flight: %w", s.name, ctx.Err())
		}
	}
	s.mu.Lock()
	p := s.cur
	s.stopped = p
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

// Start ends a Stop and waits until the new process runs; it does nothing when the
// program is not held down.
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

// Close ends supervision and stops the process (SIGTERM, then SIGKILL after a second).
func (s *Supervised) Close() error {
	s.cancel()
	<-s.done
	if p := s.Process(); !p.Exited() {
		return p.Stop(time.Second)
	}
	return nil
}

// Done is closed when supervision ends (the site's Close, or Close).
func (s *Supervised) Done() <-chan struct{} { return s.done }
