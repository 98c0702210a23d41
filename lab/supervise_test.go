package lab

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/berthlb/berth/lab/proc"
)

// TestSupervised: a process that exits is started again, after a backoff that grows; one
// held down by Stop stays down until Start; Close (the life context) ends supervision.
func TestSupervised(t *testing.T) {
	r, err := proc.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	life, end := context.WithCancel(context.Background())
	defer end()
	var starts []time.Time
	start := func(ctx context.Context) (*proc.Process, error) {
		starts = append(starts, time.Now())
		// The first three die at once; later ones keep running.
		script := "sleep 60"
		if len(starts) <= 3 {
			script = "exit 3"
		}
		return r.Start(ctx, proc.Spec{Name: "sup", Path: "sh", Args: []string{"-c", script}})
	}
	s, err := supervise(t.Context(), life, "sup", start)
	if err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, "restarted three times", func(context.Context) (string, bool) {
		return fmt.Sprint(s.Restarts(), " restarts"), s.Restarts() >= 3
	})
	// Backoff 250 ms, 500 ms, 1 s between the failed runs.
	for i, want := range []time.Duration{restartFirst, 2 * restartFirst, 4 * restartFirst} {
		if gap := starts[i+1].Sub(starts[i]); gap < want || gap > want+time.Second {
			t.Errorf("start %d came %v after the previous one, want ≥ %v", i+1, gap, want)
		}
	}

	running := s.Process()
	if err := s.Stop(t.Context(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !running.Exited() {
		t.Fatal("Stop returned before the process exited")
	}
	// A stopped process is restarted without backoff once released: a broken hold would
	// show within a few poll steps.
	time.Sleep(3 * restartFirst)
	if got := s.Restarts(); got != 3 || s.Process() != running {
		t.Fatalf("held down, yet restarted: %d restarts", got)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Process() == running || s.Process().Exited() {
		t.Fatalf("Start: process %v, want a new running one", s.Process().PID())
	}

	end()
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("supervision did not end with its life context")
	}
}
